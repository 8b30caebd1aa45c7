"""Index layer: Arrow tables <-> a versioned, partitioned GeoParquet dataset on any fsspec store
(normalise, store, version, read, filter)."""

from .dataset import IndexChangedError, open_dataset
from .geoparquet import CollectionInfo
from .normalize import normalize_table
from .storage import (
    ConcurrentWriteError,
    IndexExistsError,
    NotAnIndexError,
    vacuum,
    write_partitioned,
)

__all__ = [
    "CollectionInfo",
    "ConcurrentWriteError",
    "IndexChangedError",
    "IndexExistsError",
    "NotAnIndexError",
    "normalize_table",
    "open_dataset",
    "vacuum",
    "write_partitioned",
]
