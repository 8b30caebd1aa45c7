"""The read graph: tiles decoded while others are in flight, chunks decoded in place into one
buffer per band (returned by compute without a copy, never shared between computations), the
per-chunk fallback for large bands, and fetch errors named by record and href."""

from __future__ import annotations

import pickle
from concurrent.futures import Future

import dask.array as da
import numpy as np
import pytest

from rasteret_dask.io import FetchError
from rasteret_dask.read import RasterReadError
from rasteret_dask.read import graph as read_graph
from rasteret_dask.testing.servers import RangeServer

from .test_read_helpers import (
    assert_matches,
    build,
    expected,
    file_info,
    pixel_box,
    pixel_circle,
    single,
)

NAMES = ["scene0_B04.tif", "scene1_B04.tif"]


@pytest.fixture(scope="module")
def server(cog_dir):
    with RangeServer(cog_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def collection(cog_dir, server):
    records = [single(cog_dir / n, href=server.href(n), rid=f"r{i}", when=f"2024-0{i + 1}-01")
               for i, n in enumerate(NAMES)]
    return build(records)


def shapes(cog_dir):
    epsg, t, (h, w) = file_info(cog_dir / NAMES[0])
    return epsg, pixel_box(t, 30.5, 20.2, w - 40.7, h - 35.1), pixel_circle(t, 300, 280, 200)


def check(values, cog_dir, geometry=None):
    for t, name in enumerate(NAMES):
        want = expected(values, cog_dir / name, 0, geometry=geometry)
        assert_matches(values["B1"].values[t], want)


def test_compute_returns_the_shared_buffer_and_never_reuses_it(collection, cog_dir):
    epsg, box, _ = shapes(cog_dir)
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg)
    assert type(ds["B1"].data).__name__ == "_SharedBandArray"
    assert ds["B1"].data.npartitions > 4
    first = ds.compute()
    check(first, cog_dir)
    array = first["B1"].values
    assert array.flags.owndata and array.flags.c_contiguous and array.flags.writeable
    snapshot = array.copy()
    array[...] = 0  # the caller owns its result: a new computation must not see this
    second = ds["B1"].data.compute()
    assert not np.shares_memory(second, array)
    np.testing.assert_array_equal(second, snapshot)
    persisted = ds["B1"].data.persist()
    again = ds["B1"].data.compute()
    from_persisted = persisted.compute()
    assert not np.shares_memory(again, from_persisted)
    np.testing.assert_array_equal(again, snapshot)
    np.testing.assert_array_equal(from_persisted, snapshot)
    assert not read_graph._shared  # nothing kept once results are gone
    del persisted, from_persisted
    sliced = ds["B1"].data[:, 5:-3, 7:].compute(scheduler="sync")
    np.testing.assert_array_equal(sliced, snapshot[:, 5:-3, 7:])


def test_masked_and_large_band_reads(collection, cog_dir, monkeypatch):
    epsg, box, circle = shapes(cog_dir)
    shared = collection.get_xarray(circle, ["B1"], geometry_crs=epsg).compute()
    check(shared, cog_dir, geometry=circle)
    monkeypatch.setattr(read_graph, "SHARED_OUTPUT_BYTES", 0)
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg)
    assert type(ds["B1"].data) is da.Array
    check(ds.compute(), cog_dir)
    masked = collection.get_xarray(circle, ["B1"], geometry_crs=epsg).compute()
    np.testing.assert_array_equal(masked["B1"].values, shared["B1"].values)


def test_fetch_errors_name_the_record(collection, cog_dir, server):
    epsg, box, _ = shapes(cog_dir)
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg)
    server.set_status(NAMES[1], 404)
    try:
        with pytest.raises(RasterReadError, match=f"record 'r1'.*{NAMES[1]}.*HTTP 404"):
            ds.compute()
    finally:
        server.set_status(NAMES[1], None)
    check(ds.compute(), cog_dir)


def test_pending_payloads_pickle_once_complete():
    done: Future = Future()
    done.set_result(memoryview(b"abcdef")[1:4])
    failed: Future = Future()
    failed.set_exception(FetchError("http://x/y.tif", 0, 10, 3, "HTTP 503"))
    pending = read_graph.PendingPayloads([done, failed], ("first", "second"), 16)
    assert len(pending) == 2 and pending.__sizeof__() == 16
    copy = pickle.loads(pickle.dumps(pending))
    assert copy.get(0) == b"bcd"
    with pytest.raises(RasterReadError, match="second: bytes 0-9 of http://x/y.tif: HTTP 503"):
        copy.get(1)
    assert bytes(pending.get(0)) == b"bcd"
