"""Read planning (pure, no I/O): geometry -> pixel window -> tiles -> tile-aligned chunks."""

from rasteret_dask.plan.geometry import coerce_geometries, geometry_crs, reproject_geometries
from rasteret_dask.plan.grid import GridSpec, Window, pixel_coordinates, union_grid
from rasteret_dask.plan.mask import geometry_mask
from rasteret_dask.plan.tiles import (
    TileSlice,
    chunk_edges,
    tile_count_for_window,
    tile_grid_shape,
    tiles_for_region,
    tiles_for_window,
    window_chunks,
)

__all__ = [
    "coerce_geometries",
    "geometry_crs",
    "reproject_geometries",
    "GridSpec",
    "Window",
    "pixel_coordinates",
    "union_grid",
    "geometry_mask",
    "TileSlice",
    "chunk_edges",
    "tile_count_for_window",
    "tile_grid_shape",
    "tiles_for_region",
    "tiles_for_window",
    "window_chunks",
]
