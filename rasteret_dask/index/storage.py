"""Partitioned GeoParquet storage: atomic writes and lazy loads through ``pyarrow.dataset``.

Layout: ``root/year=YYYY/month=M/part-0.parquet`` (one file per partition, zstd), plus
``root/_common_metadata`` holding the unified file schema and the collection metadata.

Writes follow a small commit protocol so a crash never corrupts what was there:
1. every new file is written beside its target under a hidden temporary name;
2. a journal listing the renames and deletions is written atomically (``_rasteret_txn.json``);
3. the renames and deletions are applied and the journal removed.
A crash in step 1 leaves the old index untouched (the hidden files are ignored by readers and
cleaned up later); a crash in step 3 is rolled forward by the next open, since every new file
is already complete. Single-partition replacement (enrichment) is one atomic ``os.replace``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .. import schema as S
from .geoparquet import CollectionInfo, read_collection_info, with_metadata
from .order import spatial_sort

__all__ = [
    "PART_NAME",
    "COMMON_METADATA",
    "partition_path",
    "partition_values",
    "write_partitioned",
    "replace_partition",
    "update_common_schema",
    "write_common_metadata",
    "recover",
    "open_dataset",
    "partitioning",
]

PART_NAME = "part-0.parquet"
COMMON_METADATA = "_common_metadata"
JOURNAL = "_rasteret_txn.json"
COMPRESSION = "zstd"
ROW_GROUP_BYTES = 8 * 1024 * 1024
"""Target in-memory size of a Parquet row group. Files are Hilbert-sorted (``index/order.py``),
so a group holds neighbouring scenes and a bbox filter skips the groups an AOI misses; enriched
records (kilobytes of tile offsets each) get groups of a few thousand rows."""
ROW_GROUP_ROWS = (1_024, 65_536)
"""Bounds on the rows of a row group, whatever the records' size."""


def row_group_size(table: pa.Table) -> int:
    """Rows per row group for ``table``: about :data:`ROW_GROUP_BYTES`, within the bounds."""
    per_row = table.nbytes / max(table.num_rows, 1)
    low, high = ROW_GROUP_ROWS
    return int(min(max(ROW_GROUP_BYTES / max(per_row, 1.0), low), high))


def partitioning(partition_by: Sequence[str] = S.PARTITION_COLUMNS) -> ds.Partitioning:
    """Hive partitioning with int64 keys, so year/month load with the contract's type."""
    return ds.partitioning(
        pa.schema([pa.field(name, pa.int64()) for name in partition_by]), flavor="hive"
    )


def partition_path(root: Path, values: Mapping[str, int]) -> Path:
    """``root/year=2024/month=3`` for ``{"year": 2024, "month": 3}``."""
    path = Path(root)
    for name, value in values.items():
        path = path / f"{name}={int(value)}"
    return path


def partition_values(root: Path, file: Path) -> dict[str, int]:
    """Hive key values of a partition file (the inverse of ``partition_path``)."""
    values = {}
    for part in Path(file).parent.relative_to(root).parts:
        key, _, value = part.partition("=")
        values[key] = int(value)
    return values


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


def _write_file(table: pa.Table, path: Path) -> None:
    table = spatial_sort(table)
    dictionary, encodings = _leaf_encodings(table.schema)
    with open(path, "wb") as sink:
        pq.write_table(
            table, sink, compression=COMPRESSION, row_group_size=row_group_size(table),
            write_statistics=True, use_dictionary=dictionary or False,
            column_encoding=encodings or None,
        )
        sink.flush()
        os.fsync(sink.fileno())


def _temp_name(target: Path, txn: str) -> Path:
    return target.with_name(f".{target.name}.{txn}.tmp")


def _write_json_atomic(path: Path, document: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        json.dump(document, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _apply(root: Path, journal: dict) -> None:
    for tmp, final in journal["renames"]:
        if (root / tmp).exists():
            os.replace(root / tmp, root / final)
    for rel in journal["deletes"]:
        (root / rel).unlink(missing_ok=True)
    for rel in journal["deletes"]:
        parent = (root / rel).parent
        while parent != root and parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def recover(root: str | os.PathLike) -> None:
    """Roll forward an interrupted commit and remove orphaned temporary files (local roots)."""
    root = Path(root)
    journal_path = root / JOURNAL
    if journal_path.exists():
        _apply(root, json.loads(journal_path.read_text()))
        journal_path.unlink()
    for tmp in root.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _split_partitions(table: pa.Table, partition_by: Sequence[str]) -> Iterable[tuple[dict, pa.Table]]:
    keys = table.select(list(partition_by)).group_by(list(partition_by)).aggregate([])
    for row in keys.to_pylist():
        mask = None
        for name, value in row.items():
            cond = pc.equal(table[name], value)
            mask = cond if mask is None else pc.and_(mask, cond)
        yield row, table.filter(mask)


def _file_table(table: pa.Table, partition_by: Sequence[str], info: CollectionInfo) -> pa.Table:
    present = [c for c in partition_by if c in table.column_names]
    return with_metadata(table.drop_columns(present), info)


def _common_schema(file_schema: pa.Schema, info: CollectionInfo, old: pa.Schema | None) -> pa.Schema:
    schema = file_schema if old is None else pa.unify_schemas([old, file_schema])
    metadata = dict(file_schema.metadata or {})
    metadata[b"rasteret_dask"] = info.to_json()
    return schema.with_metadata(metadata)


def write_partitioned(
    table: pa.Table,
    root: str | os.PathLike,
    info: CollectionInfo,
    *,
    partition_by: Sequence[str] = S.PARTITION_COLUMNS,
    mode: str = "overwrite",
) -> list[Path]:
    """Write ``table`` as a hive-partitioned dataset under ``root`` in one atomic commit.

    ``mode="overwrite"`` replaces the whole dataset; ``"replace_partitions"`` replaces only the
    partitions present in ``table`` and keeps the others.
    """
    if mode not in ("overwrite", "replace_partitions"):
        raise ValueError(f"mode must be 'overwrite' or 'replace_partitions', got {mode!r}")
    missing = [c for c in partition_by if c not in table.column_names]
    if missing:
        raise ValueError(f"cannot partition by missing column(s) {missing}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    recover(root)
    txn = uuid.uuid4().hex
    renames, written = [], []
    file_schema = None
    for values, part in _split_partitions(table, partition_by):
        target = partition_path(root, values) / PART_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_name(target, txn)
        file_table = _file_table(part, partition_by, info)
        _write_file(file_table, tmp)
        file_schema = file_table.schema if file_schema is None else file_schema
        renames.append((str(tmp.relative_to(root)), str(target.relative_to(root))))
        written.append(target)
    if file_schema is None:
        file_schema = _file_table(table, partition_by, info).schema
    old = None
    if mode == "replace_partitions" and (root / COMMON_METADATA).exists():
        old = pq.read_schema(root / COMMON_METADATA)
    common_tmp = _temp_name(root / COMMON_METADATA, txn)
    pq.write_metadata(_common_schema(file_schema, info, old), common_tmp)
    renames.append((common_tmp.name, COMMON_METADATA))
    deletes = []
    if mode == "overwrite":
        keep = {str(p.relative_to(root)) for p in written}
        deletes = [
            str(p.relative_to(root)) for p in root.rglob("*.parquet")
            if str(p.relative_to(root)) not in keep and not p.name.startswith(".")
        ]
    journal = {"txn": txn, "renames": renames, "deletes": deletes}
    _write_json_atomic(root / JOURNAL, journal)
    _apply(root, journal)
    (root / JOURNAL).unlink()
    return written


def replace_partition(root: str | os.PathLike, values: Mapping[str, int], table: pa.Table,
                      info: CollectionInfo) -> Path:
    """Atomically replace one partition's file (used by per-partition enrichment tasks)."""
    target = partition_path(Path(root), values) / PART_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target, uuid.uuid4().hex)
    _write_file(_file_table(table, list(values), info), tmp)
    os.replace(tmp, target)
    return target


def update_common_schema(root: str | os.PathLike, fields: Sequence[pa.Field],
                         info: CollectionInfo | None = None) -> None:
    """Add columns to the dataset schema (before partitions gain them), atomically."""
    root = Path(root)
    old = pq.read_schema(root / COMMON_METADATA)
    new = pa.unify_schemas([old, pa.schema(fields)])
    metadata = dict(old.metadata or {})
    if info is not None:
        metadata[b"rasteret_dask"] = info.to_json()
    tmp = _temp_name(root / COMMON_METADATA, uuid.uuid4().hex)
    pq.write_metadata(new.with_metadata(metadata), tmp)
    os.replace(tmp, root / COMMON_METADATA)


def write_common_metadata(root: str | os.PathLike, schema: pa.Schema, info: CollectionInfo,
                          sample: pa.Table | None = None) -> None:
    """Atomically write ``_common_metadata``: the file schema, ``geo`` (from ``sample``), info."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    metadata = dict(schema.metadata or {})
    if sample is not None:
        metadata.update(with_metadata(sample, info).schema.metadata)
    metadata[b"rasteret_dask"] = info.to_json()
    tmp = _temp_name(root / COMMON_METADATA, uuid.uuid4().hex)
    pq.write_metadata(schema.with_metadata(metadata), tmp)
    os.replace(tmp, root / COMMON_METADATA)


def open_dataset(path: str | os.PathLike, *, filesystem=None) -> tuple[ds.Dataset, CollectionInfo | None]:
    """Open a partitioned directory or a single (Geo)Parquet file lazily (no row is read)."""
    if filesystem is None and isinstance(path, str) and "://" in path and not path.startswith("file://"):
        import fsspec

        filesystem, path = fsspec.core.url_to_fs(path)
    if isinstance(path, str) and path.startswith("file://"):
        path = path[len("file://"):]
    is_local = filesystem is None
    if is_local:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no collection index at {path}")
        if path.is_dir():
            recover(path)
        path = str(path)
    isdir = os.path.isdir(path) if is_local else filesystem.isdir(path)
    if not isdir:
        dataset = ds.dataset(path, format="parquet", filesystem=filesystem)
        return dataset, read_collection_info(dataset.schema)
    part = partitioning()
    common = f"{path.rstrip('/')}/{COMMON_METADATA}"
    exists = os.path.exists(common) if is_local else filesystem.exists(common)
    schema = None
    if exists:
        file_schema = pq.read_schema(common, filesystem=filesystem)
        schema = pa.unify_schemas([file_schema, part.schema]).with_metadata(file_schema.metadata)
    dataset = ds.dataset(path, format="parquet", partitioning=part, schema=schema,
                         filesystem=filesystem)
    return dataset, read_collection_info(dataset.schema)
