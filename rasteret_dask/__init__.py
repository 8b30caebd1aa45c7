"""rasteret_dask: a GeoParquet index of COGs with lazy, tile-aligned, Dask-parallel reads."""

from .build import build, build_from_stac, build_from_table
from .catalog import DatasetDescriptor, descriptors, get_descriptor, register
from .cluster import connect
from .collection import Collection, build_collection_from_table, load
from .enrich import enrich_table_with_cog_metadata
from .index import (
    ConcurrentWriteError,
    IndexChangedError,
    IndexExistsError,
    NotAnIndexError,
    vacuum,
)

__all__ = [
    "Collection",
    "ConcurrentWriteError",
    "DatasetDescriptor",
    "IndexChangedError",
    "IndexExistsError",
    "NotAnIndexError",
    "build",
    "build_collection_from_table",
    "build_from_stac",
    "build_from_table",
    "connect",
    "descriptors",
    "enrich_table_with_cog_metadata",
    "get_descriptor",
    "load",
    "register",
    "vacuum",
]
__version__ = "0.1.0"
