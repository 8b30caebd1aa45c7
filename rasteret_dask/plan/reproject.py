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
from collections.abc import Callable, Sequence

import numpy as np
from affine import Affine

from .geometry import transformer

__all__ = ["SAMPLES", "Locate", "chunk_bounds_in", "chunk_windows", "gcp_locator",
           "kernel_margin", "pixel_size_in", "aligned_offset"]

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


Locate = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Points (x, y) of a source CRS -> fractional (col, row) pixel positions of an image."""


def chunk_windows(bounds: np.ndarray, transform: Affine | Locate, size: tuple[int, int],
                  margin: int, edge_samples: int = 1) -> np.ndarray:
    """Pixel windows (row0, row1, col0, col1) of an image covering each chunk's ``bounds``.

    Parameters
    ----------
    bounds
        (n_rows, n_cols, 4) chunk bounds in the image's CRS (:func:`chunk_bounds_in`).
    transform
        The image's pixel-corner transform (north-up, rotated or sheared: the bounds' four
        corners are located), or a function locating points in it (an image georeferenced
        by ground control points, :func:`gcp_locator`).
    size
        (height, width) of the image.
    margin
        Pixels added on every side (:func:`kernel_margin`).
    edge_samples
        Segments each side of the bounds is located at (1: its corners, enough for an
        affine transform; more for a curved one).

    Returns
    -------
    numpy.ndarray
        (n_rows, n_cols, 4) int64, clipped to the image; empty where row1 <= row0 or
        col1 <= col0 (the chunk misses the image, or maps outside the CRS's domain).
    """
    if isinstance(transform, Affine):
        inverse = ~transform

        def locate(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return inverse @ (xs, ys)
    else:
        locate = transform
    t = np.linspace(0.0, 1.0, edge_samples + 1)
    x0, y0, x1, y1 = (bounds[..., k, np.newaxis] for k in range(4))
    across = x0 + (x1 - x0) * t
    down = y0 + (y1 - y0) * t
    ones = np.ones_like(t)
    xs = np.concatenate([across, across, x0 * ones, x1 * ones], axis=-1)
    ys = np.concatenate([y0 * ones, y1 * ones, down, down], axis=-1)
    with np.errstate(invalid="ignore"):
        cols, rows = locate(xs, ys)
    cols, rows = np.asarray(cols, "float64"), np.asarray(rows, "float64")
    finite = (np.isfinite(cols) & np.isfinite(rows)).all(axis=-1)
    with np.errstate(invalid="ignore"):
        c0 = np.floor(np.nanmin(np.where(np.isfinite(cols), cols, np.nan), axis=-1)) - margin
        c1 = np.ceil(np.nanmax(np.where(np.isfinite(cols), cols, np.nan), axis=-1)) + margin
        r0 = np.floor(np.nanmin(np.where(np.isfinite(rows), rows, np.nan), axis=-1)) - margin
        r1 = np.ceil(np.nanmax(np.where(np.isfinite(rows), rows, np.nan), axis=-1)) + margin
    height, width = size
    out = np.stack([np.clip(np.nan_to_num(r0), 0, height), np.clip(np.nan_to_num(r1), 0, height),
                    np.clip(np.nan_to_num(c0), 0, width), np.clip(np.nan_to_num(c1), 0, width)],
                   axis=-1).astype("int64")
    out[~finite] = 0
    return out


def gcp_locator(gcps: Sequence[tuple[float, float, float, float, float]],
                scale: tuple[float, float] = (1.0, 1.0)) -> Locate:
    """Points -> pixel positions by GDAL's GCP transformer (its polynomial of the order GDAL
    picks for the number of points, world to pixel: the direction its warper maps
    destination pixels back to the source), on a level ``scale`` (width, height of the level
    over the full image's) times the full image's size."""
    from rasterio.control import GroundControlPoint
    from rasterio.transform import GCPTransformer

    points = [GroundControlPoint(row, col, x, y, z) for row, col, x, y, z in gcps]

    def locate(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = np.shape(xs)
        flat_x, flat_y = np.ravel(xs), np.ravel(ys)
        ok = np.isfinite(flat_x) & np.isfinite(flat_y)
        cols = np.full(flat_x.shape, np.nan)
        rows = np.full(flat_x.shape, np.nan)
        if ok.any():
            with GCPTransformer(points) as transformer:
                r, c = transformer.rowcol(flat_x[ok], flat_y[ok], op=np.positive)
            rows[ok] = np.asarray(r, "float64") * scale[1]
            cols[ok] = np.asarray(c, "float64") * scale[0]
        return cols.reshape(shape), rows.reshape(shape)

    return locate


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
