"""Read planning (pure, no I/O): geometry -> pixel window -> regular chunks -> tiles."""

from rasteret_dask.plan.geometry import coerce_geometries, geometry_crs, reproject_geometries
from rasteret_dask.plan.grid import GridSpec, Window, pixel_coordinates, union_grid
from rasteret_dask.plan.mask import geometry_mask
from rasteret_dask.plan.tiles import axis_tiles, chunk_edges

__all__ = [
    "coerce_geometries",
    "geometry_crs",
    "reproject_geometries",
    "GridSpec",
    "Window",
    "pixel_coordinates",
    "union_grid",
    "geometry_mask",
    "axis_tiles",
    "chunk_edges",
]
