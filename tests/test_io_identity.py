"""Object identity (ETag, size, Last-Modified): parsing and comparison (pure)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from rasteret_dask import schema as S
from rasteret_dask.index.normalize import conform_metadata_array
from rasteret_dask.io.errors import FetchError, HTTPStatusError, ObjectChangedError, classify
from rasteret_dask.io.identity import ObjectIdentity, from_http_headers, mismatch
from rasteret_dask.io.ranges import ByteRange, coalesce

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_http_headers_give_etag_size_and_last_modified():
    got = from_http_headers({"ETag": '"abc-12"', "Last-Modified": "Wed, 01 May 2024 12:00:00 GMT"},
                            1234)
    assert got == ObjectIdentity('"abc-12"', 1234, T0)
    assert got.strong_etag == '"abc-12"'
    assert from_http_headers({"ETag": 'W/"x"'}, None).strong_etag is None
    assert from_http_headers({"Last-Modified": "garbage"}, 5) == ObjectIdentity(None, 5, None)


def test_mismatch_compares_what_both_sides_know():
    old = ObjectIdentity('"a"', 100, T0)
    assert mismatch(old, ObjectIdentity('"a"', 100, T0 + dt.timedelta(days=1))) is None
    assert mismatch(old, ObjectIdentity('W/"a"', None, None)) is None
    assert "ETag \"b\"" in mismatch(old, ObjectIdentity('"b"', 100, T0))
    assert "size 101" in mismatch(old, ObjectIdentity(None, 101, None))
    assert mismatch(None, old) is None and mismatch(old, None) is None
    local = ObjectIdentity(None, 100, T0)  # no ETag: the modification time counts
    assert mismatch(local, ObjectIdentity(None, 100, T0)) is None
    assert "Last-Modified" in mismatch(local, ObjectIdentity(None, 100,
                                                             T0 + dt.timedelta(microseconds=1)))


def test_a_412_or_a_changed_object_is_final():
    for exc in (HTTPStatusError(412), ObjectChangedError("ETag \"b\", enriched with ETag \"a\"")):
        verdict = classify(exc)
        assert not verdict.retryable and verdict.status == 412
        assert "changed since enrichment" in verdict.reason
    error = FetchError("http://h/a.tif", 0, 10, 1, "x", 412)
    assert error.object_changed and not FetchError("http://h/a.tif", 0, 10, 1, "x", 500).object_changed


def test_ranges_expecting_different_versions_are_not_merged():
    a, b = ObjectIdentity('"a"', 10, None), ObjectIdentity('"b"', 10, None)
    merged = coalesce([ByteRange("h", 0, 5, a), ByteRange("h", 5, 10, a), ByteRange("h", 10, 12, b)],
                      gap=100, max_size=1000)
    assert [(m.start, m.end, m.expect) for m in merged] == [(0, 10, a), (10, 12, b)]
    assert merged[0].byte_range.expect == a


def test_metadata_without_identity_fields_still_reads():
    old_type = pa.struct([f for f in S.METADATA_TYPE
                          if f.name not in ("etag", "object_size", "last_modified")])
    old = pa.array([{"image_width": 5, "tile_width": 256}, None], type=old_type)
    conformed = conform_metadata_array(old)
    assert conformed.type == S.METADATA_TYPE
    assert conformed.to_pylist()[0]["etag"] is None and conformed.to_pylist()[1] is None
