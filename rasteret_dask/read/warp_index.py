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
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine

__all__ = ["INDEX_MAPS", "IndexMap", "index_map", "gather_nearest"]

INDEX_MAPS = 8
"""Grid pairs whose index maps a process keeps (each 8 bytes per output pixel)."""
_NONE = np.uint32(0xFFFFFFFF)


@dataclass(frozen=True, eq=False)
class IndexMap:
    """Which source pixel GDAL's nearest warp puts in each output pixel of a region.

    ``picks`` (h', w') intp: the flat source pixel of each output pixel (0 where it puts
    none); ``unreached`` (h', w') bool: the output pixels it puts none in (None: it reaches
    every one). Shared by every user of the cached map: never written to."""

    picks: np.ndarray
    unreached: np.ndarray | None


@functools.lru_cache(maxsize=INDEX_MAPS)
def index_map(src_shape: tuple[int, int], src_transform: tuple[float, ...], src_crs: str,
              dst_shape: tuple[int, int], dst_transform: tuple[float, ...], dst_crs: str,
              where: tuple[tuple[str, Any], ...]) -> IndexMap:
    """GDAL's nearest-neighbour choice of source pixel for every output pixel.

    Parameters
    ----------
    src_shape, src_transform, src_crs
        The source window's grid (``transform`` as six coefficients, ``crs`` as GDAL takes it).
    dst_shape, dst_transform, dst_crs
        The output region's grid.
    where : tuple of (str, value)
        Further warp options as ``rasterio.warp.reproject`` keywords (``AREA_OF_INTEREST``).

    Returns
    -------
    IndexMap

    Raises
    ------
    ValueError
        When the window has too many pixels to number in UInt32.
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
    unreached = picked == _NONE
    picks = picked.astype(np.intp)
    if unreached.any():
        picks[unreached] = 0
    else:
        unreached = None
    # left writeable: numpy's take copies read-only indices on every call
    return IndexMap(picks, unreached)


def gather_nearest(window: np.ndarray, fill: Any, index: IndexMap) -> np.ndarray:
    """The window's pixels GDAL's nearest warp picks (:func:`index_map`), ``fill`` where it
    picks none.

    Parameters
    ----------
    window : ndarray
        (h, w) source pixels, or (n, h, w): n records on the same grid.
    fill : scalar
        The value of output pixels no source pixel reaches (the read's nodata fill).
    index : IndexMap
        The map of the window's grid and the output region.

    Returns
    -------
    ndarray
        (h', w') or (n, h', w') of the window's dtype.
    """
    flat = window.reshape(-1, window.shape[-2] * window.shape[-1])
    out = np.empty((flat.shape[0], *index.picks.shape), window.dtype)
    for k in range(flat.shape[0]):
        # "clip": the picks are in range; the default "raise" copies ``out`` first
        np.take(flat[k], index.picks, out=out[k], mode="clip")
        if index.unreached is not None:
            np.copyto(out[k], fill, where=index.unreached, casting="unsafe")
    return out if window.ndim == 3 else out[0]
