"""Pixel grids and windows as immutable values: geometry -> pixel window, window -> transform.

A :class:`GridSpec` is an image's pixel grid (CRS, affine transform, size); a :class:`Window` is a
rectangle of whole pixels in it. Both are frozen, so they can travel inside Dask task keys. A
grid's CRS is a ``pyproj.CRS`` (an EPSG code or a custom CRS rebuilt from a file's GeoKeys).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral
from typing import TYPE_CHECKING

import numpy as np
import pyproj
import shapely
from affine import Affine

if TYPE_CHECKING:  # a pure value of the tiff layer, read by attribute (no runtime import)
    from ..tiff.cog_metadata import CogMetadata

__all__ = ["Window", "GridSpec", "union_grid", "pixel_coordinates", "as_crs", "epsg_code",
           "crs_name", "crs_text", "same_crs"]

# Tolerance (in pixels) for origins that should be whole pixels apart.
_PIXEL_TOLERANCE = 1e-6


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    return int(value)


@dataclass(frozen=True)
class Window:
    """A rectangle of whole pixels: rows [row_off, row_off + height), cols [col_off, col_off + width)."""

    row_off: int
    col_off: int
    height: int
    width: int

    def __post_init__(self) -> None:
        for name in ("row_off", "col_off", "height", "width"):
            object.__setattr__(self, name, _as_int(name, getattr(self, name)))
        if self.height < 0 or self.width < 0:
            raise ValueError(f"window size must be >= 0, got {self.height} x {self.width}")

    @property
    def row_stop(self) -> int:
        """One past the last row."""
        return self.row_off + self.height

    @property
    def col_stop(self) -> int:
        """One past the last column."""
        return self.col_off + self.width

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.height, self.width)

    @property
    def slices(self) -> tuple[slice, slice]:
        """(row slice, column slice) selecting the window from a full-image array."""
        return (slice(self.row_off, self.row_stop), slice(self.col_off, self.col_stop))

    @property
    def is_empty(self) -> bool:
        """Whether the window holds no pixel."""
        return self.height == 0 or self.width == 0

    def intersection(self, other: Window) -> Window:
        """The overlap of two windows; an empty window (``is_empty``) when they are disjoint."""
        row_off = max(self.row_off, other.row_off)
        col_off = max(self.col_off, other.col_off)
        height = max(min(self.row_stop, other.row_stop) - row_off, 0)
        width = max(min(self.col_stop, other.col_stop) - col_off, 0)
        return Window(row_off, col_off, height, width)

    def shift(self, rows: int, cols: int) -> Window:
        """The same window moved by ``rows`` and ``cols`` pixels."""
        return Window(self.row_off + rows, self.col_off + cols, self.height, self.width)


@lru_cache(maxsize=256)
def _from_epsg(code: int) -> pyproj.CRS:
    return pyproj.CRS.from_epsg(code)


def as_crs(value: object) -> pyproj.CRS | None:
    """A CRS from an EPSG code (int), a ``pyproj.CRS`` or anything ``pyproj.CRS`` accepts;
    None stays None. EPSG codes share one cached object per code."""
    if value is None or isinstance(value, pyproj.CRS):
        return value
    if isinstance(value, Integral) and not isinstance(value, bool):
        return _from_epsg(int(value))
    return pyproj.CRS.from_user_input(value)


# EPSG codes found per CRS object (records share a few cached CRS objects; hashing a CRS
# writes its WKT, too slow per grid): id -> (the object, kept alive so its id stays its own)
_EPSG_BY_ID: dict[int, tuple[pyproj.CRS, int | None]] = {}


def epsg_code(crs: pyproj.CRS | None) -> int | None:
    """The EPSG code of a CRS (only an exact match), None for a custom CRS (or None)."""
    if crs is None:
        return None
    hit = _EPSG_BY_ID.get(id(crs))
    if hit is not None and hit[0] is crs:
        return hit[1]
    code = crs.to_epsg(min_confidence=100)
    if len(_EPSG_BY_ID) >= 1024:
        _EPSG_BY_ID.clear()
    _EPSG_BY_ID[id(crs)] = (crs, code)
    return code


def crs_name(crs: pyproj.CRS | None) -> str:
    """How messages name a CRS: ``EPSG:32633``, else its name and PROJ string."""
    if crs is None:
        return "no CRS"
    code = epsg_code(crs)
    if code is not None:
        return f"EPSG:{code}"
    with warnings.catch_warnings():  # to_proj4 warns that PROJ strings lose information
        warnings.simplefilter("ignore")
        text = crs.to_proj4()
    if not text:
        return f"{crs.name!r}"
    return f"{crs.name!r} ({text.replace(' +type=crs', '')})"


def crs_text(crs: pyproj.CRS | None) -> str | None:
    """A CRS as text for outputs: ``EPSG:n``, else its WKT2 (None for None)."""
    if crs is None:
        return None
    code = epsg_code(crs)
    return f"EPSG:{code}" if code is not None else crs.to_wkt()


def same_crs(a: pyproj.CRS | None, b: pyproj.CRS | None) -> bool:
    """Whether two grids' CRSs are the same (the same object, or equivalent to PROJ)."""
    return a is b or (a is not None and b is not None and a == b)


def _affine(value: object) -> Affine:
    if isinstance(value, Affine):
        return value
    if isinstance(value, Sequence | np.ndarray):
        coeffs = [float(v) for v in value]
        if len(coeffs) == 9 and coeffs[6:] == [0.0, 0.0, 1.0]:
            coeffs = coeffs[:6]
        if len(coeffs) == 6:
            return Affine(*coeffs)
    raise ValueError(
        f"transform must be an Affine or 6 coefficients (a, b, c, d, e, f), got {value!r}"
    )


def pixel_coordinates(
    x: np.ndarray, y: np.ndarray, transform: Affine
) -> tuple[np.ndarray, np.ndarray]:
    """Map world coordinates to fractional (col, row) pixel coordinates of ``transform``."""
    inv = ~transform
    # Same arithmetic, in the same order, as ``Affine.__matmul__`` (and so rasterio).
    return x * inv.a + y * inv.b + inv.c, x * inv.d + y * inv.e + inv.f


@dataclass(frozen=True)
class GridSpec:
    """An image's pixel grid: CRS (None when unknown), affine transform and size in pixels.

    ``crs`` takes an EPSG code, a ``pyproj.CRS`` or anything ``pyproj.CRS`` accepts, and holds
    a ``pyproj.CRS``; :attr:`crs_epsg` is its EPSG code (None for a custom CRS).
    """

    crs: pyproj.CRS | None
    transform: Affine
    width: int
    height: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "crs", as_crs(self.crs))
        object.__setattr__(self, "transform", _affine(self.transform))
        object.__setattr__(self, "width", _as_int("width", self.width))
        object.__setattr__(self, "height", _as_int("height", self.height))
        if self.width < 0 or self.height < 0:
            raise ValueError(f"grid size must be >= 0, got {self.height} x {self.width}")
        if self.transform.is_degenerate:
            raise ValueError(f"transform is not invertible: {tuple(self.transform)[:6]}")

    @classmethod
    def from_metadata(cls, md: CogMetadata, crs: object = None) -> GridSpec:
        """Grid of a band's typed COG metadata; ``crs`` is used when the header has none.

        Parameters
        ----------
        md
            The record's :class:`~rasteret_dask.tiff.cog_metadata.CogMetadata` (built, and
            checked, from its ``{band}_metadata`` struct by ``CogMetadata.from_struct``): its
            ``crs`` (EPSG code, else the CRS rebuilt from GeoKeys).
        crs
            CRS (EPSG code or anything pyproj accepts) to use when the header carries none.
        """
        own = md.crs
        return cls(
            crs=crs if own is None else own,
            transform=md.transform,
            width=md.image_width,
            height=md.image_height,
        )

    @property
    def crs_epsg(self) -> int | None:
        """The EPSG code of the grid's CRS; None for a custom CRS or no CRS."""
        return epsg_code(self.crs)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.height, self.width)

    @property
    def is_axis_aligned(self) -> bool:
        """Whether pixel rows run along x and columns along y (no rotation or shear)."""
        return self.transform.b == 0.0 and self.transform.d == 0.0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) of the grid's four corners in its CRS."""
        cols = np.array([0.0, self.width, self.width, 0.0])
        rows = np.array([0.0, 0.0, self.height, self.height])
        t = self.transform
        xs = cols * t.a + rows * t.b + t.c
        ys = cols * t.d + rows * t.e + t.f
        return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))

    @property
    def resolution(self) -> tuple[float, float]:
        """(x size, y size) of a pixel, both positive."""
        t = self.transform
        return (math.hypot(t.a, t.d), math.hypot(t.b, t.e))

    @property
    def full_window(self) -> Window:
        """The window of the whole grid."""
        return Window(0, 0, self.height, self.width)

    def window_for_geometry(
        self, geom: shapely.Geometry, *, all_touched: bool = False, clip: bool = True
    ) -> Window | None:
        """Pixel window covering ``geom`` (in this grid's CRS), as rasterio's ``geometry_window``.

        The window spans the floor/ceil of the geometry's vertices in pixel space. With
        ``all_touched`` it also takes pixels the geometry meets only along an edge or at a corner.
        With ``clip`` it is cut to the grid. None when the result holds no pixel.
        """
        if not isinstance(geom, shapely.Geometry):
            raise TypeError(f"expected a shapely geometry, got {type(geom).__name__}")
        xy = shapely.get_coordinates(geom)
        if len(xy) == 0:
            return None
        cols, rows = pixel_coordinates(xy[:, 0], xy[:, 1], self.transform)
        if not (np.isfinite(cols).all() and np.isfinite(rows).all()):
            raise ValueError("geometry has non-finite coordinates")
        col_min, col_max = float(cols.min()), float(cols.max())
        row_min, row_max = float(rows.min()), float(rows.max())
        if all_touched:
            col_start, col_stop = math.ceil(col_min) - 1, math.floor(col_max) + 1
            row_start, row_stop = math.ceil(row_min) - 1, math.floor(row_max) + 1
        else:
            col_start, col_stop = math.floor(col_min), math.ceil(col_max)
            row_start, row_stop = math.floor(row_min), math.ceil(row_max)
        window = Window(
            row_start, col_start, max(row_stop - row_start, 0), max(col_stop - col_start, 0)
        )
        if clip:
            window = window.intersection(self.full_window)
        return None if window.is_empty else window

    def window_transform(self, window: Window) -> Affine:
        """Transform of the window's top-left pixel corner (same pixel size and orientation)."""
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def sub(self, window: Window) -> GridSpec:
        """The grid of ``window`` (which may reach outside this grid)."""
        return GridSpec(self.crs, self.window_transform(window), window.width, window.height)

    def coords(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (x per column, y per row) of ``window`` (default: whole grid)."""
        if not self.is_axis_aligned:
            raise ValueError("1-D coordinates need an axis-aligned grid (transform b == d == "
                             f"0), not a rotated or sheared one: {tuple(self.transform)[:6]}")
        window = self.full_window if window is None else window
        t = self.transform
        cols = np.arange(window.col_off, window.col_stop, dtype=np.float64) + 0.5
        rows = np.arange(window.row_off, window.row_stop, dtype=np.float64) + 0.5
        return cols * t.a + t.c, rows * t.e + t.f


def _close(a: float, b: float, extent: int) -> bool:
    """Whether two pixel-size coefficients drift apart by less than the tolerance over ``extent``."""
    return abs(a - b) * max(extent, 1) <= _PIXEL_TOLERANCE * max(abs(a), abs(b), 1e-300)


def union_grid(grids: Sequence[GridSpec], labels: Sequence[str] | None = None
               ) -> tuple[GridSpec, list[tuple[int, int]]]:
    """Smallest grid holding every input grid, and each input's (row, col) offset in it.

    The grids must share CRS and pixel size, and their origins must be whole pixels apart;
    ``labels`` (one per grid: record, band, href) name the grids an error is about.
    """
    grids = list(grids)
    if not grids:
        raise ValueError("union_grid needs at least one grid")

    def name(i: int) -> str:
        return labels[i] if labels is not None else f"grid {i}"

    others = [k for k, g in enumerate(grids) if not same_crs(g.crs, grids[0].crs)]
    if others:
        k = others[0]
        raise ValueError(f"grids are in different CRSs: {name(0)} in {crs_name(grids[0].crs)}, "
                         f"{name(k)} in {crs_name(grids[k].crs)}")
    ref = grids[0].transform
    extent = max(max(g.width, g.height) for g in grids)
    for k, g in enumerate(grids[1:], start=1):
        t = g.transform
        pairs = ((ref.a, t.a), (ref.b, t.b), (ref.d, t.d), (ref.e, t.e))
        if not all(_close(p, q, extent) for p, q in pairs):
            raise ValueError(
                "grids have different pixel sizes/orientations: "
                f"(a, b, d, e) = {(ref.a, ref.b, ref.d, ref.e)} ({name(0)}) vs "
                f"{(t.a, t.b, t.d, t.e)} ({name(k)})"
            )
    origins = np.array([[g.transform.c, g.transform.f] for g in grids])
    cols, rows = pixel_coordinates(origins[:, 0], origins[:, 1], ref)
    col_int, row_int = np.rint(cols), np.rint(rows)
    frac = np.maximum(np.abs(cols - col_int), np.abs(rows - row_int))
    bad = np.flatnonzero(frac > _PIXEL_TOLERANCE)
    if bad.size:
        detail = ", ".join(
            f"{name(i)}: ({float(rows[i]):.6f}, {float(cols[i]):.6f})" for i in bad.tolist()[:5]
        )
        raise ValueError(f"grid origins are not whole pixels apart (row, col offsets from "
                         f"{name(0)}: {detail})")
    row_off = [int(r) for r in row_int]
    col_off = [int(c) for c in col_int]
    row0 = min(row_off)
    col0 = min(col_off)
    row1 = max(r + g.height for r, g in zip(row_off, grids))
    col1 = max(c + g.width for c, g in zip(col_off, grids))
    union = GridSpec(
        grids[0].crs, ref @ Affine.translation(col0, row0), col1 - col0, row1 - row0
    )
    return union, [(r - row0, c - col0) for r, c in zip(row_off, col_off)]
