"""Nearest-neighbour warps as gathers through GDAL's own choice of source pixel.

For ``nearest`` every output pixel takes one source pixel or none, and which one depends only
on the two grids (source window and chunk region: CRS, transform, shape), not on the values.
So GDAL's warper is run once per pair of grids on an image of source pixel numbers (UInt32,
no nodata): its result says, for each output pixel, which source pixel GDAL picks. Every
record on that grid, every band and every revisit (the same MGRS tile on another day) then
takes its pixels with one ``numpy.take``, several times faster than GDAL's nearest kernel,
with the same values: a picked source pixel holding nodata gives nodata, which is what the
warper leaves in an output pixel initialised to nodata.

The maps of the grid pairs used last are kept per process, up to :data:`INDEX_MAP_BYTES`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine

__all__ = ["INDEX_MAP_BYTES", "IndexMap", "index_map", "gather_nearest"]

INDEX_MAP_BYTES = 256 << 20
"""Bytes of index maps a process keeps (9 per output pixel), the least recently used dropped
first."""
_NONE = np.uint32(0xFFFFFFFF)
_MAPS: OrderedDict[tuple, IndexMap] = OrderedDict()
_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class IndexMap:
    """Which source pixel GDAL's nearest warp puts in each output pixel of a region.

    ``picks`` (h', w') intp: the flat source pixel of each output pixel (0 where it puts
    none); ``unreached`` (h', w') bool: the output pixels it puts none in (None: it reaches
    every one). Shared by every user of the cached map: never written to."""

    picks: np.ndarray
    unreached: np.ndarray | None

    @property
    def nbytes(self) -> int:
        """Memory the map holds."""
        return self.picks.nbytes + (0 if self.unreached is None else self.unreached.nbytes)


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
        Kept for the next call with the same arguments (see :data:`INDEX_MAP_BYTES`).

    Raises
    ------
    ValueError
        When the window has too many pixels to number in UInt32.
    """
    key = (src_shape, src_transform, src_crs, dst_shape, dst_transform, dst_crs, where)
    with _LOCK:
        found = _MAPS.get(key)
        if found is not None:
            _MAPS.move_to_end(key)
            return found
    made = _made(src_shape, src_transform, src_crs, dst_shape, dst_transform, dst_crs, where)
    with _LOCK:
        _MAPS[key] = made
        while len(_MAPS) > 1 and sum(m.nbytes for m in _MAPS.values()) > INDEX_MAP_BYTES:
            _MAPS.popitem(last=False)
    return made


def _made(src_shape: tuple[int, int], src_transform: tuple[float, ...], src_crs: str,
          dst_shape: tuple[int, int], dst_transform: tuple[float, ...], dst_crs: str,
          where: tuple[tuple[str, Any], ...]) -> IndexMap:
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
