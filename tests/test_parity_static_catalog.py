"""build_from_stac(static_catalog=...): a catalog.json tree written by pystac, read from disk
and over HTTP on 127.0.0.1, walked and filtered as Dask tasks, one per month window."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pyproj
import pystac
import pytest
import rasterio
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.ingest import StacQuery, StacSearchError, item_matches, query_matches, stac_build
from rasteret_dask.ingest.stac_search import month_windows
from rasteret_dask.testing.servers import RangeServer

DAYS = [(2024, 1, 5, 10.0), (2024, 1, 20, 80.0), (2024, 2, 11, 5.0), (2024, 3, 2, 30.0),
        (2024, 5, 9, 15.0)]


def _extent(path: Path) -> shapely.Geometry:
    with rasterio.open(path) as src:
        to_lonlat = pyproj.Transformer.from_crs(src.crs, "OGC:CRS84", always_xy=True)
        box = shapely.segmentize(shapely.box(*src.bounds), 100.0)
    return shapely.transform(box, lambda xy: np.column_stack(
        to_lonlat.transform(xy[:, 0], xy[:, 1])))


@pytest.fixture(scope="module")
def catalog_root(cog_dir, tmp_path_factory) -> Path:
    """root catalog -> collections 's2' (5 items; the fourth without geometry) and 'other'
    (1 item); COGs copied into the tree, asset hrefs relative."""
    root = tmp_path_factory.mktemp("static")
    data = root / "data"
    data.mkdir()
    for k in range(4):
        shutil.copy(cog_dir / f"scene{k}_B04.tif", data / f"scene{k}_B04.tif")
    footprint = _extent(data / "scene0_B04.tif")
    catalog = pystac.Catalog(id="root", description="static catalog for tests")
    extent = pystac.Extent(pystac.SpatialExtent([list(footprint.bounds)]),
                           pystac.TemporalExtent([[dt.datetime(2024, 1, 1, tzinfo=dt.UTC), None]]))
    collections = {name: pystac.Collection(id=name, description=name, extent=extent)
                   for name in ("s2", "other")}
    for number, (year, month, day, cloud) in enumerate(DAYS):
        geometry = None if number == 3 else shapely.geometry.mapping(footprint)
        item = pystac.Item(id=f"s2-{number}", geometry=geometry,
                           bbox=None if geometry is None else list(footprint.bounds),
                           datetime=dt.datetime(year, month, day, 10, tzinfo=dt.UTC),
                           properties={"eo:cloud_cover": cloud, "proj:code": "EPSG:32633"})
        item.add_asset("red", pystac.Asset(href=str(data / f"scene{number % 4}_B04.tif"),
                                           media_type=pystac.MediaType.COG, roles=["data"]))
        collections["s2"].add_item(item)
    other = pystac.Item(id="other-0", geometry=shapely.geometry.mapping(footprint),
                        bbox=list(footprint.bounds),
                        datetime=dt.datetime(2024, 1, 7, tzinfo=dt.UTC), properties={})
    other.add_asset("red", pystac.Asset(href=str(data / "scene0_B04.tif"),
                                        media_type=pystac.MediaType.COG, roles=["data"]))
    collections["other"].add_item(other)
    for collection in collections.values():
        catalog.add_child(collection)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root


def test_local_catalog_is_indexed_by_month_and_enriched(catalog_root, tmp_path):
    built = rd.build_from_stac(name="static", static_catalog=catalog_root / "catalog.json",
                               collection="s2", date_range=("2024-01-01", "2024-03-31"),
                               workspace_dir=tmp_path, progress=False)
    table = built.to_table().sort_by(S.ID)
    assert table[S.ID].to_pylist() == ["s2-0", "s2-1", "s2-2", "s2-3"]
    assert sorted(set(zip(table[S.YEAR].to_pylist(), table[S.MONTH].to_pylist(),
                          strict=True))) == [(2024, 1), (2024, 2), (2024, 3)]
    hrefs = [a["red"]["href"] for a in table[S.ASSETS].to_pylist()]
    assert all(Path(h).is_absolute() and Path(h).is_file() for h in hrefs)
    assert table[S.metadata_column("red")].null_count == 0
    assert table[S.EPSG].to_pylist() == [32633] * 4
    # the item without geometry got its footprint from its header
    footprint = shapely.from_wkb(table[S.GEOMETRY][3].as_py())
    assert shapely.hausdorff_distance(footprint, _extent(catalog_root / "data" /
                                                         "scene3_B04.tif")) < 1e-6
    state = built.info.extra["stac"]
    assert state["static_catalog"] is True and state["api"].endswith("catalog.json")
    again = rd.build_from_stac(name="static", static_catalog=catalog_root / "catalog.json",
                               collection="s2", date_range=("2024-01-01", "2024-03-31"),
                               workspace_dir=tmp_path, progress=False)
    assert len(again) == 4  # a rerun adds no duplicates


def test_filters_and_default_date_range(catalog_root, tmp_path):
    clear = rd.build_from_stac(name="clear", static_catalog=str(catalog_root / "catalog.json"),
                               collection="s2", query={"eo:cloud_cover": {"lt": 20}},
                               workspace_dir=tmp_path, enrich_cog=False)
    assert sorted(clear.to_table()[S.ID].to_pylist()) == ["s2-0", "s2-2", "s2-4"]  # May too
    everything = rd.build_from_stac(name="all", static_catalog=catalog_root / "catalog.json",
                                    workspace_dir=tmp_path, enrich_cog=False,
                                    bbox=(-10.0, 0.0, 40.0, 60.0))
    ids = sorted(everything.to_table()[S.ID].to_pylist())
    assert ids == ["other-0", "s2-0", "s2-1", "s2-2", "s2-4"]  # s2-3 has no footprint
    with pytest.raises(ValueError, match="found no items"):
        rd.build_from_stac(name="far", static_catalog=catalog_root / "catalog.json",
                           bbox=(100.0, 0.0, 101.0, 1.0), workspace_dir=tmp_path,
                           enrich_cog=False)


def test_catalog_served_over_http(catalog_root, tmp_path):
    with RangeServer(catalog_root) as server:
        built = rd.build_from_stac(name="http", static_catalog=f"{server.url}/catalog.json",
                                   collection="s2", date_range=("2024-01-01", "2024-02-29"),
                                   workspace_dir=tmp_path, progress=False)
        table = built.to_table()
        assert sorted(table[S.ID].to_pylist()) == ["s2-0", "s2-1", "s2-2"]
        hrefs = [a["red"]["href"] for a in table[S.ASSETS].to_pylist()]
        assert all(h.startswith(f"{server.url}/data/") for h in hrefs)
        assert table[S.metadata_column("red")].null_count == 0
        assert server.count(path="catalog.json") >= 1 and server.count(path="s2/collection.json")
        with pytest.raises(StacSearchError, match="missing.json"):
            rd.build_from_stac(name="gone", static_catalog=f"{server.url}/missing.json",
                               workspace_dir=tmp_path, enrich_cog=False)


def test_walks_and_month_windows_are_dask_tasks(catalog_root, tmp_path, monkeypatch):
    keys: list[str] = []
    original = stac_build.persist

    def spy(tasks, client=None, **options):  # options: progress, description
        keys.extend(task.key for task in tasks)
        return original(tasks, client, **options)

    monkeypatch.setattr(stac_build, "persist", spy)
    rd.build_from_stac(name="tasks", static_catalog=catalog_root / "catalog.json",
                       date_range=("2024-01-01", "2024-03-31"), workspace_dir=tmp_path,
                       enrich_cog=False)
    walks = [k for k in keys if k.startswith("stac-walk-")]
    windows = sorted(k.rsplit("-", 1)[0] for k in keys if k.startswith("stac-static-"))
    assert len(walks) == 2  # one per child of the root
    assert windows == ["stac-static-2024-01", "stac-static-2024-02", "stac-static-2024-03"]


def test_arguments_are_checked(catalog_root, tmp_path):
    with pytest.raises(ValueError, match="either stac_api"):
        rd.build_from_stac(name="x", workspace_dir=tmp_path)
    with pytest.raises(ValueError, match="either stac_api"):
        rd.build_from_stac(name="x", stac_api="http://127.0.0.1:9", collection="c",
                           date_range=("2024-01-01", "2024-01-31"),
                           static_catalog=catalog_root / "catalog.json", workspace_dir=tmp_path)
    with pytest.raises(ValueError, match="needs collection= and date_range="):
        rd.build_from_stac(name="x", stac_api="http://127.0.0.1:9", workspace_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        rd.build_from_stac(name="x", static_catalog=tmp_path / "nowhere" / "catalog.json",
                           workspace_dir=tmp_path)


# --- the client-side filters, pure ------------------------------------------------------------

def _item(geometry=True, **props) -> dict:
    box = shapely.box(10, 40, 11, 41)
    return {"id": "i", "geometry": shapely.geometry.mapping(box) if geometry else None,
            "bbox": list(box.bounds), "properties": props, "assets": {}}


def test_item_matches_like_a_search():
    january, february = month_windows(("2024-01-01", "2024-02-29"))
    spec = StacQuery(stac_api="catalog.json", collection=None, bbox=(10.5, 40.5, 12, 42))
    assert item_matches(_item(datetime="2024-01-31T23:59:59Z"), january, spec)
    assert not item_matches(_item(datetime="2024-01-31T23:59:59Z"), february, spec)
    interval = _item(datetime=None, start_datetime="2024-01-20T00:00:00Z",
                     end_datetime="2024-02-03T00:00:00Z")
    assert item_matches(interval, january, spec) and item_matches(interval, february, spec)
    assert item_matches(_item(geometry=False, datetime="2024-01-02T00:00:00Z"), january, spec)
    far = StacQuery(stac_api="catalog.json", collection=None, bbox=(50, 0, 51, 1))
    assert not item_matches(_item(datetime="2024-01-02T00:00:00Z"), january, far)
    shape = shapely.geometry.mapping(shapely.box(10.9, 40.9, 12, 42))
    touching = StacQuery(stac_api="catalog.json", collection=None, intersects=shape)
    assert item_matches(_item(datetime="2024-01-02T00:00:00Z"), january, touching)
    assert not item_matches(_item(), january, spec)  # no time at all


def test_query_object_operators():
    props = {"eo:cloud_cover": 12.5, "platform": "sentinel-2a", "tags": ["a", "b"]}
    assert query_matches(props, {"eo:cloud_cover": {"lt": 20, "gte": 12.5}})
    assert not query_matches(props, {"eo:cloud_cover": {"gt": 20}})
    assert query_matches(props, {"platform": {"in": ["sentinel-2a", "sentinel-2b"]},
                                 "tags": {"contains": "b"}})
    assert query_matches(props, {"platform": {"startsWith": "sentinel", "neq": "x"}})
    assert query_matches(props, {"platform": "sentinel-2a"})  # a bare value is eq
    assert not query_matches(props, {"missing": {"eq": 1}})
    assert not query_matches(props, {"platform": {"lt": 3}})  # incomparable: no match
    with pytest.raises(ValueError, match="query operator 'like'"):
        query_matches(props, {"platform": {"like": "s%"}})
