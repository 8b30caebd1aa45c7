"""Row order of an index file: records sorted along a Hilbert curve of their footprints' centres.

Neighbouring scenes land in the same Parquet row groups, so each row group's ``bbox_*``
statistics describe a small region and a bbox filter skips the row groups of the rest of a
continent (readers open only the groups an AOI touches). Ties keep time order, then id.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S

__all__ = ["HILBERT_ORDER", "hilbert_index", "spatial_sort"]

HILBERT_ORDER = 16
"""Bits per axis of the curve: 2^16 cells over 360 degrees is about 600 m at the equator."""

_BBOX = S.BBOX_COLUMNS


def hilbert_index(x: np.ndarray, y: np.ndarray, order: int = HILBERT_ORDER) -> np.ndarray:
    """Distance along the Hilbert curve of integer cells ``(x, y)`` in ``[0, 2**order)``."""
    n = 1 << order
    x = np.asarray(x, np.int64).copy()
    y = np.asarray(y, np.int64).copy()
    d = np.zeros(x.shape, np.int64)
    s = n >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        flip = ~ry & rx  # the quadrant is rotated: reflect, then transpose
        x = np.where(flip, n - 1 - x, x)
        y = np.where(flip, n - 1 - y, y)
        x, y = np.where(~ry, y, x), np.where(~ry, x, y)
        s >>= 1
    return d


def _cells(low: np.ndarray, high: np.ndarray, lo: float, hi: float) -> np.ndarray:
    centre = np.nan_to_num((low + high) / 2.0, nan=lo)
    scaled = (np.clip(centre, lo, hi) - lo) / (hi - lo) * ((1 << HILBERT_ORDER) - 1)
    return scaled.astype(np.int64)


def spatial_sort(table: pa.Table) -> pa.Table:
    """``table`` ordered by the Hilbert index of its bbox centres (CRS84), then datetime, id.

    Tables without the bbox columns (nothing to order by) are returned as they are.
    """
    if table.num_rows < 2 or not all(name in table.column_names for name in _BBOX):
        return table
    minx, miny, maxx, maxy = (
        table[name].to_numpy(zero_copy_only=False).astype(np.float64) for name in _BBOX
    )
    maxx = np.where(minx > maxx, maxx + 360.0, maxx)  # across the antimeridian: centre near 180
    key = hilbert_index(_cells(minx, maxx, -180.0, 180.0), _cells(miny, maxy, -90.0, 90.0))
    keys = pa.table({"hilbert": key})
    sort_keys = [("hilbert", "ascending")]
    for name in (S.DATETIME, S.ID):
        if name in table.column_names:
            keys = keys.append_column(name, table[name])
            sort_keys.append((name, "ascending"))
    order = pc.sort_indices(keys, sort_keys=sort_keys)
    if np.array_equal(order.to_numpy(), np.arange(table.num_rows)):
        return table
    return table.take(order)
