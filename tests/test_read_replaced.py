"""A COG replaced at the same href after enrichment (same pixels, longer header, every tile
moved): reads fail with a clear error over HTTP, S3 and local files, or read nodata and list
it with ``errors="nodata"``; never pixels decoded from bytes the metadata does not describe."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rasteret_dask.read.chunks import ObjectChangedReadError
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.servers import RangeServer

from .test_read_helpers import build, file_info, pixel_box, single

BUCKET = "replaced-tests"
OPTIONS = dict(width=200, height=200, blocksize=128, compress=None, dtype="uint16", seed=5)


def _original(path):
    return write_cog(path, overviews=False, **OPTIONS)


def _replacement(path):
    """The same pixels with overview IFDs in front: the header grows and every tile moves."""
    return write_cog(path, overviews=True, **OPTIONS)


def _offsets(collection) -> list[int]:
    return collection.to_table()["B1_metadata"].to_pylist()[0]["tile_offsets"]


@pytest.fixture
def cog_root(tmp_path):
    root = tmp_path / "cogs"
    root.mkdir()
    _original(root / "a.tif")
    return root


def _whole(path):
    """(the image's box in its CRS, its EPSG code)."""
    epsg, transform, (h, w) = file_info(path)
    return pixel_box(transform, 0, 0, w, h), epsg


def _read(collection, path, **kwargs):
    box, epsg = _whole(path)
    return np.squeeze(collection.get_numpy(box, ["B1"], geometry_crs=epsg, **kwargs)[0])


def _check_fails_then_nodata(collection, path, storage_options=None):
    with pytest.raises(ObjectChangedReadError) as raised:
        _read(collection, path, storage_options=storage_options)
    message = str(raised.value)
    assert "record 'r0'" in message and "band 'B1'" in message and "a.tif" in message
    assert "the object changed since enrichment" in message
    assert "collection.enrich(only_missing=False)" in message and "reenrich --verify" in message
    box, epsg = _whole(path)
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg, errors="nodata",
                               storage_options=storage_options).compute()
    values = ds["B1"].values
    assert np.all(values == 0)  # no nodata declared: 0; never the moved tiles' bytes
    assert ds.attrs["read_errors"] and all("changed since enrichment" in e
                                           for e in ds.attrs["read_errors"])
    return message


def test_http_replaced_object_fails_with_if_match(cog_root, tmp_path):
    with RangeServer(cog_root) as server:
        collection = build([single(cog_root / "a.tif", href=server.href("a.tif"))])
        md = collection.to_table()["B1_metadata"].to_pylist()[0]
        assert md["etag"] and md["object_size"] == (cog_root / "a.tif").stat().st_size
        assert md["last_modified"] is not None
        assert np.array_equal(_read(collection, cog_root / "a.tif"),
                              expected_all(cog_root / "a.tif"))
        _replacement(cog_root / "a.tif")
        enriched_again = build([single(cog_root / "a.tif", href=server.href("a.tif"))])
        assert _offsets(enriched_again) != _offsets(collection)  # every tile moved
        server.reset()
        message = _check_fails_then_nodata(collection, cog_root / "a.tif")
        assert "HTTP 412" in message and md["etag"] in message
        # point samples fetch through the same fetch groups: also refused, never moved bytes
        box, epsg = _whole(cog_root / "a.tif")
        with pytest.raises(ObjectChangedReadError):
            collection.sample_points([box.centroid], ["B1"], geometry_crs=epsg)
        assert any(r.status == 412 for r in server.requests)
        assert not any(r.status == 206 and r.path == "a.tif" for r in server.requests)
        assert np.array_equal(_read(enriched_again, cog_root / "a.tif"),
                              expected_all(cog_root / "a.tif"))


def test_s3_replaced_object_fails_with_if_match(cog_root, s3_server):
    s3_server.create_bucket(BUCKET)
    s3_server.upload(cog_root / "a.tif", BUCKET, "a.tif")
    options = {"s3": s3_server.storage_options}
    collection = build([single(cog_root / "a.tif", href=f"s3://{BUCKET}/a.tif")],
                       storage_options=options)
    md = collection.to_table()["B1_metadata"].to_pylist()[0]
    assert md["etag"] and md["object_size"] == (cog_root / "a.tif").stat().st_size
    _replacement(cog_root / "a.tif")
    s3_server.upload(cog_root / "a.tif", BUCKET, "a.tif")
    message = _check_fails_then_nodata(collection, cog_root / "a.tif", options)
    assert "412" in message and md["etag"] in message


def test_local_replaced_file_fails_on_size(cog_root, tmp_path):
    collection = build([single(cog_root / "a.tif")])
    md = collection.to_table()["B1_metadata"].to_pylist()[0]
    assert md["etag"] is None and md["object_size"] == (cog_root / "a.tif").stat().st_size
    _replacement(tmp_path / "new.tif")
    shutil.move(tmp_path / "new.tif", cog_root / "a.tif")
    message = _check_fails_then_nodata(collection, cog_root / "a.tif")
    assert "size" in message


def expected_all(path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)
