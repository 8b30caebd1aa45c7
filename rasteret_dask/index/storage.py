"""Writes to an index: transactions that commit a new version and delete only what they own.

Every write follows the same steps, on local disk and on object stores alike:

1. new data files are written under fresh unique names (``index/datafiles.py``); nothing that
   a reader can see changes;
2. the next version's manifest is created exclusively (``index/versions.py``): the commit
   point. A concurrent writer that committed first makes it fail, and the writer either
   merges (the other writer touched other partitions) or redoes the partitions both touched,
   or gives up with :class:`ConcurrentWriteError`; nothing is ever silently overwritten;
3. after the commit, ``_common_metadata`` is rewritten for plain readers, the files the
   previous version listed and the new one does not are deleted, orphans of crashed writers
   (this format's file names, listed by no manifest, older than :data:`ORPHAN_AGE`) are
   deleted, and all but the last 20 manifests are pruned.

A crash before step 2 leaves the previous version as it was (plus orphans, removed later); a
crash after it leaves the new version complete (plus files to clean). Only files a manifest
listed, or files named as this format names them, are ever deleted: an export never removes
a file it did not write. :func:`vacuum` runs the cleanup on demand.

Each commit is logged (INFO, logger ``rasteret_dask.index``): the operation, the version and
the partitions it wrote or rewrote; a commit that lost a race and merges is logged too.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from .. import schema as S
from ..redact import redact_url
from .datafiles import file_table, is_owned_data_file, split_partitions, write_data_file
from .geoparquet import COLLECTION_KEY, CollectionInfo
from .legacy import COMMON_METADATA, finish_journal, legacy_manifest
from .objectstore import Store, delete, list_names, put_atomic, walk
from .versions import (
    LOG_DIR,
    FileEntry,
    Manifest,
    Partition,
    VersionConflict,
    commit_manifest,
    latest_manifest,
    list_versions,
    new_txn,
    partition_dir,
    partition_label,
    prune_versions,
    read_manifest,
    version_name,
)

__all__ = [
    "ORPHAN_AGE",
    "COMMIT_ATTEMPTS",
    "ConcurrentWriteError",
    "NotAnIndexError",
    "IndexExistsError",
    "PartitionChange",
    "PartitionConflict",
    "current_version",
    "open_for_write",
    "prepare_export",
    "write_partitioned",
    "commit_changes",
    "collect_garbage",
    "vacuum",
]

ORPHAN_AGE = 3600.0
"""Seconds after which a data file that no manifest lists is taken for a crashed writer's
orphan (younger ones may belong to a writer still running)."""
COMMIT_ATTEMPTS = 10
"""Commits retried on top of other writers' versions before :class:`ConcurrentWriteError`."""
_TEMP = re.compile(r"^\..+\.tmp$")
_LISTED = 10  # partitions a log line names; the rest are counted

logger = logging.getLogger("rasteret_dask.index")


def _labels(partitions: Sequence[Partition]) -> str:
    names = [partition_label(p) for p in partitions]
    more = len(names) - _LISTED
    return ", ".join(names[:_LISTED]) + (f" and {more} more" if more > 0 else "")


def _log_commit(store: Store, manifest: Manifest, written: Sequence[Partition],
                removed: Sequence[Partition] = ()) -> None:
    """One INFO line per committed version: what was written where."""
    gone = f"; removed {_labels(removed)}" if removed else ""
    logger.info("%s committed version %d of %s: %d partition(s) written (%s)%s",
                manifest.operation, manifest.version, redact_url(store.url), len(written),
                _labels(written) or "none", gone)


class ConcurrentWriteError(RuntimeError):
    """Another writer changed the index in a way this write cannot merge; nothing was changed."""


class NotAnIndexError(FileExistsError):
    """The target folder holds files that are not a rasteret-dask index."""


class IndexExistsError(FileExistsError):
    """The target already holds an index and ``overwrite=True`` was not given."""


@dataclass(frozen=True)
class PartitionChange:
    """A partition's complete new file list, computed from ``replaces`` (its files then)."""

    partition: Partition
    files: tuple[FileEntry, ...]
    replaces: tuple[FileEntry, ...]


class PartitionConflict(Exception):
    """Partitions a write changed were changed by another writer since it read them."""

    def __init__(self, latest: Manifest | None, partitions: Sequence[Partition]) -> None:
        labels = ", ".join(partition_label(p) for p in partitions)
        super().__init__(f"partitions changed by another writer: {labels}")
        self.latest = latest
        self.partitions = tuple(partitions)


def current_version(store: Store) -> Manifest | None:
    """The latest version of the index at ``store`` (version 0 for the previous format)."""
    return latest_manifest(store) or legacy_manifest(store)


def _is_ours(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return (rel.startswith(f"{LOG_DIR}/") or bool(_TEMP.match(name))
            or is_owned_data_file(rel, S.PARTITION_COLUMNS))


def open_for_write(store: Store) -> Manifest | None:
    """The version a write starts from; None for a new index at an empty (or absent) folder.

    Raises :class:`NotAnIndexError` when the folder holds other files (nothing of them is
    ever touched). A previous-format index's half-applied commit is rolled forward first.
    """
    if store.fs.isfile(store.root):
        raise NotAnIndexError(f"{store.url} is a file, not an index folder")
    if not list_versions(store):
        finish_journal(store)
    base = current_version(store)
    if base is None:
        foreign = sorted(f.rel for f in walk(store) if not _is_ours(f.rel))
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                               else "")
            raise NotAnIndexError(
                f"{store.url} is not empty and is not a rasteret-dask index (it holds {shown}); "
                "write the index into a new or empty folder")
    return base


def _with_info(schema: pa.Schema, info: CollectionInfo) -> pa.Schema:
    metadata = dict(schema.metadata or {})
    metadata[COLLECTION_KEY] = info.to_json()
    return schema.with_metadata(metadata)


def _version_after(base: Manifest | None) -> int:
    return base.version + 1 if base is not None else 1


def prepare_export(store: Store, *, overwrite: bool) -> Manifest | None:
    """The version an export replaces; refuses a foreign folder or an index without
    ``overwrite``."""
    base = open_for_write(store)
    if base is not None and not overwrite:
        raise IndexExistsError(
            f"{store.url} already holds a rasteret-dask index (version {base.version}, "
            f"{base.rows} records); pass overwrite=True to replace it")
    return base


def write_partitioned(table: pa.Table, store: Store, info: CollectionInfo, *,
                      base: Manifest | None,
                      partition_by: Sequence[str] = S.PARTITION_COLUMNS,
                      operation: str = "export") -> Manifest:
    """Write ``table`` as the version after ``base`` (from :func:`prepare_export`), replacing
    all the index's data.

    Only the files of ``base`` are removed afterwards. If another writer commits after
    ``base``, :class:`ConcurrentWriteError` is raised and nothing was changed.
    """
    missing = [c for c in partition_by if c not in table.column_names]
    if missing:
        raise ValueError(f"cannot partition by missing column(s) {missing}")
    entries: list[FileEntry] = []
    try:
        file_schema = None
        for partition, rows in split_partitions(table, partition_by):
            stored = file_table(rows, partition_by, info)
            entries.append(write_data_file(store, partition, stored))
            file_schema = file_schema or stored.schema
        if file_schema is None:
            file_schema = file_table(table, partition_by, info).schema
        manifest = Manifest(version=_version_after(base), files=tuple(entries),
                            schema=_with_info(file_schema, info),
                            partition_by=tuple(partition_by), operation=operation,
                            txn=new_txn())
        commit_manifest(store, manifest)
    except VersionConflict:
        delete(store, [e.path for e in entries])
        latest = latest_manifest(store)
        was = base.version if base is not None else "none"
        now = latest.version if latest is not None else "?"
        raise ConcurrentWriteError(
            f"the index at {store.url} changed (version {was} -> {now}) while exporting; "
            "nothing was changed; run again") from None
    except BaseException:
        delete(store, [e.path for e in entries])
        raise
    after_commit(store, base, manifest)
    _log_commit(store, manifest, sorted({e.partition for e in entries}))
    return manifest


def _merge_schema(latest: pa.Schema | None, mine: pa.Schema) -> pa.Schema:
    """The latest schema with this write's fields (new ones appended, changed ones replaced)."""
    if latest is None:
        return mine
    by_name = {f.name: f for f in mine}
    fields = [by_name.get(f.name, f) for f in latest]
    fields += [f for f in mine if f.name not in latest.names]
    metadata = dict(latest.metadata or {})
    metadata.update(mine.metadata or {})
    return pa.schema(fields, metadata=metadata)


def _apply(latest: Manifest | None, changes: Sequence[PartitionChange], schema: pa.Schema,
           info: CollectionInfo, operation: str, partition_by: Sequence[str]) -> Manifest:
    files = dict(latest.partitions()) if latest is not None else {}
    for change in changes:
        if change.files:
            files[change.partition] = change.files
        else:
            files.pop(change.partition, None)
    merged = _merge_schema(latest.schema if latest is not None else None, schema)
    return Manifest(
        version=_version_after(latest),
        files=tuple(e for key in sorted(files) for e in files[key]),
        schema=_with_info(merged, info),
        partition_by=latest.partition_by if latest is not None else tuple(partition_by),
        operation=operation, txn=new_txn())


def _lost(store: Store, changes: Sequence[PartitionChange]) -> list[Partition]:
    """Partitions whose new files vanished (removed as orphans during a very long run)."""
    lost = []
    for change in changes:
        if not change.files:
            continue
        names = set(list_names(store, partition_dir(change.partition)))
        if any(e.path.rsplit("/", 1)[-1] not in names for e in change.files):
            lost.append(change.partition)
    return lost


def _paths(entries: Sequence[FileEntry]) -> list[str]:
    return sorted(e.path for e in entries)


def commit_changes(store: Store, changes: Sequence[PartitionChange], *, schema: pa.Schema,
                   update_info: Callable[[CollectionInfo | None], CollectionInfo],
                   operation: str, partition_by: Sequence[str] = S.PARTITION_COLUMNS,
                   written_since: float | None = None) -> Manifest:
    """Commit partition changes on top of the latest version, merging with other writers.

    ``schema`` holds the fields this write adds or changes; ``update_info`` turns the latest
    collection metadata into the new one (it is applied again after a merge). Raises
    :class:`PartitionConflict` when another writer changed one of these partitions since the
    change was computed (the caller redoes them on ``latest`` and commits again), and
    :class:`ConcurrentWriteError` when commits keep losing the race.
    """
    lost: list[Partition] = []
    if written_since is not None and time.time() - written_since > ORPHAN_AGE / 2:
        lost = _lost(store, changes)
    for _ in range(COMMIT_ATTEMPTS):
        latest = current_version(store)
        conflicts = [c.partition for c in changes
                     if _paths(latest.files_of(c.partition) if latest else ()) != _paths(c.replaces)]
        conflicts += [p for p in lost if p not in conflicts]
        if conflicts:
            raise PartitionConflict(latest, conflicts)
        info = update_info(latest.info if latest is not None else None)
        manifest = _apply(latest, changes, schema, info, operation, partition_by)
        try:
            commit_manifest(store, manifest)
        except VersionConflict:
            logger.info("%s: another writer committed %s first; merging with its version",
                        operation, redact_url(store.url))
            continue
        after_commit(store, latest, manifest)
        _log_commit(store, manifest, [c.partition for c in changes if c.files],
                    [c.partition for c in changes if not c.files])
        return manifest
    raise ConcurrentWriteError(
        f"the index at {store.url} kept changing while committing {operation} "
        f"({COMMIT_ATTEMPTS} attempts); nothing was changed; run again")


def _common_metadata_bytes(schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_metadata(schema, sink)
    return sink.getvalue().to_pybytes()


def after_commit(store: Store, previous: Manifest | None, new: Manifest) -> None:
    """Step 3: ``_common_metadata``, the previous version's replaced files, orphans, old logs.

    The commit already succeeded: a failure here is reported as a warning, and what it left
    is cleaned by a later write or :func:`vacuum`.
    """
    try:
        versions = list_versions(store)
        if versions and versions[-1] == new.version:
            put_atomic(store, COMMON_METADATA, _common_metadata_bytes(new.schema))
        if previous is not None:
            delete(store, previous.paths() - new.paths())
        collect_garbage(store, ORPHAN_AGE)
        prune_versions(store)
    except OSError as exc:
        warnings.warn(f"version {new.version} of {store.url} is committed, but cleaning up "
                      f"after it failed ({exc}); a later write or vacuum() finishes it",
                      RuntimeWarning, stacklevel=3)


def collect_garbage(store: Store, older_than: float, *, thorough: bool = False) -> list[str]:
    """Delete files no live version needs; returns their paths (relative to the root).

    Files of this format's naming not listed by the latest manifest, and hidden temporary
    files, go once older than ``older_than`` seconds. With ``thorough`` the files that older
    kept manifests list and the latest does not (superseded; left by a writer that crashed
    after its commit) go too, whatever their age.
    """
    latest = latest_manifest(store)
    if latest is None:
        return []
    live = latest.paths()
    superseded: set[str] = set()
    if thorough:
        for version in list_versions(store)[:-1]:
            try:
                superseded |= read_manifest(store, version).paths()
            except FileNotFoundError:
                continue
        superseded -= live
    cutoff = time.time() - older_than
    doomed = []
    for stored in walk(store):
        if stored.rel in live:
            continue
        name = stored.rel.rsplit("/", 1)[-1]
        owned = is_owned_data_file(stored.rel, latest.partition_by) or bool(_TEMP.match(name))
        if stored.rel in superseded or (owned and stored.modified <= cutoff):
            doomed.append(stored.rel)
    delete(store, doomed)
    return sorted(doomed)


def vacuum(path: str | os.PathLike, older_than: float | dt.timedelta = ORPHAN_AGE, *,
           storage_options: dict | None = None) -> list[str]:
    """Remove what no version of the index at ``path`` needs; returns the removed paths.

    Deletes data files that earlier versions listed and the latest does not, files named as
    this format names data files that no manifest lists (orphans of crashed writers) and
    hidden temporary files once older than ``older_than`` (seconds or a timedelta; default
    one hour, so the files of a writer still running are safe), and prunes the version log to
    its last 20 manifests. A previous-format index's half-applied commit is rolled forward.
    Readers holding an older version lose its files: ``load()`` again after a vacuum.
    """
    from .objectstore import open_store

    store = open_store(path, storage_options)
    seconds = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else float(older_than)
    if not list_versions(store):
        finish_journal(store)
        if legacy_manifest(store) is None:
            raise FileNotFoundError(f"no collection index at {path}")
        cutoff = time.time() - seconds
        temps = [f.rel for f in walk(store)
                 if _TEMP.match(f.rel.rsplit("/", 1)[-1]) and f.modified <= cutoff]
        delete(store, temps)
        return sorted(temps)
    removed = collect_garbage(store, seconds, thorough=True)
    removed += [version_name(v) for v in prune_versions(store)]
    return removed
