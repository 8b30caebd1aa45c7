"""The read graph: tiles decoded while others are in flight, chunks decoded in place into one
buffer per band (returned by compute without a copy, never shared between computations), the
per-chunk fallback for large bands, and fetch errors named by record and href."""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import Future

import dask.array as da
import imagecodecs
import numpy as np
import pytest

from rasteret_dask.decode import DecodeSpec
from rasteret_dask.io import FetchError
from rasteret_dask.read import RasterReadError
from rasteret_dask.read import buffers as read_buffers
from rasteret_dask.read import graph as read_graph
from rasteret_dask.read.buffers import Placement
from rasteret_dask.read.plan import ChunkWork, TileRead
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


def test_compute_returns_the_shared_buffer_and_never_reuses_it(collection, cog_dir, monkeypatch):
    concatenated = []
    monkeypatch.setattr(read_buffers, "finalize",
                        lambda results: concatenated.append(1) or da.core.finalize(results))
    epsg, box, _ = shapes(cog_dir)
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg)
    assert type(ds["B1"].data).__name__ == "SharedBandArray"
    assert ds["B1"].data.npartitions > 4
    first = ds.compute()
    assert not concatenated  # the chunks were decoded in place: no concatenation
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
    # nothing kept once results are gone (other tests' failed computations may leave theirs)
    assert ds["B1"].data.name not in read_buffers._shared
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


def _payloads(blobs: list[bytes]) -> read_graph.PendingPayloads:
    futures = []
    for blob in blobs:
        future: Future = Future()
        future.set_result(blob)
        futures.append(future)
    return read_graph.PendingPayloads(futures, tuple(f"tile {i}" for i in range(len(blobs))), 0)


@pytest.mark.parametrize("shared", [False, True])
def test_decode_chunk_layouts(shared):
    """Whole tiles, crops, several tiles and fill, into new arrays or a shared band buffer."""
    rng = np.random.default_rng(3)
    tiles = [rng.integers(0, 65535, (16, 16), dtype=np.uint16) for _ in range(2)]
    blobs = [imagecodecs.zlib_encode(t.tobytes()) for t in tiles]
    spec = DecodeSpec(8, 1, "uint16", 16, 16, 1, 1)
    cases = {  # name -> (chunk shape, tile reads, expected chunk)
        "whole": ((16, 16), (TileRead(0, (0, 16, 0, 16), (0, 16, 0, 16)),), tiles[0]),
        "crop": ((10, 7), (TileRead(1, (3, 13, 2, 9), (0, 10, 0, 7)),), tiles[1][3:13, 2:9]),
        "two": ((16, 20), (TileRead(0, (0, 16, 6, 16), (0, 16, 0, 10)),
                           TileRead(1, (0, 16, 0, 10), (0, 16, 10, 20))),
                np.hstack([tiles[0][:, 6:], tiles[1][:, :10]])),
        "fill": ((16, 20), (TileRead(0, (0, 16, 0, 16), (0, 16, 0, 16)),),
                 np.hstack([tiles[0], np.full((16, 4), 9, np.uint16)])),
    }
    payloads = _payloads(blobs)
    for t, (name, (shape, reads, want)) in enumerate(cases.items()):
        work = ChunkWork(spec, shape, 9.0, 0, reads, name)
        placement = None
        if shared:
            placement = Placement(f"test-{name}", (len(cases), 20, 24), "<u2",
                                             (t, 2, 3))
            read_buffers._computing_whole(placement.name)  # as a compute of the band does
        got = read_graph.decode_chunk(payloads, work, placement)
        if shared:
            read_buffers._computed_whole(placement.name)
        assert got.shape == (1, *shape) and got.dtype == np.uint16, name
        np.testing.assert_array_equal(got[0], want, err_msg=name)
        if shared:
            assert got.base is not None and got.base.shape == (len(cases), 20, 24)


def test_a_waiting_decode_task_decodes_the_chunks_that_arrived(monkeypatch):
    """Chunk 0's tile is still in flight: its task decodes chunks 1 and 2 meanwhile, once each,
    and their own tasks return those results; a helper's decode error is raised by its owner."""
    from rasteret_dask.read import scatter as read_scatter

    rng = np.random.default_rng(5)
    tiles = [rng.integers(0, 65535, (16, 16), dtype=np.uint16) for _ in range(3)]
    spec = DecodeSpec(8, 1, "uint16", 16, 16, 1, 1)
    futures: list[Future] = [Future() for _ in range(4)]
    for i in (1, 2):
        futures[i].set_result(imagecodecs.zlib_encode(tiles[i].tobytes()))
    futures[3].set_result(b"not deflate")
    whole = (0, 16, 0, 16)
    jobs = [(ChunkWork(spec, (16, 16), 0.0, 0, (TileRead(i, whole, whole),), f"chunk {i}"), None)
            for i in range(4)]
    decoded: list[str] = []
    original = read_scatter.decode_read  # each chunk here is one tile: one decode each

    def counting(payloads, read, work, *args):
        decoded.append(work.label)
        return original(payloads, read, work, *args)

    monkeypatch.setattr(read_scatter, "decode_read", counting)
    pending = read_graph.PendingPayloads(futures, tuple(f"tile {i}" for i in range(4)), 0, jobs)
    results: dict[int, np.ndarray] = {}
    owner = threading.Thread(target=lambda: results.setdefault(0, read_graph.read_chunk(pending, 0)))
    owner.start()
    deadline = time.monotonic() + 10
    while len(decoded) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sorted(decoded) == ["chunk 1", "chunk 2", "chunk 3"] and owner.is_alive()
    futures[0].set_result(imagecodecs.zlib_encode(tiles[0].tobytes()))
    owner.join(timeout=10)
    for i in (1, 2):
        results[i] = read_graph.read_chunk(pending, i)
    with pytest.raises(RasterReadError, match="chunk 3"):
        read_graph.read_chunk(pending, 3)
    assert sorted(decoded) == ["chunk 0", "chunk 1", "chunk 2", "chunk 3"]  # once each
    for i in range(3):
        np.testing.assert_array_equal(results[i][0], tiles[i])
