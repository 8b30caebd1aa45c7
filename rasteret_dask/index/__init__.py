"""Index layer: Arrow tables <-> the partitioned GeoParquet dataset (normalise, store, filter)."""

from .geoparquet import CollectionInfo
from .normalize import normalize_table
from .storage import open_dataset, write_partitioned

__all__ = ["CollectionInfo", "normalize_table", "open_dataset", "write_partitioned"]
