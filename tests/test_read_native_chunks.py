"""Native reads in regular chunks from the output window's origin (Zarr-ready), each tile still
fetched and decoded once where it straddles chunk edges; pixels bit-exact against rasterio."""

from __future__ import annotations

import threading

import dask
import numpy as np
import pytest
import xarray as xr

from rasteret_dask.read import chunks as chunk_module
from rasteret_dask.read import graph
from rasteret_dask.read.plan import NO_GROUP
from rasteret_dask.read.route import NativeChunks, native_chunks
from rasteret_dask.read.shared_tiles import SharedTiles
from rasteret_dask.testing.cogs import write_cog, write_masked_tiff, write_strip_tiff

from .test_read_helpers import (
    assert_matches,
    build,
    expected,
    file_info,
    pixel_box,
    pixel_circle,
    regular_chunks,
    single,
)

pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    """1500 x 1300 uint16, 256-pixel tiles, deflate + predictor, nodata 0."""
    path = tmp_path_factory.mktemp("native") / "tiled.tif"
    return write_cog(path, width=1500, height=1300, blocksize=256, dtype="uint16",
                     predictor=2, nodata=0, seed=21)


def _count_decodes(monkeypatch) -> list[int]:
    """A list that grows by one on every tile decode (from any thread)."""
    calls: list[int] = []
    lock = threading.Lock()
    real = chunk_module.decode_tile

    def counting(data, spec, out=None, **kwargs):
        with lock:
            calls.append(1)
        return real(data, spec, out, **kwargs)

    monkeypatch.setattr(chunk_module, "decode_tile", counting)
    return calls


def _mid_tile_box(path):
    _, t, _ = file_info(path)
    # rows 103 .. 1187, cols 201 .. 1399: starts mid-tile on both axes
    return pixel_box(t, 201.0, 103.0, 1399.0, 1187.0)


def test_mid_tile_aoi_has_regular_chunks_and_round_trips_through_zarr(tiled, tmp_path):
    collection = build([single(tiled)])
    epsg, _, _ = file_info(tiled)
    box = _mid_tile_box(tiled)
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg)
    var = ds["B1"]
    assert var.shape == (1, 1084, 1198)
    assert var.chunks[1] == (256, 256, 256, 256, 60)
    assert var.chunks[2] == (256, 256, 256, 256, 174)
    assert_matches(var.values[0], expected(ds, tiled, 0, geometry=box))
    store = tmp_path / "out.zarr"
    ds.to_zarr(store)  # xarray refuses irregular chunks: this is the point
    back = xr.open_zarr(store)
    xr.testing.assert_equal(back.compute(), ds.compute())


def test_chunks_in_pixels_are_honoured_exactly(tiled):
    collection = build([single(tiled)])
    epsg, _, _ = file_info(tiled)
    box = _mid_tile_box(tiled)
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg, chunks={"x": 700, "y": 600})
    var = ds["B1"]
    assert var.chunks[1:] == ((600, 484), (700, 498))
    assert_matches(var.values[0], expected(ds, tiled, 0, geometry=box))
    pair = collection.get_xarray(box, ["B1"], geometry_crs=epsg, chunks=(300, 500))["B1"]
    assert pair.chunks[1:] == ((300, 300, 300, 184), (500, 500, 198))
    assert_matches(pair.values[0], var.values[0])
    plan = collection.explain(box, ["B1"], geometry_crs=epsg, chunks=(300, 500))[0]
    assert plan["chunk_shape"] == (300, 500) and plan["chunks"] == 12


def test_tile_counts_keep_todays_chunks_on_a_tile_aligned_window(tiled):
    collection = build([single(tiled)])
    epsg, t, _ = file_info(tiled)
    box = pixel_box(t, 256.0, 512.0, 1300.0, 1100.0)  # starts on a tile corner
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg, chunks=2)
    assert ds["B1"].chunks[1:] == ((512, 76), (512, 512, 20))
    plan = collection.explain(box, ["B1"], geometry_crs=epsg, chunks=2)[0]
    assert plan["shared_tiles"] == 0  # every tile lies in one chunk
    assert_matches(ds["B1"].values[0], expected(ds, tiled, 0, geometry=box))


def test_a_mid_tile_window_fetches_and_decodes_every_tile_once(tiled, monkeypatch):
    collection = build([single(tiled)])
    epsg, _, _ = file_info(tiled)
    box = _mid_tile_box(tiled)
    # planning only: one range per tile the window touches (rows 0..4, cols 0..5 of tiles),
    # 5 x 5 chunks of 256 pixels whose edges all cut through tiles
    from rasteret_dask.read import plan_reads

    plan = plan_reads(collection, box, ["B1"], geometry_crs=epsg)[0]
    (band,) = plan.bands
    ranges = [(r.href, r.start) for g in band.groups for r in g.ranges]
    assert len(ranges) == len(set(ranges)) == 5 * 6
    assert len(band.groups) == 1
    explained = plan.explain()
    assert explained["tiles"] == 30 and explained["chunks"] == 25
    assert explained["shared_tiles"] == 28  # all but two corner tiles straddle chunk edges
    uses = {}
    for g, work in band.chunks.values():
        assert g != NO_GROUP
        for read in work.tiles:
            uses[read.payload] = uses.get(read.payload, 0) + 1
    assert sorted(set(uses.values())) == [1, 2, 4]
    # computing on threads decodes each tile once, whatever chunk order the threads take
    calls = _count_decodes(monkeypatch)
    for shared in (True, False):  # the band's shared buffer, and one array per chunk
        calls.clear()
        monkeypatch.setattr(graph, "SHARED_OUTPUT_BYTES", 1 << 40 if shared else 0)
        ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg)
        with dask.config.set(scheduler="threads", num_workers=4):
            values = ds["B1"].values[0]
        assert len(calls) == 30
        assert_matches(values, expected(ds, tiled, 0, geometry=box))


def test_striped_file_in_regular_chunks(tmp_path):
    path = write_strip_tiff(tmp_path / "strip.tif", width=2001, height=1503, dtype="int16",
                            rows_per_strip=7, nodata=-5, seed=3)
    collection = build([single(path)])
    epsg, t, _ = file_info(path)
    circle = pixel_circle(t, 1000.2, 700.7, 600.0)
    ds = collection.get_xarray(circle, ["B1"], geometry_crs=epsg)
    var = ds["B1"]
    rows = var.chunks[1]
    # 74 strips of 7 rows a chunk (about a million pixels), from the window's first row
    assert rows[:2] == (518, 518) and regular_chunks(var, 518, var.shape[2])
    assert_matches(var.values[0], expected(ds, path, 0, geometry=circle))
    px = collection.get_xarray(circle, ["B1"], geometry_crs=epsg, chunks={"y": 100, "x": 256})
    assert regular_chunks(px["B1"], 100, 256)
    assert_matches(px["B1"].values[0], var.values[0])


def test_internal_mask_in_regular_chunks(tmp_path):
    import rasterio

    path = write_masked_tiff(tmp_path / "masked.tif", width=900, height=700, dtype="uint16",
                             blocksize=256, seed=5)
    collection = build([single(path)])
    epsg, t, _ = file_info(path)
    box = pixel_box(t, 77.0, 131.0, 850.0, 690.0)
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg, chunks={"x": 300, "y": 200})
    var = ds["B1"]
    assert regular_chunks(var, 200, 300)
    with rasterio.open(path) as src:
        from .test_read_helpers import output_window

        window = output_window(ds, src.transform)
        want = src.read(1, window=window, masked=True).filled(0)
    assert (want == 0).any()
    assert_matches(var.values[0], want)


def test_native_chunks_argument():
    assert native_chunks(None) == NativeChunks(1, None)
    assert native_chunks(3) == NativeChunks(3, None)
    assert native_chunks({"x": 700, "y": 600}) == NativeChunks(1, (600, 700))
    assert native_chunks({"x": 512}) == NativeChunks(1, (512, 512))
    assert native_chunks({"time": 1}) == NativeChunks(1, None)
    assert native_chunks((300, 500)) == NativeChunks(1, (300, 500))
    for bad in (0, -2, {"x": 0}, (1, 2, 3), "x"):
        with pytest.raises(ValueError, match="chunks="):
            native_chunks(bad)


def test_shared_tiles_decode_once_and_drop_after_the_last_user():
    shared = SharedTiles([1, 3])
    assert not shared.shared(0) and shared.shared(1)
    made = []
    barrier = threading.Barrier(3)
    results = []

    def decode():
        made.append(1)
        return np.arange(4)

    def user():
        barrier.wait()
        results.append(shared.tile(1, decode))
        shared.release(1)

    threads = [threading.Thread(target=user) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and shared.decodes == 1
    assert all(r is results[0] for r in results)
    assert len(shared) == 0  # dropped after its third user
    assert not shared.shared(1)  # a chunk computed again decodes on its own


def test_a_shared_tile_that_fails_fails_every_chunk_reading_it():
    shared = SharedTiles([2])

    def broken():
        raise OSError("bad tile")

    for _ in range(2):
        with pytest.raises(OSError, match="bad tile"):
            shared.tile(0, broken)
        shared.release(0)
    assert len(shared) == 0


def test_chunks_of_later_fetch_groups_borrow_tiles_instead_of_fetching_them_again(
        tiled, monkeypatch):
    from rasteret_dask.read.assemble import to_dataset
    from rasteret_dask.read.plan import plan_read
    from rasteret_dask.read.select import select

    collection = build([single(tiled)])
    epsg, _, _ = file_info(tiled)
    box = _mid_tile_box(tiled)
    (selection,) = select(collection, box, ["B1"], geometry_crs=epsg)
    plan = plan_read(selection, group_tiles=8)  # small groups: neighbours fall in others
    (band,) = plan.bands
    assert len(band.groups) > 3
    ranges = [(r.href, r.start) for g in band.groups for r in g.ranges]
    assert len(ranges) == len(set(ranges)) == 30  # still every tile fetched once
    borrowing = [(g, work) for g, work in band.chunks.values() if work.borrowed]
    assert borrowing
    for g, work in borrowing:
        assert all(lender < g for lender in work.lenders)
        for read in work.tiles:
            if read.payload < 0:
                lender, index = work.borrowed[-read.payload - 1]
                assert index < len(band.groups[lender].ranges)
    assert plan.explain()["shared_tiles"] == 28
    calls = _count_decodes(monkeypatch)
    reader = selection.source.reader()
    for scheduler in ("threads", "sync"):
        calls.clear()
        ds = to_dataset(plan, reader)
        with dask.config.set(scheduler=scheduler, num_workers=4):
            values = ds["B1"].values[0]
        assert len(calls) == 30
        assert_matches(values, expected(ds, tiled, 0, geometry=box))


def test_records_reading_one_file_never_borrow_from_each_other(tiled):
    from rasteret_dask.read.plan import plan_read
    from rasteret_dask.read.select import select

    # two records of the same file: a later record's chunks may run long after the earlier
    # record's groups, so they fetch their own tiles rather than pin the earlier ones
    collection = build([single(tiled), single(tiled, rid="r1", when="2024-05-02T10:00:00")])
    epsg, _, _ = file_info(tiled)
    (selection,) = select(collection, _mid_tile_box(tiled), ["B1"], geometry_crs=epsg)
    plan = plan_read(selection, group_tiles=8)
    (band,) = plan.bands
    groups = [{g for (t, _, _), (g, _) in band.chunks.items() if t == r and g != NO_GROUP}
              for r in (0, 1)]
    earlier_only = groups[0] - groups[1]  # the groups planned for the first record alone
    assert earlier_only
    for (t, _, _), (_, work) in band.chunks.items():
        if t == 1:
            assert not set(work.lenders) & earlier_only


def test_borrowed_tiles_on_a_multi_process_cluster(tiled):
    from distributed import Client, LocalCluster

    from rasteret_dask.read.assemble import to_dataset
    from rasteret_dask.read.plan import plan_read
    from rasteret_dask.read.select import select

    collection = build([single(tiled)])
    epsg, _, _ = file_info(tiled)
    box = _mid_tile_box(tiled)
    (selection,) = select(collection, box, ["B1"], geometry_crs=epsg)
    plan = plan_read(selection, group_tiles=8)
    ds = to_dataset(plan, selection.source.reader())
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=2,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        values = client.compute(ds["B1"].data).result()[0]
    assert_matches(values, expected(ds, tiled, 0, geometry=box))


def test_without_lending_each_group_fetches_its_own_straddling_tiles(tiled):
    from rasteret_dask.read.plan import LEND_TILES_KEY, plan_read
    from rasteret_dask.read.select import select

    collection = build([single(tiled)])
    epsg, _, _ = file_info(tiled)
    (selection,) = select(collection, _mid_tile_box(tiled), ["B1"], geometry_crs=epsg)
    with dask.config.set({LEND_TILES_KEY: False}):  # as `rasteret-dask read --out` plans
        plan = plan_read(selection, group_tiles=8)
    (band,) = plan.bands
    assert not any(work.borrowed for _, work in band.chunks.values())
    ranges = [(r.href, r.start) for g in band.groups for r in g.ranges]
    assert set(ranges) == {(r.href, r.start) for r in
                           (r for g in plan_read(selection, group_tiles=8).bands[0].groups
                            for r in g.ranges)}  # the same tiles, some in two groups
    assert len(ranges) > len(set(ranges))
