"""build_from_stac against a real STAC API on 127.0.0.1 (rustac serve), COGs served over HTTP."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.index.objectstore import open_store
from rasteret_dask.index.raster_bands import BandScaling, band_scaling
from rasteret_dask.index.versions import latest_manifest
from rasteret_dask.ingest import StacSearchError
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.testing.stac import FlakyProxy, StacServer, sentinel2_items

BBOX = (77.5, 12.9, 77.7, 13.1)
EPSG = 32643
ES = "earthsearch/sentinel-2-l2a"  # a local API gets a built-in descriptor only when named
PIXEL = 40.0
SIZE = 768
N_ITEMS = 300
FILES = 3  # items share COG files: item i uses file i % FILES


def _origin() -> tuple[float, float]:
    to_utm = pyproj.Transformer.from_crs(4326, EPSG, always_xy=True)
    x, y = to_utm.transform(77.6, 13.0)
    half = SIZE * PIXEL / 2
    return round((x - half) / PIXEL) * PIXEL, round((y + half) / PIXEL) * PIXEL


@pytest.fixture(scope="module")
def s2_cogs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("s2cogs")
    x0, y0 = _origin()
    for k in range(FILES):
        for n, key in enumerate(("red", "nir")):
            write_cog(root / f"{key}_{k}.tif", width=SIZE, height=SIZE, blocksize=256,
                      crs=f"EPSG:{EPSG}", transform=(PIXEL, 0, x0, 0, -PIXEL, y0),
                      predictor=2, nodata=0, seed=7 * k + n)
    return root


@pytest.fixture(scope="module")
def cog_server(s2_cogs):
    with RangeServer(s2_cogs) as server:
        yield server


@pytest.fixture(scope="module")
def items(cog_server) -> list[dict]:
    def href(i: int, key: str) -> str:
        return f"{cog_server.url}/{key if key in ('red', 'nir') else 'red'}_{i % FILES}.tif"

    return sentinel2_items(N_ITEMS, start="2024-01-01", months=6, bbox=BBOX, href_for=href,
                           bands=("red", "nir"), extra_assets=("scl", "thumbnail"))


@pytest.fixture(scope="module")
def stac(items):
    with StacServer(items) as server:
        yield server


def _expected(items: list[dict], start: str, end: str) -> dict[tuple[int, int], set[str]]:
    """Ids per (year, month) the search must find: footprint meets the bbox, time in range."""
    lo = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC)
    hi = dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    box = shapely.box(*BBOX)
    out: dict[tuple[int, int], set[str]] = {}
    for item in items:
        when = dt.datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
        if lo <= when < hi and shapely.intersects(shapely.geometry.shape(item["geometry"]), box):
            out.setdefault((when.year, when.month), set()).add(item["id"])
    return out


def _listed_files(root: Path) -> dict[Path, int]:
    """The data files the latest version lists, with their mtimes."""
    manifest = latest_manifest(open_store(root))
    return {root / entry.path: (root / entry.path).stat().st_mtime_ns for entry in manifest.files}


def _partition_ids(root: Path) -> dict[tuple[int, int], set[str]]:
    found: dict[tuple[int, int], set[str]] = {}
    for file in _listed_files(root):
        year = int(file.parent.parent.name.split("=")[1])
        month = int(file.parent.name.split("=")[1])
        ids = set(pq.read_table(file, columns=["id"])["id"].to_pylist())
        found.setdefault((year, month), set()).update(ids)
    return found


def test_month_partitions_enriched_and_readable(stac, items, s2_cogs, tmp_path):
    collection = rd.build_from_stac(
        name="bangalore", stac_api=stac.url, collection="sentinel-2-l2a", data_source=ES, bbox=BBOX,
        date_range=("2024-01-01", "2024-06-30"), workspace_dir=tmp_path, progress=False)
    root = tmp_path / "bangalore"
    expected = _expected(items, "2024-01-01", "2024-06-30")
    assert _partition_ids(root) == expected
    assert len(expected) == 6
    # the Earth Search descriptor maps asset keys to band codes
    assert collection.data_source == "earthsearch/sentinel-2-l2a"
    assert set(collection.bands) == {"B04", "B08", "SCL"}
    described = collection.describe()
    assert described["enriched"]["B04"] == described["records"] == sum(map(len, expected.values()))
    table = collection.to_table()
    for column in ("eo:cloud_cover", "platform", "s2:mgrs_tile", "view:sun_elevation"):
        assert column in table.column_names
    assert table["proj:epsg"].null_count == 0 and set(table["proj:epsg"].to_pylist()) == {EPSG}
    assert pc.all(pc.equal(table["collection"], "sentinel-2-l2a")).as_py()
    info = rd.load(root).info
    assert info.extra["stac"]["collection"] == "sentinel-2-l2a"

    # pixels: a pixel-aligned box in the records' CRS equals rasterio's window read
    import rasterio
    from rasterio.windows import from_bounds

    x0, y0 = _origin()
    aoi = (x0 + 300 * PIXEL, y0 - 420 * PIXEL, x0 + 380 * PIXEL, y0 - 300 * PIXEL)
    subset = collection.subset(date_range=("2024-02-01", "2024-02-29"))
    ds = subset.get_xarray(shapely.box(*aoi), ["B04", "B08"], geometry_crs=EPSG).compute()
    to_lonlat = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True)
    aoi_lonlat = shapely.transform(shapely.box(*aoi), lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))
    february = subset.to_table(columns=["id", "geometry"])
    hits = shapely.intersects(shapely.from_wkb(february["geometry"].to_numpy(zero_copy_only=False)),
                              aoi_lonlat)
    assert ds.sizes["time"] == int(hits.sum()) > 5
    for t, record_id in enumerate(ds["id"].values):
        index = next(i for i, item in enumerate(items) if item["id"] == record_id)
        with rasterio.open(s2_cogs / f"red_{index % FILES}.tif") as src:
            want = src.read(1, window=from_bounds(*aoi, transform=src.transform))
        np.testing.assert_array_equal(ds["B04"].values[t], want)


def test_rerun_with_overlapping_range_adds_no_duplicates(stac, items, tmp_path):
    kwargs = dict(name="s2", stac_api=stac.url, collection="sentinel-2-l2a", data_source=ES, bbox=BBOX,
                  workspace_dir=tmp_path, progress=False)
    rd.build_from_stac(date_range=("2024-01-01", "2024-03-31"), **kwargs)
    root = tmp_path / "s2"
    before = _listed_files(root)
    collection = rd.build_from_stac(date_range=("2024-03-01", "2024-06-30"), **kwargs)
    ids = collection.to_table(columns=["id"])["id"].to_pylist()
    assert len(ids) == len(set(ids))
    assert _partition_ids(root) == _expected(items, "2024-01-01", "2024-06-30")
    # January and February were not searched again; March gained nothing, so none was rewritten
    after = _listed_files(root)
    for path, mtime in before.items():
        assert after.get(path) == mtime, path
    assert collection.describe()["enriched"]["B08"] == len(ids)
    state = rd.load(root).info.extra["stac"]
    assert state["searched"][0][0].startswith("2024-01-01") and len(state["searched"]) == 1


def test_max_items_and_query_free_band_map(stac, items, tmp_path):
    collection = rd.build_from_stac(
        name="few", stac_api=stac.url, collection="sentinel-2-l2a", data_source=ES, bbox=BBOX,
        date_range=("2024-01-01", "2024-06-30"), workspace_dir=tmp_path, max_items=7,
        band_map={"red": "red"}, enrich_cog=False, progress=False)
    table = collection.to_table(columns=["id", "datetime"])
    assert table.num_rows == 7 and collection.bands == ["red"]
    # the 7 earliest matching items (rows are stored in spatial order, not time order)
    matching = set().union(*_expected(items, "2024-01-01", "2024-06-30").values())
    when = {item["id"]: item["properties"]["datetime"] for item in items if item["id"] in matching}
    assert set(table["id"].to_pylist()) == set(sorted(when, key=when.__getitem__)[:7])


def test_raster_bands_scale_offset_nodata_reach_the_index(stac, tmp_path):
    collection = rd.build_from_stac(
        name="scaled", stac_api=stac.url, collection="sentinel-2-l2a", data_source=ES, bbox=BBOX,
        date_range=("2024-01-01", "2024-02-29"), workspace_dir=tmp_path, enrich_cog=False,
        progress=False)
    table = rd.load(tmp_path / "scaled").to_table()
    assert table.num_rows > 10 and table.schema.field("raster_bands").type == S.RASTER_BANDS_TYPE
    s2 = BandScaling(scale=0.0001, offset=-0.1, nodata=0.0, data_type="uint16")
    assert band_scaling(table, "B04") == band_scaling(table, "B08") == [s2] * table.num_rows
    assert band_scaling(table, "SCL") == [None] * table.num_rows  # no raster:bands on it
    assert collection.bands == ["B04", "B08", "SCL"]


def _is_search(request) -> bool:
    return request.path.rstrip("/").endswith(("/search", "/items"))


def test_5xx_pages_are_retried(stac, tmp_path):
    with FlakyProxy(stac.url) as proxy:
        proxy.fail(lambda r: _is_search(r), times=3, status=503)
        proxy.fail(lambda r: _is_search(r) and r.page is not None, times=1, status=502)
        collection = rd.build_from_stac(
            name="flaky", stac_api=proxy.url, collection="sentinel-2-l2a", data_source=ES, bbox=BBOX,
            date_range=("2024-01-01", "2024-02-29"), workspace_dir=tmp_path, page_size=5,
            enrich_cog=False, progress=False)
        assert proxy.count(status=503) == 3 and proxy.count(status=502) == 1
    assert len(collection) > 10


def test_persistent_failure_names_window_and_writes_nothing(stac, tmp_path):
    def february(request) -> bool:
        return _is_search(request) and "2024-02" in json.dumps(request.params)

    with FlakyProxy(stac.url) as proxy:
        proxy.fail(february, times=None, status=503)
        with pytest.raises(StacSearchError, match=r"2024-02") as info:
            rd.build_from_stac(
                name="broken", stac_api=proxy.url, collection="sentinel-2-l2a", data_source=ES, bbox=BBOX,
                date_range=("2024-01-01", "2024-03-31"), workspace_dir=tmp_path, retries=1,
                progress=False)
    assert "sentinel-2-l2a" in str(info.value)
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.tmp"))


def test_invalid_date_range_is_a_clear_error(stac, tmp_path):
    with pytest.raises(ValueError, match="invalid date range"):
        rd.build_from_stac(name="x", stac_api=stac.url, collection="sentinel-2-l2a", data_source=ES,
                           date_range=("2024-06-30", "2024-01-01"), workspace_dir=tmp_path)
