"""Dataset descriptors: built-ins, registry, data-source resolution, signing, stac-geoparquet."""

from __future__ import annotations

import dataclasses
import json
import pickle
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rustac

import rasteret_dask as rd
from rasteret_dask.catalog import (
    DatasetDescriptor,
    find_descriptor,
    get_descriptor,
    planetary_computer_signer,
    register,
    resolve_data_source,
    signing,
    unregister,
)
from rasteret_dask.testing.stac import sentinel2_items

BUILTIN_IDS = {"earthsearch/sentinel-2-l2a", "earthsearch/landsat-c2-l2", "earthsearch/naip",
               "earthsearch/cop-dem-glo-30", "pc/sentinel-2-l2a"}


def test_builtins_are_frozen_picklable_and_complete():
    ids = {d.id for d in rd.descriptors()}
    assert ids >= BUILTIN_IDS
    s2 = get_descriptor("earthsearch/sentinel-2-l2a")
    assert s2.band_map["B04"] == "red" and s2.band_map["B08"] == "nir"
    naip = get_descriptor("earthsearch/naip")
    assert set(naip.band_map.values()) == {"image"} and naip.band_index_map["NIR"] == 3
    assert get_descriptor("earthsearch/landsat-c2-l2").storage_options["s3"]["requester_pays"]
    dem = get_descriptor("earthsearch/cop-dem-glo-30")
    assert dem.url_rewrite_patterns["s3://copernicus-dem-30m/"].startswith("https://")
    pc_s2 = get_descriptor("pc/sentinel-2-l2a")
    assert pc_s2.signer is planetary_computer_signer
    with pytest.raises(dataclasses.FrozenInstanceError):
        s2.id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s2.band_map["B04"] = "x"  # type: ignore[index]
    for descriptor in rd.descriptors():
        assert pickle.loads(pickle.dumps(descriptor)) == descriptor
        json.dumps(descriptor.to_dict())


def test_register_find_and_errors():
    mine = DatasetDescriptor(id="acme/ortho", stac_api="http://127.0.0.1:1/stac",
                             stac_collection="ortho", band_map={"R": "img", "N": "img"},
                             band_index_map={"R": 0, "N": 3})
    try:
        assert register(mine) is mine
        assert get_descriptor("acme/ortho") is mine
        assert find_descriptor("ortho") is mine
        clash = dataclasses.replace(mine, description="other")
        with pytest.raises(ValueError, match="already registered"):
            register(clash)
        register(clash, replace=True)
        assert get_descriptor("acme/ortho").description == "other"
    finally:
        unregister("acme/ortho")
    with pytest.raises(ValueError, match="unknown data source 'acme/ortho'.*earthsearch"):
        get_descriptor("acme/ortho")
    with pytest.raises(ValueError, match="provider/collection"):
        DatasetDescriptor(id="bad id", stac_api="http://x", stac_collection="c")
    with pytest.raises(ValueError, match="unmapped"):
        DatasetDescriptor(id="a/b", stac_api="http://x", stac_collection="c",
                          band_map={"R": "img"}, band_index_map={"G": 1})
    # the same collection id on two APIs: the matching API wins, else the first registered
    assert find_descriptor("sentinel-2-l2a", "https://planetarycomputer.microsoft.com/api/stac/v1/"
                           ).id == "pc/sentinel-2-l2a"
    assert find_descriptor("sentinel-2-l2a", "http://127.0.0.1:9").id == "earthsearch/sentinel-2-l2a"


def _table(collection_value: str | None) -> pa.Table:
    return pa.table({
        "id": ["a"], "datetime": pa.array([0], pa.timestamp("us", tz="UTC")),
        "geometry": [bytes.fromhex("0101000000000000000000f03f000000000000f03f")],
        "assets": [{"red": {"href": "http://x/a.tif", "band_index": 0}}],
        "collection": [collection_value],
    })


def _stored(collection: rd.Collection) -> tuple:
    """What resolution reads from an index: its stored data source and its rows."""
    return collection.data_source, collection.dataset


def test_resolution_order(tmp_path):
    column_only = rd.build_collection_from_table(_table("landsat-c2-l2"), name="c")
    assert resolve_data_source(None, *_stored(column_only)).id == "earthsearch/landsat-c2-l2"
    nothing = rd.build_collection_from_table(_table(None), name="c")
    assert resolve_data_source(None, *_stored(nothing)) is None
    attribute = rd.build_collection_from_table(_table("landsat-c2-l2"), name="c",
                                               data_source="earthsearch/naip")
    assert resolve_data_source(None, *_stored(attribute)).id == "earthsearch/naip"
    assert resolve_data_source("pc/sentinel-2-l2a", *_stored(attribute)).id == "pc/sentinel-2-l2a"
    # the Parquet metadata written by export, then overridden by load(data_source=)
    exported = attribute.export(tmp_path / "idx")
    assert resolve_data_source(None, *_stored(rd.load(tmp_path / "idx"))).id == "earthsearch/naip"
    assert exported.data_source == "earthsearch/naip"
    loaded = rd.load(tmp_path / "idx", data_source="earthsearch/cop-dem-glo-30")
    assert resolve_data_source(None, *_stored(loaded)).id == "earthsearch/cop-dem-glo-30"
    with pytest.raises(ValueError, match="unknown data source"):
        resolve_data_source("nope/nothing", *_stored(loaded))
    # plain values: a stored id or STAC collection id, no dataset needed
    assert resolve_data_source(None, "earthsearch/naip").id == "earthsearch/naip"
    assert resolve_data_source(None, "landsat-c2-l2").id == "earthsearch/landsat-c2-l2"
    assert resolve_data_source() is None and resolve_data_source(None, "unknown-thing") is None


# --- stac-geoparquet, band aliases and read-time signing ------------------------------------

@pytest.fixture(scope="module")
def stac_geoparquet(tmp_path_factory, http_server):
    """rustac-written stac-geoparquet whose red/nir assets point at the served test COGs."""
    path = tmp_path_factory.mktemp("sgp") / "items.parquet"
    files = {"red": "scene0_B04.tif", "nir": "scene0_B08.tif"}
    items = sentinel2_items(
        8, href_for=lambda i, key: http_server.href(files.get(key, "scene0_B04.tif")),
        bands=("red", "nir"), extra_assets=("thumbnail",))
    for item in items:  # the test COGs are EPSG:32633 scenes near 15E, 45N
        item["geometry"] = {"type": "Polygon", "coordinates": [[[14.0, 44.0], [16.0, 44.0],
                            [16.0, 46.0], [14.0, 46.0], [14.0, 44.0]]]}
        item["bbox"] = [14.0, 44.0, 16.0, 46.0]
        item["properties"]["proj:code"] = "EPSG:32633"
        item["properties"].pop("proj:epsg", None)
        item["assets"]["thumbnail"]["type"] = "image/jpeg"
        item["assets"]["thumbnail"]["href"] = "http://127.0.0.1:9/thumb.jpg"
    rustac.write_sync(str(path), {"type": "FeatureCollection", "features": items})
    return path


def _cog_box(cog_dir) -> tuple[float, ...]:
    import rasterio

    with rasterio.open(cog_dir / "scene0_B04.tif") as src:
        left, top = src.xy(120, 100, offset="ul")
        right, bottom = src.xy(260, 300, offset="ul")
    return left, bottom, right, top


def test_stac_geoparquet_without_descriptor_keeps_raster_assets(stac_geoparquet, tmp_path):
    collection = rd.build_from_table(stac_geoparquet, name="sgp", workspace_dir=tmp_path,
                                     progress=False)
    assert collection.bands == ["red", "nir"]  # the JPEG thumbnail is not a band
    table = collection.to_table()
    assert set(table["proj:epsg"].to_pylist()) == {32633}
    assert "eo:cloud_cover" in table.column_names and len(table) == 8
    assert collection.describe()["enriched"]["red"] == 8


def test_descriptor_maps_bands_and_reads_alias(stac_geoparquet, tmp_path, cog_dir):
    import rasterio
    from rasterio.windows import from_bounds

    collection = rd.build_from_table(stac_geoparquet, name="sgp2", workspace_dir=tmp_path,
                                     data_source="earthsearch/sentinel-2-l2a", progress=False)
    assert collection.bands == ["B04", "B08"] and collection.data_source == "earthsearch/sentinel-2-l2a"
    box = _cog_box(cog_dir)
    ds = collection.get_xarray(box, ["nir"], geometry_crs=32633).isel(time=0).compute()
    with rasterio.open(cog_dir / "scene0_B08.tif") as src:
        want = src.read(1, window=from_bounds(*box, transform=src.transform))
    np.testing.assert_array_equal(ds["nir"].values, want)
    # the other way round: an index keyed by asset keys, read with band codes via data_source
    plain = rd.build_from_table(stac_geoparquet, name="sgp3", workspace_dir=tmp_path,
                                progress=False)
    ds = plain.get_xarray(box, ["B08"], geometry_crs=32633,
                          data_source="earthsearch/sentinel-2-l2a").isel(time=0).compute()
    np.testing.assert_array_equal(ds["B08"].values, want)
    with pytest.raises(ValueError, match=r"unknown band\(s\) \['B11'\]"):
        plain.get_xarray(box, ["B11"], geometry_crs=32633, data_source="earthsearch/sentinel-2-l2a")


def hide_and_sign(href: str) -> str:
    """Test signer: stored hrefs point at /private/..., which only exists once signed."""
    return href.replace("/private/", "/") + "?sig=s3cr3t"


def test_signer_runs_at_fetch_time_and_is_never_stored(http_server, cog_dir, tmp_path):
    import rasterio

    signed = DatasetDescriptor(id="test/signed", stac_api="http://127.0.0.1:9",
                               stac_collection="signed", band_map={"B04": "B04"},
                               signer=hide_and_sign)
    register(signed, replace=True)
    try:
        table = pa.table({
            "id": ["s0"], "datetime": pa.array([0], pa.timestamp("us", tz="UTC")),
            "geometry": [bytes.fromhex("0101000000000000000000f03f000000000000f03f")],
            "assets": [{"B04": {"href": http_server.href("private/scene0_B04.tif"),
                                "band_index": 0}}],
        })
        geometry = rd.build_collection_from_table(table, name="t").to_table()["geometry"]
        box = _cog_box(cog_dir)
        import shapely

        footprint = shapely.to_wkb(shapely.box(14.0, 44.0, 16.0, 46.0))
        table = table.set_column(2, "geometry", pa.array([footprint], geometry.type))
        collection = rd.build_from_table(table, name="signed", workspace_dir=tmp_path,
                                         data_source="test/signed", progress=False)
        assert collection.describe()["enriched"]["B04"] == 1
        ds = collection.get_xarray(box, ["B04"], geometry_crs=32633).compute()
        with rasterio.open(cog_dir / "scene0_B04.tif") as src:
            from rasterio.windows import from_bounds

            want = src.read(1, window=from_bounds(*box, transform=src.transform))
        np.testing.assert_array_equal(ds["B04"].values[0], want)
        for file in (tmp_path / "signed").rglob("*"):
            if file.is_file():
                assert b"s3cr3t" not in file.read_bytes(), file
    finally:
        unregister("test/signed")


class _TokenHandler(BaseHTTPRequestHandler):
    calls: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).calls.append(self.path)
        body = json.dumps({"token": "st=1&sig=abc", "msft:expiry": "2999-01-01T00:00:00Z"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_planetary_computer_signer_uses_cached_sas_tokens(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(signing.SAS_ENDPOINT_ENV,
                           f"http://127.0.0.1:{server.server_address[1]}/api/sas/v1/token")
        signing.clear_token_cache()
        href = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/43/P/GQ/B04.tif"
        assert planetary_computer_signer(href) == href + "?st=1&sig=abc"
        assert planetary_computer_signer(href.replace("B04", "B08")).endswith("B08.tif?st=1&sig=abc")
        assert _TokenHandler.calls == ["/api/sas/v1/token/sentinel2l2a01/sentinel2-l2"]
        assert planetary_computer_signer("https://example.com/a.tif") == "https://example.com/a.tif"
        assert planetary_computer_signer("s3://bucket/a.tif") == "s3://bucket/a.tif"
    finally:
        server.shutdown()
        signing.clear_token_cache()


def test_stac_geoparquet_file_is_valid_geoparquet_input(stac_geoparquet):
    table = pq.read_table(stac_geoparquet)
    assert "assets" in table.column_names and "proj:code" in table.column_names
