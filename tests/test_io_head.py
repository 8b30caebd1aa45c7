"""One HEAD per object reports the identity its range GETs report, on every backend."""

from __future__ import annotations

from rasteret_dask.io import ByteRange, RangeReader
from rasteret_dask.io.errors import FetchError
from rasteret_dask.io.head import identify

from .conftest import BUCKET

NAME = "scene0_B04.tif"


def test_head_and_get_agree_on_local_http_and_s3(cog_dir, http_server, s3_server):
    s3 = RangeReader(storage_options={"s3": s3_server.storage_options})
    cases = [(str(cog_dir / NAME), RangeReader()), (f"{http_server.url}/{NAME}", RangeReader()),
             (f"s3://{BUCKET}/{NAME}", s3)]
    size = (cog_dir / NAME).stat().st_size
    for href, reader in cases:
        head = identify(reader, [href, href])[href]
        _, seen = reader.fetch_identified([ByteRange(href, 0, 100)])
        assert head.size == seen[href].size == size, href
        assert head.etag == seen[href].etag, href
        assert (head.etag is None) == href.startswith("/"), href
        assert head.last_modified is not None, href


def test_a_missing_object_is_a_failure_not_an_identity(http_server, cog_dir):
    got = identify(RangeReader(retries=1), [f"{http_server.url}/nope.tif", str(cog_dir / "x")])
    assert all(isinstance(v, FetchError) and "HEAD" in v.reason for v in got.values())
