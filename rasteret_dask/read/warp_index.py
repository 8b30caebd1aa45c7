"""Nearest-neighbour warps as gathers through GDAL's own choice of source pixel.

For ``nearest`` every output pixel takes one source pixel or none, and which one depends only
on the two grids (source window and chunk region: CRS, transform, shape), not on the values.
So GDAL's warper is run once per pair of grids on an image of source pixel numbers (UInt32,
no nodata): its result says, for each output pixel, which source pixel GDAL picks. Every
record on that grid, every band and every revisit (the same MGRS tile on another day) then
takes its pixels with one ``numpy.take``, several times faster than GDAL's nearest kernel,
with the same values: a picked source pixel holding nodata gives nodata, which is what the
warper leaves in an output pixel initialised to nodata.

The maps of the last :data:`INDEX_MAPS` grid pairs are kept per process.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from affine import Affine

__all__ = ["INDEX_MAPS", "index_map", "gather_nearest"]

INDEX_MAPS = 8
"""Grid pairs whose index maps a process keeps (each 8 bytes per output pixel)."""
_NONE = np.uint32(0xFFFFFFFF)


@functools.lru_cache(maxsize=INDEX_MAPS)
def index_map(src_shape: tuple[int, int], src_transform: tuple[float, ...], src_crs: str,
              dst_shape: tuple[int, int], dst_transform: tuple[float, ...], dst_crs: str,
              where: tuple[tuple[str, Any], ...]) -> np.ndarray:
    """(h', w') intp: the flat source pixel GDAL's nearest warp puts in each output pixel, or
    ``src_shape[0] * src_shape[1]`` (one past the last) where it puts none.

    Parameters
    ----------
    src_shape, src_transform, src_crs
        The source window's grid (``transform`` as six coefficients, ``crs`` as GDAL takes it).
    dst_shape, dst_transform, dst_crs
        The output region's grid.
    where : tuple of (str, value)
        Further warp options as ``rasterio.warp.reproject`` keywords (``AREA_OF_INTEREST``).
    """
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    count = src_shape[0] * src_shape[1]
    if count >= int(_NONE):
        raise ValueError(f"a window of {src_shape} pixels is too large for a UInt32 index map")
    numbers = np.arange(count, dtype=np.uint32).reshape(src_shape)
    picked = np.full(dst_shape, _NONE, np.uint32)
    reproject(numbers, picked, src_transform=Affine(*src_transform), src_crs=src_crs,
              src_nodata=None, dst_transform=Affine(*dst_transform), dst_crs=dst_crs,
              dst_nodata=int(_NONE), resampling=Resampling.nearest, init_dest_nodata=True,
              **dict(where))
    out = picked.astype(np.intp)
    out[picked == _NONE] = count
    out.flags.writeable = False
    return out


def gather_nearest(window: np.ndarray, fill: Any, picks: np.ndarray) -> np.ndarray:
    """The window's pixels at ``picks`` (:func:`index_map`), ``fill`` where none is picked.

    Parameters
    ----------
    window : ndarray
        (h, w) source pixels, or (n, h, w): n records on the same grid.
    fill : scalar
        The value of output pixels no source pixel reaches (the read's nodata fill).
    picks : ndarray
        The index map of the window's grid and the output region.

    Returns
    -------
    ndarray
        (h', w') or (n, h', w') of the window's dtype.
    """
    flat = window.reshape(-1, window.shape[-2] * window.shape[-1])
    out = np.empty((flat.shape[0], *picks.shape), window.dtype)
    padded = np.empty(flat.shape[1] + 1, window.dtype)
    padded[-1] = fill
    for k in range(flat.shape[0]):
        padded[:-1] = flat[k]
        np.take(padded, picks, out=out[k])
    return out if window.ndim == 3 else out[0]
