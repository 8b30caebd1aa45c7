"""Which point samples ``sample_points`` returns (pure): valid values, the nodata fallback,
and the ``match`` modes.

A value is *valid* when it was read (the point is inside the record's image), is not NaN and
is not the band's nodata value.

Nodata fallback (``max_distance_pixels=N > 0``, Rasteret's meaning): a point inside a
record's image whose own pixel is not valid takes the value of the nearest valid pixel within
N pixels of its own (Chebyshev distance: square rings). Rings are searched outward, 1 to N;
within the first ring holding a valid pixel, the winner is the pixel whose rectangle is
closest to the point (distance in map units, pixel width and height applied); equal distances
go to the first in scan order (the ring's top row left to right, its bottom row, its left
column top to bottom, its right column). A point outside the image has no value, whatever N.

Match modes, over the rows of one point (one row per record whose image holds the point):

``"all"``
    every row, in time order.
``"latest"``
    the row of the most recent record whose every requested band is valid at the point; when
    none is, the most recent record (its values show why). Equal times: the greatest id.
``"nearest_time"``
    the same choice, but by the smallest distance between the record's time and the point's
    own time (the query table's ``datetime``); equal distances: the earlier record, then the
    smaller id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MATCH_MODES", "SampleRow", "check_match", "is_valid", "ring_offsets",
           "window_offsets", "nearest_valid", "pick_rows"]

MATCH_MODES = ("all", "latest", "nearest_time")


def check_match(match: str, max_distance_pixels: int) -> None:
    """Refuse an unknown ``match`` or a ``max_distance_pixels`` that is not an integer >= 0."""
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {MATCH_MODES}, got {match!r}")
    radius = max_distance_pixels
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 0:
        raise ValueError(f"max_distance_pixels must be an integer >= 0, got {radius!r}")


def is_valid(value: Any, nodata: float | None) -> bool:
    """Whether a sampled ``value`` is a value: read (not None), not NaN, not ``nodata``."""
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    if nodata is None or math.isnan(nodata):
        return True
    return float(value) != float(nodata)


def ring_offsets(radius: int) -> list[tuple[int, int]]:
    """(row, col) offsets of the Chebyshev ring ``radius`` >= 1, in scan order (top row left
    to right, bottom row, left column top to bottom, right column)."""
    span = range(-radius, radius + 1)
    side = range(-radius + 1, radius)
    return ([(-radius, c) for c in span] + [(radius, c) for c in span]
            + [(r, -radius) for r in side] + [(r, radius) for r in side])


def window_offsets(radius: int) -> list[tuple[int, int]]:
    """Every offset of rings 1 to ``radius`` (the fallback's search window, centre excluded)."""
    return [o for ring in range(1, radius + 1) for o in ring_offsets(ring)]


def _rect_distance_sq(row: float, col: float, r: int, c: int,
                      pixel_size: tuple[float, float]) -> float:
    dy = max(r - row, row - (r + 1), 0.0) * pixel_size[1]
    dx = max(c - col, col - (c + 1), 0.0) * pixel_size[0]
    return dx * dx + dy * dy


def nearest_valid(row: float, col: float, pixels: Mapping[tuple[int, int], Any], radius: int,
                  pixel_size: tuple[float, float], nodata: float | None) -> Any:
    """The value of the nearest valid pixel around the point, or None (see the module).

    Parameters
    ----------
    row, col
        The point's fractional image row and column (its own pixel is their floor).
    pixels
        Values of the pixels around it inside the image, keyed (image row, image column).
    radius
        ``max_distance_pixels``.
    pixel_size
        (width, height) of a pixel in map units (absolute values).
    nodata
        The band's nodata value.
    """
    base_row, base_col = math.floor(row), math.floor(col)
    for ring in range(1, radius + 1):
        best: tuple[float, Any] | None = None
        for dr, dc in ring_offsets(ring):
            key = (base_row + dr, base_col + dc)
            value = pixels.get(key)
            if not is_valid(value, nodata):
                continue
            distance = _rect_distance_sq(row, col, key[0], key[1], pixel_size)
            if best is None or distance < best[0]:
                best = (distance, value)
        if best is not None:
            return best[1]
    return None


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One output row: point ``point``'s values of record ``record_id`` (band -> value, None
    outside that band's image), and whether every band's value is valid."""

    point: int
    record_id: str
    datetime: np.datetime64
    values: Mapping[str, Any]
    valid: bool


def _latest_key(row: SampleRow) -> tuple:
    return (row.datetime, row.record_id)


def pick_rows(rows: Sequence[SampleRow], match: str,
              point_times: np.ndarray | None = None) -> list[SampleRow]:
    """The rows ``match`` keeps, in point order (see the module).

    Parameters
    ----------
    rows
        Every sample row, grouped by point (as ``read.points.sample_order`` orders them).
    match
        One of :data:`MATCH_MODES`.
    point_times
        Each point's own time (``datetime64[ns]``), for ``"nearest_time"``.
    """
    if match == "all":
        return list(rows)
    by_point: dict[int, list[SampleRow]] = {}
    for row in rows:
        by_point.setdefault(row.point, []).append(row)
    if match == "nearest_time" and point_times is None:
        raise ValueError("match='nearest_time' needs each point's own time")
    kept = []
    for point in sorted(by_point):
        candidates = [r for r in by_point[point] if r.valid] or by_point[point]
        if match == "latest":
            kept.append(max(candidates, key=_latest_key))
        else:
            when = point_times[point]
            kept.append(min(candidates, key=lambda r, t=when: (abs(r.datetime - t),
                                                               r.datetime, r.record_id)))
    return kept
