"""Where output chunks fall in a source image (pure, vectorised over every chunk at once).

A warped read needs, for each output chunk and each record, the source pixels the chunk's
footprint covers (plus the resampling kernel's margin). The output grid is sampled along and
inside every chunk (``SAMPLES`` points per chunk side), the samples are transformed into each
source CRS once (one pyproj call per CRS for the whole read), and each chunk's bounds in the
source CRS are the extremes of its samples. A record's pixel window per chunk is then affine
arithmetic on those bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from affine import Affine

from .geometry import transformer

__all__ = ["SAMPLES", "chunk_bounds_in", "chunk_windows", "kernel_margin", "pixel_size_in",
           "aligned_offset"]

SAMPLES = 8
"""Segments per chunk side along which the chunk's outline and inside are sampled."""

_RADIUS = {"nearest": 0.5, "bilinear": 1.0, "cubic": 2.0, "cubic_spline": 2.0, "lanczos": 3.0}
"""Kernel radius (source pixels at scale 1); area kernels (average, mode, ...) cover the
output pixel's footprint."""


def _sample_positions(edges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Pixel positions sampling each [a, b) edge pair at ``SAMPLES`` + 1 points (shared ends)."""
    parts = [a + (b - a) * np.arange(SAMPLES) / SAMPLES for a, b in edges]
    return np.concatenate([*parts, [edges[-1][1]]]).astype("float64")


def _block_extremes(values: np.ndarray, n_rows: int, n_cols: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk (n_rows x n_cols) min and max of a (rows*S+1, cols*S+1) sample grid, NaNs
    ignored (NaN where a chunk has no finite sample)."""
    starts_r = np.arange(n_rows) * SAMPLES
    starts_c = np.arange(n_cols) * SAMPLES
    body = values[:-1, :]
    lo = np.fmin(np.fmin.reduceat(body, starts_r, axis=0), values[SAMPLES::SAMPLES, :])
    hi = np.fmax(np.fmax.reduceat(body, starts_r, axis=0), values[SAMPLES::SAMPLES, :])
    lo = np.fmin(np.fmin.reduceat(lo[:, :-1], starts_c, axis=1), lo[:, SAMPLES::SAMPLES])
    hi = np.fmax(np.fmax.reduceat(hi[:, :-1], starts_c, axis=1), hi[:, SAMPLES::SAMPLES])
    return lo, hi


def chunk_bounds_in(transform: Affine, row_edges: Sequence[tuple[int, int]],
                    col_edges: Sequence[tuple[int, int]], dst_crs: object,
                    src_crs: object) -> np.ndarray:
    """Bounds (minx, miny, maxx, maxy) of every output chunk in ``src_crs``.

    Parameters
    ----------
    transform
        The output grid's affine transform (pixel corners).
    row_edges, col_edges
        The chunks' [start, stop) pixel edges along each axis.
    dst_crs, src_crs
        The output CRS and a source CRS (CRS-like).

    Returns
    -------
    numpy.ndarray
        (n_rows, n_cols, 4) float64; NaN for chunks no sample of which maps into ``src_crs``'s
        domain.
    """
    rows = _sample_positions(row_edges)
    cols = _sample_positions(col_edges)
    cc, rr = np.meshgrid(cols, rows)
    xs, ys = transform @ (cc, rr)
    if src_crs != dst_crs:
        with np.errstate(invalid="ignore"):
            xs, ys = transformer(dst_crs, src_crs).transform(xs, ys, errcheck=False)
        xs = np.where(np.isfinite(xs) & np.isfinite(ys), xs, np.nan)
        ys = np.where(np.isfinite(xs), ys, np.nan)
    x0, x1 = _block_extremes(np.asarray(xs, "float64"), len(row_edges), len(col_edges))
    y0, y1 = _block_extremes(np.asarray(ys, "float64"), len(row_edges), len(col_edges))
    return np.stack([x0, y0, x1, y1], axis=-1)


def kernel_margin(resampling: str, scale: float) -> int:
    """Source pixels to add around a chunk's footprint for ``resampling`` when one output
    pixel spans ``scale`` source pixels (GDAL widens its kernels when downsampling)."""
    radius = _RADIUS.get(resampling, 0.5) * max(scale, 1.0)
    if resampling not in _RADIUS:  # area kernels: the whole output pixel
        radius = max(scale, 1.0)
    return int(math.ceil(radius)) + 1


def chunk_windows(bounds: np.ndarray, transform: Affine, size: tuple[int, int],
                  margin: int) -> np.ndarray:
    """Pixel windows (row0, row1, col0, col1) of an image covering each chunk's ``bounds``.

    Parameters
    ----------
    bounds
        (n_rows, n_cols, 4) chunk bounds in the image's CRS (:func:`chunk_bounds_in`).
    transform
        The image's (north-up) pixel-corner transform.
    size
        (height, width) of the image.
    margin
        Pixels added on every side (:func:`kernel_margin`).

    Returns
    -------
    numpy.ndarray
        (n_rows, n_cols, 4) int64, clipped to the image; empty where row1 <= row0 or
        col1 <= col0 (the chunk misses the image, or maps outside the CRS's domain).
    """
    inverse = ~transform
    xa, ya = inverse @ (bounds[..., 0], bounds[..., 1])
    xb, yb = inverse @ (bounds[..., 2], bounds[..., 3])
    finite = np.isfinite(xa) & np.isfinite(xb) & np.isfinite(ya) & np.isfinite(yb)
    with np.errstate(invalid="ignore"):
        c0 = np.floor(np.fmin(xa, xb)) - margin
        c1 = np.ceil(np.fmax(xa, xb)) + margin
        r0 = np.floor(np.fmin(ya, yb)) - margin
        r1 = np.ceil(np.fmax(ya, yb)) + margin
    height, width = size
    out = np.stack([np.clip(np.nan_to_num(r0), 0, height), np.clip(np.nan_to_num(r1), 0, height),
                    np.clip(np.nan_to_num(c0), 0, width), np.clip(np.nan_to_num(c1), 0, width)],
                   axis=-1).astype("int64")
    out[~finite] = 0
    return out


def pixel_size_in(point: tuple[float, float], point_crs: object, resolution: tuple[float, float],
                  dst_crs: object) -> tuple[float, float]:
    """The size, in ``point_crs`` units, of a ``resolution``-sized pixel of ``dst_crs`` at
    ``point`` (a point in ``point_crs``): the local scale between the two CRSs."""
    if point_crs == dst_crs:
        return resolution
    forward = transformer(point_crs, dst_crs)
    back = transformer(dst_crs, point_crs)
    qx, qy = forward.transform(point[0], point[1])
    xs, ys = back.transform([qx, qx + resolution[0], qx], [qy, qy, qy + resolution[1]])
    dx = math.hypot(xs[1] - xs[0], ys[1] - ys[0])
    dy = math.hypot(xs[2] - xs[0], ys[2] - ys[0])
    if not (math.isfinite(dx) and math.isfinite(dy)) or dx <= 0 or dy <= 0:
        return resolution
    return (dx, dy)


def aligned_offset(src: Affine, dst: Affine, tolerance: float = 1e-6) -> tuple[int, int] | None:
    """(row, col) of the source grid's origin on the output grid when both are north-up with
    the same pixel size and whole pixels apart (a copy, no resampling); else None."""
    if src.b or src.d or dst.b or dst.d:
        return None
    if not (math.isclose(src.a, dst.a, rel_tol=1e-9) and math.isclose(src.e, dst.e, rel_tol=1e-9)):
        return None
    col = (src.c - dst.c) / dst.a
    row = (src.f - dst.f) / dst.e
    if abs(col - round(col)) > tolerance or abs(row - round(row)) > tolerance:
        return None
    return int(round(row)), int(round(col))
