"""Indexes of the previous format: no version log, ``year=*/month=*/part-0.parquet`` files.

Such an index is recognised by its ``_common_metadata`` carrying the ``rasteret_dask`` key. It
is read as a version 0 built from the files it holds, without writing anything; a commit left
half applied by the previous format (its journal ``_rasteret_txn.json`` and hidden temporary
files) is read as if it had been applied. The first write by this format rolls such a journal
forward, then commits version 1 over version 0 (the ``part-0.parquet`` files in partition
folders are the index's own; nothing else is).
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from .datafiles import LEGACY_NAME, parse_partition
from .geoparquet import COLLECTION_KEY
from .objectstore import Store, delete, exists, read_bytes, walk
from .versions import FileEntry, Manifest

__all__ = ["COMMON_METADATA", "JOURNAL", "read_common_schema", "legacy_manifest",
           "finish_journal"]

COMMON_METADATA = "_common_metadata"
JOURNAL = "_rasteret_txn.json"


def read_common_schema(store: Store, rel: str = COMMON_METADATA) -> pa.Schema | None:
    """The schema in ``_common_metadata`` (or ``rel``), None when absent."""
    try:
        data = read_bytes(store, rel)
    except FileNotFoundError:
        return None
    return pq.read_schema(pa.BufferReader(data))


def _journal(store: Store) -> dict | None:
    try:
        return json.loads(read_bytes(store, JOURNAL))
    except FileNotFoundError:
        return None


def legacy_manifest(store: Store) -> Manifest | None:
    """Version 0 of a previous-format index at ``store``; None when it is not one."""
    journal = _journal(store)
    if journal is None and not exists(store, COMMON_METADATA):
        return None
    journal = journal or {"renames": [], "deletes": []}
    present = {f.rel: f for f in walk(store)}
    common = COMMON_METADATA
    finals: dict[str, str] = {}  # final name -> where its bytes are now
    for tmp, final in journal["renames"]:
        source = tmp if tmp in present else final
        if final == COMMON_METADATA:
            common = source
        elif source in present:
            finals[final] = source
    schema = read_common_schema(store, common)
    if schema is None or COLLECTION_KEY not in (schema.metadata or {}):
        return None
    deleted = set(journal["deletes"])
    for rel in present:
        if rel.rsplit("/", 1)[-1] == LEGACY_NAME and rel not in deleted and rel not in finals:
            finals[rel] = rel
    entries, keys = [], None
    for final, source in sorted(finals.items()):
        partition = parse_partition(final)
        if partition is None or final in deleted:
            continue
        names = tuple(key for key, _ in partition)
        if keys is None:
            keys = names
        elif names != keys:
            raise ValueError(f"{store.url} mixes partition layouts ({keys} and {names})")
        with store.fs.open(store.path(source), "rb") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        entries.append(FileEntry(source, partition, rows, present[source].size))
    return Manifest(version=0, files=tuple(entries), schema=schema,
                    partition_by=keys or ("year", "month"), operation="legacy", txn="",
                    timestamp="")


def finish_journal(store: Store) -> None:
    """Roll forward a commit of the previous format left half applied (writers only).

    The previous format wrote only to local disk, so a journal exists only there.
    """
    journal = _journal(store) if store.is_local else None
    if journal is None:
        return
    for tmp, final in journal["renames"]:
        if exists(store, tmp):
            os.replace(store.path(tmp), store.path(final))
    delete(store, journal["deletes"])
    delete(store, [JOURNAL])
