"""The output grid of a read (pure): arguments checked, the GeoBox built and anchored, chunked.

A read onto another grid is described by ``crs=``, ``resolution=``, ``resampling=`` or a whole
``geobox=`` (an ``odc.geo.geobox.GeoBox``). This module turns those arguments into checked
values (each error names the argument and the value), picks the defaults (the CRS of most
records, the finest native resolution), builds the output GeoBox with its pixel edges on
integer multiples of the resolution (odc-stac's default anchor, so two reads of neighbouring
areas tile exactly) and cuts it into regular chunks from its origin (Zarr-ready).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import pyproj
from odc.geo import resxy_
from odc.geo.geobox import GeoBox

__all__ = ["RESAMPLING", "OutputGrid", "GridRequest", "grid_request", "check_resampling",
           "check_resolution", "check_crs", "majority_crs", "anchored_geobox", "describe_geobox",
           "chunk_edges_px", "parse_chunks", "time_chunk", "WARP_TILE", "DEFAULT_WARP_CHUNK"]

RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode",
              "min", "max", "median", "q1", "q3", "sum", "rms")
"""Resampling kernels, named as GDAL (and rasterio's ``Resampling``) names them."""

WARP_TILE = 512
"""Pixels of one output-grid tile: ``chunks=n`` on a warped read means n x 512 pixels a side."""

DEFAULT_WARP_CHUNK = 1024
"""Default chunk side (pixels) of a warped read."""


def check_resampling(value: Any) -> str:
    """``value`` as a resampling name (case-insensitive), or a ValueError naming it."""
    name = getattr(value, "name", value)  # rasterio's Resampling enum members too
    if not isinstance(name, str) or name.lower() not in RESAMPLING:
        raise ValueError(f"resampling={value!r} is not a resampling method; use one of "
                         f"{', '.join(RESAMPLING)}")
    return name.lower()


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real | np.number):
        raise ValueError(f"resolution={value!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"resolution={value!r} must be a positive, finite number of output "
                         "CRS units per pixel")
    return number


def check_resolution(value: Any) -> tuple[float, float] | None:
    """``resolution=`` as positive (x, y) pixel sizes, or None when not given.

    Raises
    ------
    ValueError
        For zero, negative, infinite or non-numeric values, or a pair of the wrong length.
    """
    if value is None:
        return None
    if isinstance(value, str | bytes):
        raise ValueError(f"resolution={value!r} is not a number")
    if isinstance(value, Sequence | np.ndarray):
        values = list(value)
        if len(values) != 2:
            raise ValueError(f"resolution={value!r} must be one number or an (x, y) pair")
        try:
            return (_positive(values[0]), _positive(values[1]))
        except ValueError:
            raise ValueError(f"resolution={value!r} must be positive, finite numbers") from None
    number = _positive(value)
    return (number, number)


def check_crs(value: Any) -> pyproj.CRS | None:
    """``crs=`` as a pyproj CRS (anything pyproj accepts: EPSG code, "EPSG:3035", WKT,
    PROJJSON), or None when not given; a ValueError naming the value when pyproj cannot
    parse it."""
    if value is None:
        return None
    try:
        return pyproj.CRS.from_user_input(value)
    except (pyproj.exceptions.CRSError, TypeError, ValueError) as exc:
        raise ValueError(f"crs={value!r} is not a CRS pyproj can parse: {exc}") from None


@dataclass(frozen=True)
class GridRequest:
    """A read's checked output-grid arguments; all None means "the records' own grid"."""

    crs: pyproj.CRS | None = None
    resolution: tuple[float, float] | None = None
    resampling: str = "nearest"
    geobox: GeoBox | None = None

    @property
    def is_native(self) -> bool:
        """Whether no output grid was asked for."""
        return self.crs is None and self.resolution is None and self.geobox is None


def grid_request(crs: Any = None, resolution: Any = None, resampling: Any = "nearest",
                 geobox: Any = None) -> GridRequest:
    """Check a read's output-grid arguments.

    Parameters
    ----------
    crs
        Output CRS, anything pyproj accepts.
    resolution
        Output pixel size in CRS units: one number or (x, y).
    resampling
        One of :data:`RESAMPLING`.
    geobox : odc.geo.geobox.GeoBox, optional
        The whole output grid; excludes ``crs`` and ``resolution``.

    Raises
    ------
    ValueError
        Naming the argument and the value: an unknown resampling, a resolution that is not a
        positive number, a CRS pyproj cannot parse, a geobox that is not a GeoBox (or comes
        with ``crs``/``resolution``).
    """
    method = check_resampling(resampling)
    if geobox is not None:
        if not isinstance(geobox, GeoBox):
            raise ValueError(f"geobox={geobox!r} is not an odc.geo.geobox.GeoBox")
        if crs is not None or resolution is not None:
            raise ValueError("geobox= sets the whole output grid: pass crs= and resolution= "
                             "only without it")
        if geobox.crs is None:
            raise ValueError(f"geobox={geobox!r} has no CRS")
        if not geobox.axis_aligned:
            raise ValueError(f"geobox={geobox!r} is rotated; output grids are north-up")
        return GridRequest(None, None, method, geobox)
    return GridRequest(check_crs(crs), check_resolution(resolution), method, None)


def majority_crs(crss: Sequence[pyproj.CRS]) -> pyproj.CRS:
    """The CRS most records are in (odc-stac's rule); ties go to the one seen first."""
    if not crss:
        raise ValueError("no record to take a CRS from")
    counts = Counter(c.to_wkt() for c in crss)
    first = {}
    for c in crss:
        first.setdefault(c.to_wkt(), c)
    best = max(counts.items(), key=lambda kv: kv[1])[0]
    return first[best]


@dataclass(frozen=True)
class OutputGrid:
    """The checked output grid of a warped read: its GeoBox, kernel and chunk edges."""

    geobox: GeoBox
    resampling: str
    row_edges: tuple[tuple[int, int], ...]
    col_edges: tuple[tuple[int, int], ...]
    time_chunk: int = 1
    """Time steps (groups) per chunk."""

    @property
    def crs(self) -> pyproj.CRS:
        """The output CRS."""
        return pyproj.CRS.from_user_input(self.geobox.crs.to_wkt())

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (int(self.geobox.shape.y), int(self.geobox.shape.x))

    @property
    def row_chunks(self) -> tuple[int, ...]:
        """Chunk heights (regular but the last)."""
        return tuple(b - a for a, b in self.row_edges)

    @property
    def col_chunks(self) -> tuple[int, ...]:
        """Chunk widths (regular but the last)."""
        return tuple(b - a for a, b in self.col_edges)


def describe_geobox(geobox: GeoBox) -> str:
    """A one-line description of a GeoBox for messages: shape, CRS and bounds."""
    epsg = geobox.crs.epsg if geobox.crs is not None else None
    crs = f"EPSG:{epsg}" if epsg else str(geobox.crs)
    bounds = ", ".join(f"{v:.10g}" for v in geobox.boundingbox.bbox)
    return f"GeoBox(shape={tuple(geobox.shape)}, crs={crs}, bounds=({bounds}))"


def anchored_geobox(bounds: tuple[float, float, float, float], crs: pyproj.CRS,
                    resolution: tuple[float, float]) -> GeoBox:
    """The north-up GeoBox covering ``bounds`` (in ``crs``) whose pixel edges sit on integer
    multiples of ``resolution`` (odc-geo's default anchor, as odc-stac builds its grids)."""
    rx, ry = resolution
    return GeoBox.from_bbox(bounds, crs, resolution=resxy_(rx, -ry))


def parse_chunks(chunks: Any, tile: int) -> tuple[int, int]:
    """``chunks=`` as (rows, cols) pixels: an int counts tiles of ``tile`` pixels a side; a
    dict takes ``"y"``/``"x"`` pixels (odc-stac's form); a pair is (y, x) pixels.

    Raises
    ------
    ValueError
        For a value that is not one of those forms or not positive.
    """
    def positive(value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"chunks={chunks!r}: {what} must be a positive integer")
        return int(value)

    if isinstance(chunks, Mapping):
        unknown = set(chunks) - {"x", "y", "time", "band"}
        if unknown:
            raise ValueError(f"chunks={chunks!r}: unknown dimension(s) {sorted(unknown)}; "
                             "use 'x' and 'y'")
        default = tile * (DEFAULT_WARP_CHUNK // WARP_TILE)
        rows = positive(chunks.get("y", chunks.get("x", default)), "y")
        cols = positive(chunks.get("x", chunks.get("y", default)), "x")
        return rows, cols
    if isinstance(chunks, Sequence) and not isinstance(chunks, str):
        if len(chunks) != 2:
            raise ValueError(f"chunks={chunks!r}: give (y, x) pixels")
        return positive(chunks[0], "y"), positive(chunks[1], "x")
    n = positive(chunks, "the tile count")
    return n * tile, n * tile


def time_chunk(chunks: Any, default: int = 1) -> int:
    """Time steps per chunk: ``chunks["time"]`` (a positive int) when given, else ``default``.

    Raises
    ------
    ValueError
        For a ``"time"`` entry that is not a positive integer.
    """
    if isinstance(chunks, Mapping) and "time" in chunks:
        value = chunks["time"]
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"chunks={chunks!r}: time must be a positive integer")
        return int(value)
    return default


def chunk_edges_px(size: int, step: int) -> tuple[tuple[int, int], ...]:
    """Regular chunk edges [a, b) over ``size`` pixels from 0 (the last may be shorter)."""
    return tuple((a, min(a + step, size)) for a in range(0, size, step))
