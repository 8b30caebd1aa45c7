"""Nearest warps through index maps (``read.warp_index``, no I/O): the same pixels as GDAL's
warper on the values themselves, across CRSs, with nodata, NaN, several bands at once, and
regions the window only partly reaches."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject

from rasteret_dask.read import warp_index
from rasteret_dask.read.warp_index import gather_nearest, index_map

CASES = [
    # (src crs, src transform, src shape, dst crs, dst transform, dst shape)
    ("EPSG:32632", (10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0), (300, 280),
     "EPSG:3035", (10.0, 0.0, 4300000.0, 0.0, -10.0, 2800000.0), (256, 256)),
    ("EPSG:32633", (20.0, 0.0, 300000.0, 0.0, -20.0, 5350000.0), (200, 220),
     "EPSG:32632", (10.0, 0.0, 700000.0, 0.0, -10.0, 5340000.0), (300, 310)),
    ("EPSG:32632", (60.0, 0.0, 600000.0, 0.0, -60.0, 5300000.0), (90, 90),
     "EPSG:4326", (0.0005, 0.0, 9.5, 0.0, -0.0005, 47.85), (180, 200)),
]


def _grids(case):
    src_crs, src_t, src_shape, dst_crs, dst_t, dst_shape = case
    from rasterio.warp import transform_bounds

    # place the output region over the source's ground, half off one edge
    left, bottom, right, top = transform_bounds(
        src_crs, dst_crs, src_t[2], src_t[5] + src_t[4] * src_shape[0],
        src_t[2] + src_t[0] * src_shape[1], src_t[5])
    dst_t = (dst_t[0], 0.0, left + (right - left) * 0.4, 0.0, dst_t[4],
             top - (top - bottom) * 0.1)
    return src_crs, src_t, src_shape, dst_crs, dst_t, dst_shape


def _gdal(window, fill, nodata, src_crs, src_t, dst_crs, dst_t, dst_shape):
    out = np.full((*window.shape[:-2], *dst_shape), fill, window.dtype)
    options = {"UNIFIED_SRC_NODATA": "NO"} if window.ndim == 3 else {}
    reproject(window, out, src_transform=Affine(*src_t), src_crs=src_crs, src_nodata=nodata,
              dst_transform=Affine(*dst_t), dst_crs=dst_crs, dst_nodata=fill,
              resampling=Resampling.nearest, init_dest_nodata=True, **options)
    return out


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("dtype", "nodata"), [("uint16", 0), ("uint16", None), ("int16", -9999),
                                               ("float32", float("nan")), ("uint8", 255)])
@pytest.mark.parametrize("bands", [1, 3])
def test_gathers_equal_gdals_nearest_warp(case, dtype, nodata, bands):
    src_crs, src_t, src_shape, dst_crs, dst_t, dst_shape = _grids(case)
    rng = np.random.default_rng(sum(src_shape) + bands)
    if dtype == "float32":
        window = rng.normal(100, 20, (bands, *src_shape)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        window = rng.integers(max(info.min, -500), min(info.max, 500), (bands, *src_shape),
                              dtype=dtype)
    if nodata is not None:
        window[rng.random(window.shape) < 0.2] = nodata
    fill = nodata if nodata is not None else 0
    if bands == 1:
        window = window[0]
    picks = index_map(src_shape, src_t, src_crs, dst_shape, dst_t, dst_crs, ())
    got = gather_nearest(window, fill, picks)
    want = _gdal(window, fill, nodata, src_crs, src_t, dst_crs, dst_t, dst_shape)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert 0.05 < picks.unreached.mean() < 0.9  # partly reached: both kinds are tested


def test_maps_are_kept_per_grid_pair():
    src_crs, src_t, src_shape, dst_crs, dst_t, dst_shape = _grids(CASES[0])
    first = index_map(src_shape, src_t, src_crs, dst_shape, dst_t, dst_crs, ())
    assert index_map(src_shape, src_t, src_crs, dst_shape, dst_t, dst_crs, ()) is first
    assert first.nbytes == first.picks.nbytes + first.unreached.nbytes


def test_maps_past_the_byte_budget_are_dropped_oldest_first(monkeypatch):
    src_crs, src_t, src_shape, dst_crs, dst_t, dst_shape = _grids(CASES[1])
    monkeypatch.setattr(warp_index, "_MAPS", type(warp_index._MAPS)())
    one = index_map(src_shape, src_t, src_crs, dst_shape, dst_t, dst_crs, ())
    monkeypatch.setattr(warp_index, "INDEX_MAP_BYTES", one.nbytes + 1)
    other = (dst_t[0], 0.0, dst_t[2] + 100.0, 0.0, dst_t[4], dst_t[5])
    two = index_map(src_shape, src_t, src_crs, dst_shape, other, dst_crs, ())
    assert index_map(src_shape, src_t, src_crs, dst_shape, other, dst_crs, ()) is two
    assert index_map(src_shape, src_t, src_crs, dst_shape, dst_t, dst_crs, ()) is not one
    assert len(warp_index._MAPS) == 1


def test_windows_too_large_to_number_are_refused():
    src_crs, src_t, _, dst_crs, dst_t, dst_shape = _grids(CASES[0])
    with pytest.raises(ValueError, match="too large"):
        index_map((70000, 70000), src_t, src_crs, dst_shape, dst_t, dst_crs, ())
