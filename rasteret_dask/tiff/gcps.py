"""Ground control points of a record georeferenced by them only, as the index stores them (pure
but for GDAL's first-order fit, through rasterio).

``schema.GCP_TYPE`` structs become (row, col, x, y, z) tuples; their first-order fit (GDAL's
``GDALGCPsToGeoTransform``) is the transform a read plans windows with (its pixels are warped by
GDAL's GCP transformer itself).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .mask_level import MetadataError

__all__ = ["Gcp", "gcp_points", "gcp_fit"]

Gcp = tuple[float, float, float, float, float]
"""(row, col) of the full-resolution image -> (x, y, z)."""


def gcp_points(values: Any, prefix: str) -> tuple[Gcp, ...]:
    """The ``gcps`` list (``schema.GCP_TYPE`` structs) as (row, col, x, y, z) tuples."""
    if not values:
        return ()
    out = []
    for k, point in enumerate(values):
        coords = [point.get(n) for n in ("row", "col", "x", "y", "z")] if point else [None]
        if any(v is None for v in coords[:4]):
            raise MetadataError(f"{prefix}ground control point {k} lacks row, col, x or y")
        row, col, x, y, z = (float(v or 0.0) for v in coords)
        out.append((row, col, x, y, z))
    return tuple(out)


def gcp_fit(gcps: tuple[Gcp, ...], crs: str | None, prefix: str) -> list[float]:
    """The first-order (affine) fit of ground control points, GDAL's
    ``GDALGCPsToGeoTransform``: what plans a GCP record's windows (its pixels are warped by
    GDAL's GCP transformer itself)."""
    from rasterio.control import GroundControlPoint
    from rasterio.transform import from_gcps

    if not crs:
        raise MetadataError(f"{prefix}the file is georeferenced by {len(gcps)} ground control "
                            "points without a CRS (no GeoKeys): reading needs one")
    if len(gcps) < 3:
        raise MetadataError(f"{prefix}the file is georeferenced by {len(gcps)} ground control "
                            "point(s) only: at least 3 (not on one line) are needed to locate "
                            "its pixels")
    points = np.array(gcps, dtype="float64")
    for part in (points[:, :2], points[:, 2:4]):  # pixels, then world coordinates
        if np.linalg.matrix_rank(part - part.mean(axis=0), tol=1e-12 * (
                1.0 + float(np.abs(part).max()))) < 2:
            raise MetadataError(f"{prefix}its {len(gcps)} ground control points lie on one "
                                "line: they locate no grid")
    fit = from_gcps([GroundControlPoint(row, col, x, y, z) for row, col, x, y, z in gcps])
    return [float(v) for v in tuple(fit)[:6]]
