"""rasteret_dask: a GeoParquet index of COGs with lazy, tile-aligned, Dask-parallel reads."""

from .collection import Collection, build_collection_from_table, load

__all__ = ["Collection", "build_collection_from_table", "load"]
__version__ = "0.1.0"
