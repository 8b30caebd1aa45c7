"""rasteret_dask: a GeoParquet index of COGs with lazy, tile-addressed, Dask-parallel reads."""

from .build import EnrichmentFailedError, build, build_from_stac, build_from_table
from .catalog import (
    DatasetDescriptor,
    descriptors,
    get_descriptor,
    register,
    register_local,
    search,
    unregister_local,
)
from .cluster import connect
from .collection import Collection, MissingFootprintWarning, build_collection_from_table, load
from .enrich import enrich_table_with_cog_metadata
from .index import (
    ConcurrentWriteError,
    IndexChangedError,
    IndexExistsError,
    NotAnIndexError,
    vacuum,
)

# The read path (dask.array, xarray) is imported with the package, not inside the first read:
# every user of the package reads, and importing it there made a fresh process's first read
# ~0.25 s slower than later ones (benchmarks/read_bench.py, "first read of a fresh process").
from .read import MissingRecordsError, RasterReadError  # isort: skip
from .read.rasters import Raster  # isort: skip

__all__ = [
    "Collection",
    "ConcurrentWriteError",
    "DatasetDescriptor",
    "EnrichmentFailedError",
    "IndexChangedError",
    "IndexExistsError",
    "MissingFootprintWarning",
    "MissingRecordsError",
    "NotAnIndexError",
    "Raster",
    "RasterReadError",
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
    "register_local",
    "search",
    "unregister_local",
    "vacuum",
]
__version__ = "0.1.0"
