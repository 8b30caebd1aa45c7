"""Which path a read takes (pure): the records' own tile grid, or a warped output grid.

A read stays on the native path (the records' tiles decoded and copied into regular chunks,
bit-exact and as fast as before output grids existed) when its output grid is the records' grid: one
CRS, one pixel size, whole-pixel offsets between records, no time grouping or rescaling, and
any ``crs=``/``resolution=`` given equal to the records' (with the records' origins on
integer multiples of that resolution, the anchor every output grid keeps). Everything else
is warped (:mod:`.warp_plan`), and so is a record whose grid is rotated or sheared, or that is
georeferenced by ground control points only: its pixels are not on a north-up grid, so even
without ``crs=``/``resolution=`` it is read onto one (its CRS, its pixel size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..plan.grid import same_crs
from ..plan.output_grid import GridRequest, parse_chunks
from .select import Selection

__all__ = ["NativeChunks", "is_native", "native_chunks"]


def _on_anchor(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-6


def is_native(selection: Selection, request: GridRequest, groupby: Any = None,
              rescale: bool = False) -> bool:
    """Whether the read's output grid is its records' own grid (see the module docstring)."""
    if request.geobox is not None or groupby is not None or rescale:
        return False
    if any(not r.metadata.is_axis_aligned or r.metadata.has_gcps
           for records in selection.records_by_band.values() for r in records):
        return False
    try:
        selection.crs  # noqa: B018  (raises unless every record shares one CRS)
        union, _ = selection.union()
    except ValueError:  # several CRSs or pixel sizes, or origins not whole pixels apart
        return False
    if request.crs is not None and not same_crs(request.crs, union.crs):
        return False
    if request.resolution is not None:
        rx, ry = union.resolution
        want_x, want_y = request.resolution
        if not (math.isclose(rx, want_x, rel_tol=1e-9) and math.isclose(ry, want_y,
                                                                        rel_tol=1e-9)):
            return False
        t = union.transform
        if not (_on_anchor(t.c, rx) and _on_anchor(t.f, ry)):
            return False
    return True


@dataclass(frozen=True, slots=True)
class NativeChunks:
    """``chunks=`` of a native read: ``pixels`` (rows, columns) when given in pixels, else
    ``tiles`` of the first record per chunk side."""

    tiles: int = 1
    pixels: tuple[int, int] | None = None


def native_chunks(chunks: Any) -> NativeChunks:
    """``chunks=`` of a native read: None is one tile a side, an int that many tiles a side;
    pixels (a dict with ``"x"``/``"y"``, or a (y, x) pair) are kept exactly (a dict giving
    one of them uses it for both; one giving neither keeps the tile default).

    Raises
    ------
    ValueError
        For a value that is not one of those forms or not positive (see
        :func:`~rasteret_dask.plan.output_grid.parse_chunks`).
    """
    if chunks is None:
        return NativeChunks()
    if isinstance(chunks, int) and not isinstance(chunks, bool):
        parse_chunks(chunks, 1)  # checks it is positive
        return NativeChunks(tiles=chunks)
    pixels = parse_chunks(chunks, 1)
    if isinstance(chunks, Mapping) and "x" not in chunks and "y" not in chunks:
        return NativeChunks()
    return NativeChunks(pixels=pixels)
