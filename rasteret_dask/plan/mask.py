"""Rasterise geometries into a boolean pixel mask, vectorised with NumPy.

Polygons follow GDAL's rules (the rules of ``rasterio.features.geometry_mask``): a pixel is
inside when its centre is, found by scanlines through the pixel centres; the rings of one
(multi)polygon combine by the even-odd rule and separate geometries by union. With
``all_touched`` every pixel that a polygon overlaps with positive area is inside too.

Where this departs from GDAL (degenerate cases only): pixels that a polygon meets only at a
corner are not taken (GDAL's all-touched may take them); pixel centres lying exactly on an edge
may fall either way; points and lines take every pixel they pass through in both modes (GDAL
draws lines with Bresenham's algorithm unless ``all_touched``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from affine import Affine

from rasteret_dask.plan.geometry import coerce_geometries
from rasteret_dask.plan.grid import pixel_coordinates

__all__ = ["geometry_mask"]

# Lengths (in pixels) below which a piece of segment is treated as a point or as lying on a
# pixel border.
_EPS = 1e-9


def _units(geoms: list[shapely.Geometry]) -> np.ndarray:
    """Geometries with collections expanded: GDAL rasterises each collection member on its own."""
    units = np.asarray(geoms, dtype=object)
    while True:
        collection = shapely.get_type_id(units) == 7
        if not collection.any():
            return units
        units = np.concatenate([units[~collection], shapely.get_parts(units[collection])])


def _segments(
    lines: np.ndarray, transform: Affine
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-space segments (x0, y0, x1, y1) of linear geometries, and each one's line index."""
    xy, index = shapely.get_coordinates(lines, return_index=True)
    cols, rows = pixel_coordinates(xy[:, 0], xy[:, 1], transform)
    same = index[1:] == index[:-1]
    return cols[:-1][same], rows[:-1][same], cols[1:][same], rows[1:][same], index[:-1][same]


def _fill(
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    unit: np.ndarray,
    height: int,
    width: int,
) -> np.ndarray:
    """Pixels whose centre is inside the rings, by scanlines through the pixel centres.

    Rings of one unit (a polygon or multipolygon) combine by the even-odd rule, as in GDAL;
    units combine by union: each of up to 64 units per pass toggles its own bit.
    """
    lower = y0 <= y1
    ya, xa = np.where(lower, y0, y1), np.where(lower, x0, x1)  # lower end
    yb, xb = np.where(lower, y1, y0), np.where(lower, x1, x0)  # upper end
    first = np.clip(np.ceil(ya - 0.5) - 1, 0, height).astype(np.int64)
    stop = np.clip(np.ceil(yb - 0.5) + 1, 0, height).astype(np.int64)
    count = np.maximum(stop - first, 0)
    edge = np.repeat(np.arange(len(x0)), count)
    starts = np.cumsum(count) - count
    row = first[edge] + (np.arange(count.sum()) - starts[edge])
    centre = row + 0.5
    # A scanline crosses an edge when lower <= y < upper (horizontal edges never cross).
    hit = (centre >= ya[edge]) & (centre < yb[edge])
    row, centre, edge = row[hit], centre[hit], edge[hit]
    ya, yb, xa, xb = ya[edge], yb[edge], xa[edge], xb[edge]
    x_cross = (centre - ya) * (xb - xa) / (yb - ya) + xa
    col = np.clip(np.floor(x_cross + 0.5), 0, width).astype(np.int64)
    unit = unit[edge]
    inside = np.zeros((height, width), dtype=bool)
    for batch in np.unique(unit // 64):
        sel = unit // 64 == batch
        toggles = np.zeros((height, width + 1), dtype=np.uint64)
        bits = np.left_shift(np.uint64(1), (unit[sel] % 64).astype(np.uint64))
        np.bitwise_xor.at(toggles, (row[sel], col[sel]), bits)
        inside |= np.bitwise_xor.accumulate(toggles[:, :width], axis=1) != 0
    return inside


def _clip_segments(
    x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, ...]:
    """Cut segments to the rectangle [0, width] x [0, height] (Liang-Barsky)."""
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = np.zeros(len(x0)), np.ones(len(x0))
    keep = np.ones(len(x0), dtype=bool)
    for p, q in ((-dx, x0), (dx, width - x0), (-dy, y0), (dy, height - y0)):
        parallel = p == 0
        keep &= ~(parallel & (q < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(parallel, 0.0, q / np.where(parallel, 1.0, p))
        t0 = np.where(~parallel & (p < 0), np.maximum(t0, t), t0)
        t1 = np.where(~parallel & (p > 0), np.minimum(t1, t), t1)
    keep &= t0 <= t1
    x0, y0, dx, dy, t0, t1 = x0[keep], y0[keep], dx[keep], dy[keep], t0[keep], t1[keep]
    return x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy


def _crossings(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each interval (a, b): the integers strictly between, and their interval's index."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    first = np.floor(lo) + 1
    count = np.maximum(np.ceil(hi) - first, 0).astype(np.int64)
    seg = np.repeat(np.arange(len(a)), count)
    starts = np.cumsum(count) - count
    return first[seg] + (np.arange(count.sum()) - starts[seg]), seg


def _touched(
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    height: int,
    width: int,
    skip_borders: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of every pixel a segment passes through; optionally not along pixel borders."""
    x0, y0, x1, y1 = _clip_segments(x0, y0, x1, y1, height, width)
    dx, dy = x1 - x0, y1 - y0
    n = len(x0)
    kx, sx = _crossings(x0, x1)
    ky, sy = _crossings(y0, y1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = (kx - x0[sx]) / dx[sx]
        ty = (ky - y0[sy]) / dy[sy]
    t = np.concatenate([np.zeros(n), np.ones(n), tx, ty])
    seg = np.concatenate([np.arange(n), np.arange(n), sx, sy])
    order = np.lexsort((t, seg))
    t, seg = t[order], seg[order]
    pair = seg[1:] == seg[:-1]
    ta, tb, seg = t[:-1][pair], t[1:][pair], seg[:-1][pair]
    length = (tb - ta) * np.hypot(dx[seg], dy[seg])
    tm = (ta + tb) / 2
    mx, my = x0[seg] + tm * dx[seg], y0[seg] + tm * dy[seg]
    keep = length > _EPS
    keep |= (dx[seg] == 0) & (dy[seg] == 0)  # a segment of length 0 is a point: keep it
    if skip_borders:
        on_col_border = (np.abs(mx - np.rint(mx)) < _EPS) & (np.abs(dx[seg]) * (tb - ta) < _EPS)
        on_row_border = (np.abs(my - np.rint(my)) < _EPS) & (np.abs(dy[seg]) * (tb - ta) < _EPS)
        keep &= ~(on_col_border | on_row_border)
    col = np.floor(mx[keep]).astype(np.int64)
    row = np.floor(my[keep]).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    return row[inside], col[inside]


def geometry_mask(
    geoms: Any,
    out_shape: tuple[int, int],
    transform: Affine,
    *,
    all_touched: bool = False,
    invert: bool = False,
) -> np.ndarray:
    """Boolean mask of ``out_shape`` for pixels of ``transform``: True outside the geometries.

    Same semantics as ``rasterio.features.geometry_mask`` for polygons (exceptions in the module
    docstring); ``invert`` makes True mean inside.
    """
    height, width = (int(v) for v in out_shape)
    if height < 0 or width < 0:
        raise ValueError(f"out_shape must be non-negative, got {out_shape!r}")
    if not isinstance(transform, Affine):
        transform = Affine(*transform[:6])
    inside = np.zeros((height, width), dtype=bool)
    if height == 0 or width == 0:
        return inside if invert else ~inside
    units = _units(coerce_geometries(geoms))
    parts, unit_of_part = shapely.get_parts(units, return_index=True)
    kinds = shapely.get_type_id(parts)
    nonempty = ~shapely.is_empty(parts)
    polygons = nonempty & (kinds == 3)
    lines = parts[nonempty & ((kinds == 1) | (kinds == 2))]
    points = parts[nonempty & (kinds == 0)]

    if polygons.any():
        rings, polygon_of_ring = shapely.get_rings(parts[polygons], return_index=True)
        x0, y0, x1, y1, ring = _segments(rings, transform)
        unit = unit_of_part[polygons][polygon_of_ring][ring]
        inside |= _fill(x0, y0, x1, y1, unit, height, width)
        if all_touched:
            r, c = _touched(x0, y0, x1, y1, height, width, skip_borders=True)
            inside[r, c] = True
    if len(lines):
        x0, y0, x1, y1, _ = _segments(lines, transform)
        r, c = _touched(x0, y0, x1, y1, height, width, skip_borders=False)
        inside[r, c] = True
    if len(points):
        xy = shapely.get_coordinates(points)
        cols, rows = pixel_coordinates(xy[:, 0], xy[:, 1], transform)
        c, r = np.floor(cols), np.floor(rows)
        ok = (c >= 0) & (c < width) & (r >= 0) & (r < height)
        inside[r[ok].astype(np.int64), c[ok].astype(np.int64)] = True
    return inside if invert else ~inside
