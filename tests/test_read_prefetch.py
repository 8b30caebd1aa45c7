"""Starting a computation's requests ahead of it (``read.prefetch``): the next time block's
fetch tasks run first, the block computed with them gives the same pixels, and blocks computed
one by one request each range once (as one computation of all of them does), on the warped
and the native path."""

from __future__ import annotations

import time

import dask
import numpy as np
import pytest
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox

from rasteret_dask.read.prefetch import is_fetch_key, prefetched_scheduler, start_fetches

BANDS = ["B02", "B11"]


def _warped(two_zones):
    union = two_zones.scenes.union(32643)
    box = GeoBox.from_bbox(union.bounds, "EPSG:32643", resolution=40.0)
    return two_zones.collection.get_xarray(None, BANDS, geobox=box, groupby="solar_day",
                                           chunks={"x": 128, "y": 128, "time": 1})


def _native(two_zones):
    west, south, east, north = two_zones.scenes.union(32643).bounds
    box = shapely.box(west, south, west + (east - west) / 3, south + (north - south) / 3)
    return two_zones.collection.subset(**{"proj:epsg": 32643}).get_xarray(
        box, ["B02"], geometry_crs=32643)


def _requests(server, run):
    before = server.count()
    result = run()
    return result, server.count() - before


@pytest.mark.parametrize("read", [_warped, _native])
@pytest.mark.parametrize("threads", [1, 2])
def test_prefetched_blocks_equal_plain_ones_and_request_each_range_once(
        two_zones, grid_server, read, threads):
    data = read(two_zones)
    blocks = [data.isel(time=[k]) for k in range(min(3, data.sizes["time"]))]
    # one computation of every block requests each range once
    plain, plain_requests = _requests(grid_server, lambda: dask.compute(*blocks,
                                                                        scheduler="sync"))
    prefix = "warp-fetch-" if read is _warped else "fetch-"

    def prefetched():
        started = start_fetches(blocks[0])
        assert started and all(k[0].startswith(prefix) for k in started)
        out = []
        for k, block in enumerate(blocks):
            ahead = (start_fetches(blocks[k + 1], started=started) if k + 1 < len(blocks)
                     else {})
            (computed,) = dask.compute(block, scheduler=prefetched_scheduler(started, threads))
            out.append(computed)
            started = ahead
        return out

    got, got_requests = _requests(grid_server, prefetched)
    assert got_requests == plain_requests > 0
    for want, have in zip(plain, got, strict=True):
        for band in want.data_vars:
            np.testing.assert_array_equal(have[band].values, want[band].values)


def test_started_fetches_are_in_flight_before_the_compute(two_zones, grid_server):
    block = _warped(two_zones).isel(time=[0])
    before = grid_server.count()
    started = start_fetches(block)
    deadline = time.monotonic() + 10
    while grid_server.count() == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert grid_server.count() > before  # requests left before anything was computed
    (computed,) = dask.compute(block, scheduler=prefetched_scheduler(started))
    assert (computed["B02"].values != 0).any()


def test_fetches_shared_with_an_earlier_block_are_reused(two_zones):
    data = _warped(two_zones)
    first = start_fetches(data.isel(time=[0]))
    again = start_fetches(data.isel(time=[0]), started=first)
    assert again.keys() == first.keys()
    assert all(again[k] is first[k] for k in first)
    assert start_fetches(None) == {}
    assert start_fetches(xr.Dataset({"v": ("x", np.arange(3))})) == {}  # nothing lazy


def test_fetch_keys_are_named_by_the_read_layers():
    assert is_fetch_key(("fetch-B02-0123abcd", 3))
    assert is_fetch_key(("warp-fetch-B02-0123abcd", 0))
    assert not is_fetch_key(("warp-B02-0123abcd", 0, 0, 0))
    assert not is_fetch_key("fetch")
    assert not is_fetch_key(())
