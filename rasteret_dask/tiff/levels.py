"""Which overview level a read at a coarser resolution uses (pure arithmetic, no I/O).

odc-stac is the oracle of warped reads, so this is its rule (odc-stac 0.5 through odc-loader
0.6 ``pick_overview`` and odc-geo's ``_pick_read_scale``), with rasterio's overview factors:

1. ``scale``: output pixel size / full-resolution pixel size along the least reduced axis
   (odc-geo takes the smaller of the x and y scales; on a reprojection, at the centre of
   the output region).
2. ``shrink`` = `read_shrink` (``scale``): 1 below 1; the nearest integer when ``scale`` is
   within ``tol`` (1e-3) of it; else ``floor(scale)``.
3. Each overview's factor is rasterio's ``DatasetReader.overviews()``: the full width over
   the overview's width, rounded to an integer (`overview_factors`).
4. With ``shrink`` > 1, the level is the last (coarsest) overview whose factor is at most
   ``shrink``; full resolution when the first overview's factor already exceeds it.

GDAL's own rule (``GDALBandGetBestOverviewLevel2`` in ``gcore/rasterio.cpp``, kept in sync
with ``gdalwarp -ovr AUTO`` in ``apps/gdalwarp_lib.cpp``) differs: it takes the desired
factor unrounded, each overview's factor as ``min(W / w, H / h)`` unrounded, and accepts an
overview up to ``desired * threshold + 0.1`` (threshold 1.2 for nearest, 1.0 otherwise), so it
may pick a level slightly coarser than the output (a 3.6x read of factors 2 and 4 reads level
4 there, level 2 here). Reads are compared to odc-stac, so odc-stac's rule is the one kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["READ_SCALE_TOLERANCE", "read_shrink", "overview_factors", "pick_level",
           "choose_level"]

READ_SCALE_TOLERANCE = 1e-3
"""How close to an integer a scale snaps to it (odc-geo's ``_pick_read_scale``)."""


def read_shrink(scale: float, tol: float = READ_SCALE_TOLERANCE) -> int:
    """The integer shrink factor of a read at ``scale`` output pixels per source pixel side.

    Parameters
    ----------
    scale : float
        Output pixel size over source pixel size (> 0); below 1 the read is an upsampling.
    tol : float
        A scale within ``tol`` of an integer is that integer (2.9995 -> 3).

    Returns
    -------
    int
        ``1`` for ``scale < 1``, else ``floor(scale)`` unless ``scale`` snaps up or down to
        an integer.
    """
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    if scale < 1:
        return 1
    nearest = round(scale)
    if abs(scale - nearest) < tol:
        return int(nearest)
    return int(math.floor(scale))


def overview_factors(width: int, overview_widths: Sequence[int]) -> tuple[int, ...]:
    """rasterio's decimation factor of each overview: ``round(width / overview_width)``."""
    return tuple(int(round(width / w)) if w > 0 else 0 for w in overview_widths)


def pick_level(shrink: int, factors: Sequence[int]) -> int:
    """The level a read shrinking by ``shrink`` uses: 0 for full resolution, ``k`` for the
    ``k``-th overview (``factors`` in file order, finest first)."""
    if shrink <= 1 or not factors or shrink < factors[0]:
        return 0
    chosen = 0
    for k, factor in enumerate(factors):
        if factor > shrink:
            break
        chosen = k
    return chosen + 1


def choose_level(scale: float, width: int, overview_widths: Sequence[int]) -> int:
    """The level (0 = full resolution, ``k`` = ``k``-th overview) odc-stac reads at ``scale``
    (output pixel size over full-resolution pixel size, least reduced axis) from an image
    ``width`` pixels wide whose overviews are ``overview_widths`` wide (finest first)."""
    return pick_level(read_shrink(scale), overview_factors(width, overview_widths))
