"""rasteret_dask: a GeoParquet index of COGs with lazy, tile-aligned, Dask-parallel reads."""

from .build import build_from_table
from .collection import Collection, build_collection_from_table, load
from .enrich import enrich_table_with_cog_metadata

__all__ = [
    "Collection",
    "build_collection_from_table",
    "build_from_table",
    "enrich_table_with_cog_metadata",
    "load",
]
__version__ = "0.1.0"
