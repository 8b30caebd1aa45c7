"""Data files of an index: immutable, uniquely named GeoParquet files, one per partition.

``root/year=YYYY/month=M/part-<32 hex>.parquet`` (zstd). A file is never overwritten: a new
version of a partition is a new file, and the version log says which files are live. Every file
is Hilbert-sorted (``index/order.py``) in row groups of about 8 MB, with delta-encoded tile
offsets and byte counts and no dictionaries for them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .geoparquet import CollectionInfo, with_metadata
from .objectstore import Store, new_file, read_bytes
from .order import spatial_sort
from .versions import FileEntry, Partition, partition_dir

__all__ = [
    "COMPRESSION",
    "ROW_GROUP_BYTES",
    "ROW_GROUP_ROWS",
    "LEGACY_NAME",
    "row_group_size",
    "new_data_name",
    "is_owned_data_file",
    "parse_partition",
    "file_table",
    "write_data_file",
    "read_data_file",
    "split_partitions",
]

COMPRESSION = "zstd"
ROW_GROUP_BYTES = 8 * 1024 * 1024
"""Target in-memory size of a Parquet row group. Files are Hilbert-sorted (``index/order.py``),
so a group holds neighbouring scenes and a bbox filter skips the groups an AOI misses; enriched
records (kilobytes of tile offsets each) get groups of a few thousand rows."""
ROW_GROUP_ROWS = (1_024, 65_536)
"""Bounds on the rows of a row group, whatever the records' size."""
LEGACY_NAME = "part-0.parquet"
"""The one file per partition of the previous format (no version log)."""
_DATA_NAME = re.compile(r"^part-[0-9a-f]{32}\.parquet$")
_KEY_VALUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_:.-]*)=(-?\d+)$")


def row_group_size(table: pa.Table) -> int:
    """Rows per row group for ``table``: about :data:`ROW_GROUP_BYTES`, within the bounds."""
    per_row = table.nbytes / max(table.num_rows, 1)
    low, high = ROW_GROUP_ROWS
    return int(min(max(ROW_GROUP_BYTES / max(per_row, 1.0), low), high))


def new_data_name(partition: Partition) -> str:
    """A fresh, unique data file path for ``partition`` (relative to the root)."""
    folder = partition_dir(partition)
    name = f"part-{uuid.uuid4().hex}.parquet"
    return f"{folder}/{name}" if folder else name


def parse_partition(rel: str) -> Partition | None:
    """Partition values of a path like ``year=2024/month=3/x.parquet``; None if not hive."""
    parts = rel.split("/")[:-1]
    values = []
    for part in parts:
        match = _KEY_VALUE.match(part)
        if match is None:
            return None
        values.append((match.group(1), int(match.group(2))))
    return tuple(values)


def is_owned_data_file(rel: str, partition_by: Sequence[str]) -> bool:
    """Whether ``rel`` is named as this format names data files, in a partition folder.

    Only such files are ever removed without being listed by a manifest (as orphans of a
    crashed writer); previous-format ``part-0.parquet`` files are removed only once a manifest
    lists them.
    """
    name = rel.rsplit("/", 1)[-1]
    partition = parse_partition(rel)
    return (bool(_DATA_NAME.match(name)) and partition is not None
            and [key for key, _ in partition] == list(partition_by))


_DELTA_LEAVES = (".tile_offsets.list.element", ".tile_byte_counts.list.element")


def _leaf_encodings(schema: pa.Schema) -> tuple[list[str], dict[str, str]]:
    """(leaf columns that may use dictionaries, delta-encoded leaves) of ``schema``.

    Tile offsets and byte counts are nearly unique integers: dictionaries only bloat them
    (by a quarter in row groups of a few thousand records), while delta encoding of the
    increasing offsets makes the index smaller than with one big row group.
    """
    probe = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), probe)
    leaves = [column.path for column in pq.ParquetFile(pa.BufferReader(probe.getvalue())).schema]
    delta = [leaf for leaf in leaves if leaf.endswith(_DELTA_LEAVES)]
    return [leaf for leaf in leaves if leaf not in delta], dict.fromkeys(delta,
                                                                        "DELTA_BINARY_PACKED")


def file_table(table: pa.Table, partition_by: Iterable[str], info: CollectionInfo) -> pa.Table:
    """What a data file stores: the rows without their partition keys, with metadata."""
    present = [c for c in partition_by if c in table.column_names]
    return with_metadata(table.drop_columns(present), info)


def write_data_file(store: Store, partition: Partition, table: pa.Table) -> FileEntry:
    """Write ``table`` (already a :func:`file_table`) as a new, uniquely named data file."""
    table = spatial_sort(table)
    dictionary, encodings = _leaf_encodings(table.schema)
    rel = new_data_name(partition)
    with new_file(store, rel) as sink:
        pq.write_table(
            table, sink, compression=COMPRESSION, row_group_size=row_group_size(table),
            write_statistics=True, use_dictionary=dictionary or False,
            column_encoding=encodings or None,
        )
        size = sink.tell()
    return FileEntry(rel, partition, table.num_rows, size)


def read_data_file(store: Store, rel: str) -> pa.Table:
    """The rows of one data file (``FileNotFoundError`` when it is gone)."""
    return pq.read_table(pa.BufferReader(read_bytes(store, rel)))


def split_partitions(table: pa.Table, partition_by: Sequence[str]
                     ) -> Iterable[tuple[Partition, pa.Table]]:
    """``(partition, rows)`` for each distinct combination of the partition columns."""
    if not partition_by:
        yield (), table
        return
    keys = table.select(list(partition_by)).group_by(list(partition_by)).aggregate([])
    for row in keys.sort_by([(name, "ascending") for name in partition_by]).to_pylist():
        mask = None
        for name, value in row.items():
            if value is None:
                raise ValueError(f"cannot partition rows with a null {name!r}")
            cond = pc.equal(table[name], value)
            mask = cond if mask is None else pc.and_(mask, cond)
        yield tuple((name, int(row[name])) for name in partition_by), table.filter(mask)
