"""What the client plans for a composite: the output grid, its months and its tiles.

Nothing here reads a COG or a record's tile tables. The output grid is the anchored GeoBox
over the AOI (pixel edges on multiples of the resolution) in ``crs`` at ``resolution``, or a
given ``geobox``; without them it defaults to the CRS of most records and the finest native
resolution among the bands (two leaves of the metadata structs, ``transform`` and
``crs_epsg``, of the rows whose bbox meets the AOI). The months are the calendar months of
the rows whose bbox meets the grid (the index's ``year``/``month`` partition columns). The
tiles are the ``tile_size`` squares of the grid that the AOI meets: one small value each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox

from .. import schema as S
from ..plan.geometry import reproject_geometries
from ..plan.mask import geometry_mask
from ..plan.output_grid import GridRequest, anchored_geobox, majority_crs
from ..plan.reproject import pixel_size_in

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["Tile", "CompositeGrid", "output_grid", "month_axis", "plan_tiles", "tile_key",
           "geobox_json", "lonlat_bbox"]


@dataclass(frozen=True, slots=True)
class Tile:
    """One unit of work: its position (``i``, ``j``) among the tiles and its window (rows,
    columns) on the output grid."""

    i: int
    j: int
    row: int
    col: int
    height: int
    width: int

    @property
    def key(self) -> str:
        """The tile's key (and marker name)."""
        return tile_key(self.i, self.j)

    def geobox(self, grid: GeoBox) -> GeoBox:
        """The tile's own GeoBox, cut from the output grid."""
        return grid[self.row:self.row + self.height, self.col:self.col + self.width]

    @property
    def window(self) -> list[int]:
        """[row, col, height, width] (as markers record it)."""
        return [self.row, self.col, self.height, self.width]


@dataclass(frozen=True)
class CompositeGrid:
    """The output grid, the AOI in its CRS, and the grid's bbox in CRS84 (the index query)."""

    geobox: GeoBox
    aoi: shapely.Geometry
    query_bbox: tuple[float, float, float, float]

    @property
    def crs(self) -> pyproj.CRS:
        """The output CRS."""
        return pyproj.CRS.from_user_input(self.geobox.crs.to_wkt())


def tile_key(i: int, j: int) -> str:
    """The key (and marker name) of tile row ``i``, column ``j``."""
    return f"tile-{i:04d}-{j:04d}"


def lonlat_bbox(geobox: GeoBox) -> tuple[float, float, float, float]:
    """The CRS84 bbox of a GeoBox's footprint (edges densified before reprojection)."""
    crs = pyproj.CRS.from_user_input(geobox.crs.to_wkt())
    box = shapely.box(*geobox.boundingbox.bbox)
    return tuple(float(v) for v in reproject_geometries([box], crs, 4326)[0].bounds)


def geobox_json(geobox: GeoBox) -> dict[str, Any]:
    """A GeoBox as the store records it: CRS (WKT), affine (a..f) and (height, width)."""
    return {"crs": geobox.crs.to_wkt(), "transform": list(geobox.transform)[:6],
            "shape": [int(geobox.height), int(geobox.width)]}


def _leaf(column: str, field: str) -> pc.Expression:
    return pc.field(column, field)


def _default_crs(codes: Sequence[int]) -> pyproj.CRS:
    counts = Counter(codes)
    if len(counts) == 1:
        return pyproj.CRS.from_epsg(int(codes[0]))
    return majority_crs([pyproj.CRS.from_epsg(int(c)) for c in codes])


def _default_grid(subset: Collection, stored_bands: Sequence[str], crs: pyproj.CRS | None
                  ) -> tuple[pyproj.CRS, tuple[float, float]]:
    """The CRS of most records (unless given) and the finest native resolution among the
    bands in it (the local scale at a record's centre for records in another CRS)."""
    columns = {}
    for k, band in enumerate(stored_bands):
        md = S.metadata_column(band)
        columns[f"t{k}"] = _leaf(md, "transform")
        columns[f"e{k}"] = _leaf(md, "crs_epsg")
        columns[f"w{k}"] = _leaf(md, "image_width")
        columns[f"h{k}"] = _leaf(md, "image_height")
    table = subset.dataset.to_table(columns=columns, filter=subset.filter)
    grids: dict[tuple[int, float, float], tuple[float, float]] = {}  # (epsg, rx, ry) -> centre
    codes: list[int] = []
    for k in range(len(stored_bands)):
        for t, epsg, w, h in zip(table[f"t{k}"].to_pylist(), table[f"e{k}"].to_pylist(),
                                 table[f"w{k}"].to_pylist(), table[f"h{k}"].to_pylist(),
                                 strict=True):
            if t is None or epsg is None or w is None or h is None:
                continue
            transform = Affine(*t[:6])
            codes.append(int(epsg))
            centre = transform @ (w / 2, h / 2)
            grids.setdefault((int(epsg), abs(transform.a), abs(transform.e)), centre)
    if not codes:
        raise ValueError("no enriched record meets the AOI (after the date range and filters) "
                         f"for bands {list(stored_bands)}")
    out_crs = crs if crs is not None else _default_crs(codes)
    best: tuple[float, float] | None = None
    for (epsg, rx, ry), centre in grids.items():
        src = pyproj.CRS.from_epsg(epsg)
        res = (rx, ry)
        if src != out_crs:
            local = pixel_size_in(centre, src, (1.0, 1.0), out_crs)  # one output unit, in src
            side = float(np.sqrt(rx / local[0] * ry / local[1]))
            res = (side, side)
        if best is None or res[0] * res[1] < best[0] * best[1]:
            best = res
    assert best is not None
    return out_crs, best


def output_grid(collection: Collection, aoi: shapely.Geometry | None, aoi_crs: pyproj.CRS,
                request: GridRequest, stored_bands: Sequence[str], filters: dict[str, Any]
                ) -> CompositeGrid:
    """The composite's output grid over ``aoi`` (in ``aoi_crs``), anchored.

    Parameters
    ----------
    collection
        The index (not read unless a default CRS or resolution is needed).
    aoi : shapely geometry or None
        The area; None with ``request.geobox`` composites the whole geobox.
    aoi_crs
        CRS of ``aoi``'s coordinates.
    request
        The checked ``crs``/``resolution``/``geobox`` arguments.
    stored_bands
        The bands as the index names them (for the default resolution).
    filters
        ``Collection.subset`` arguments (date range included) for the default grid.

    Raises
    ------
    ValueError
        When no enriched record meets the AOI and a default is needed, or the AOI is empty
        or misses the geobox.
    """
    if request.geobox is not None:
        geobox = request.geobox
        crs = pyproj.CRS.from_user_input(geobox.crs.to_wkt())
        extent = shapely.box(*geobox.boundingbox.bbox)
        shape = extent if aoi is None else shapely.intersection(
            reproject_geometries([aoi], aoi_crs, crs)[0], extent)
        if shapely.is_empty(shape):
            raise ValueError("the AOI misses the geobox")
        return CompositeGrid(geobox, shape, lonlat_bbox(geobox))
    assert aoi is not None
    lonlat = reproject_geometries([aoi], aoi_crs, 4326)[0]
    crs, resolution = request.crs, request.resolution
    if crs is None or resolution is None:
        subset = collection.subset(bbox=tuple(lonlat.bounds), **filters)
        crs, default = _default_grid(subset, stored_bands, crs)
        resolution = resolution or default
    shape = reproject_geometries([aoi], aoi_crs, crs)[0]
    if shapely.is_empty(shape) or not np.all(np.isfinite(shape.bounds)):
        raise ValueError(f"the AOI {shapely.to_wkt(aoi, rounding_precision=6)[:200]} has no "
                         f"extent in {crs.to_string()}")
    geobox = anchored_geobox(tuple(shape.bounds), crs, resolution)
    return CompositeGrid(geobox, shape, lonlat_bbox(geobox))


def month_axis(subset: Collection) -> tuple[np.datetime64, ...]:
    """The calendar months (``datetime64[M]``) of ``subset``'s rows, ascending: read from the
    ``year``/``month`` partition columns (the ``datetime`` column of an index without them)."""
    names = subset.schema.names
    if S.YEAR in names and S.MONTH in names:
        table = subset.dataset.to_table(columns=[S.YEAR, S.MONTH], filter=subset.filter)
        pairs = pa.table({"y": table[S.YEAR], "m": table[S.MONTH]}).group_by(["y", "m"]).aggregate([])
        months = {np.datetime64(f"{int(y):04d}-{int(m):02d}", "M")
                  for y, m in zip(pairs["y"].to_pylist(), pairs["m"].to_pylist(), strict=True)}
    else:
        table = subset.dataset.to_table(columns=[S.DATETIME], filter=subset.filter)
        times = table[S.DATETIME].to_numpy(zero_copy_only=False).astype("datetime64[M]")
        months = set(np.unique(times))
    return tuple(sorted(months))


def plan_tiles(geobox: GeoBox, aoi: shapely.Geometry, tile_size: int) -> list[Tile]:
    """The ``tile_size`` tiles of ``geobox`` that ``aoi`` (in its CRS) touches, row-major.

    The AOI is rasterised once on the grid of tiles (one pixel per tile, all touched), so
    the client's work grows with the number of tiles, not with records or pixels.
    """
    height, width = int(geobox.height), int(geobox.width)
    rows, cols = -(-height // tile_size), -(-width // tile_size)
    t = geobox.transform
    coarse = Affine(t.a * tile_size, t.b, t.c, t.d, t.e * tile_size, t.f)
    touched = geometry_mask([aoi], (rows, cols), coarse, all_touched=True, invert=True)
    tiles = []
    for i, j in zip(*np.nonzero(touched), strict=True):
        r, c = int(i) * tile_size, int(j) * tile_size
        tiles.append(Tile(int(i), int(j), r, c, min(tile_size, height - r),
                          min(tile_size, width - c)))
    return tiles

