"""Enrichment of an index as Dask tasks: one per data file (or row chunk of a large one).

A file's tasks read its rows, fetch all their headers concurrently and fill the metadata
columns; a final task per file splices the chunks and writes the result as a new, uniquely
named data file. Workers return small typed outcomes and never touch the version log: the
client commits every rewritten partition in one version (``index/storage.py``). A file with
nothing to do is not rewritten, and a run that changed nothing commits nothing.

Another writer may commit meanwhile. Partitions it did not touch merge; partitions it rewrote
(or files it removed) are enriched again on its files (``only_missing`` keeps its work and
adds ours), up to :data:`ATTEMPTS` times, then ``ConcurrentWriteError`` names them. If some
tasks fail, the partitions that succeeded are committed first, then the failure is raised.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask
import pyarrow as pa

from .. import schema as S
from ..index.datafiles import file_table, parse_partition, read_data_file, write_data_file
from ..index.geoparquet import CollectionInfo
from ..index.objectstore import Store, delete
from ..index.storage import (
    ConcurrentWriteError,
    PartitionChange,
    PartitionConflict,
    commit_changes,
    current_version,
    open_for_write,
)
from ..index.versions import FileEntry, Manifest, Partition, partition_label
from ..io import RangeReader
from ..redact import redact_url
from ..runner import compute
from .table import COUNTS, EnrichStats, enrich_table
from .verify import Verification

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["EnrichReport", "EnrichTaskError", "FileOutcome", "enrich_collection",
           "DEFAULT_CHUNK_ROWS", "ATTEMPTS"]

logger = logging.getLogger("rasteret_dask.enrich")

DEFAULT_CHUNK_ROWS = 5_000
_FOOTPRINT_COLUMNS = (S.GEOMETRY, S.SCENE_BBOX, *S.BBOX_COLUMNS, S.BBOX_STRUCT,
                      S.BBOX_STRUCT_FALLBACK)
ATTEMPTS = 5
"""Rounds of enrichment and commit before concurrent writers make a run give up."""


@dataclass
class EnrichReport:
    """Outcome of an enrichment run over a collection."""

    enriched: int = 0
    failed: int = 0
    skipped: int = 0
    partitions_total: int = 0
    partitions_rewritten: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    collection: Collection | None = field(default=None, repr=False)
    verified: int = 0
    """With verification: band-records whose object was asked for its identity."""
    changed: int = 0
    """... whose object changed since enrichment."""
    unrecorded: int = 0
    """... enriched before identities were kept (enriched again to record it)."""
    reenriched: int = 0
    """... changed or unrecorded, and enriched again."""
    verify_failed: int = 0
    """... whose object could not be asked (kept as they were)."""

    def _count(self, stats: EnrichStats) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(stats, name))
        self.errors.extend(stats.errors[: max(0, 50 - len(self.errors))])

    def __str__(self) -> str:
        return (
            f"enriched {self.enriched}, failed {self.failed}, skipped {self.skipped} band-records; "
            f"rewrote {self.partitions_rewritten} of {self.partitions_total} partitions "
            f"in {self.seconds:.2f} s"
        )


class EnrichTaskError(RuntimeError):
    """Enrichment tasks failed; the partitions that succeeded were committed."""


@dataclass(frozen=True)
class _Failed:
    """A task that could not run: its message, and whether its input file was gone."""

    message: str
    vanished: bool = False


@dataclass(frozen=True)
class FileOutcome:
    """What a data file's tasks did; small, it is what travels back to the client."""

    source: FileEntry
    written: FileEntry | None
    stats: EnrichStats
    failure: _Failed | None = None


def _failure(store: Store, entry: FileEntry, exc: BaseException) -> _Failed:
    where = f"{store.url}/{entry.path}"
    if isinstance(exc, FileNotFoundError):
        return _Failed(f"{where} is gone (replaced by another writer)", vanished=True)
    return _Failed(f"enriching {where} failed: {type(exc).__name__}: {exc}")


def _enrich_rows(store: Store, entry: FileEntry, start: int, stop: int, bands: Sequence[str],
                 reader: RangeReader, only_missing: bool, verify: Verification | None = None
                 ) -> tuple[pa.Table | None, EnrichStats] | _Failed:
    """Enrich rows [start, stop) of one data file; None when nothing in them changed."""
    try:
        table = read_data_file(store, entry.path).slice(start, stop - start)
        enriched, stats = enrich_table(table, bands, reader=reader, only_missing=only_missing,
                                       verify=verify)
    except Exception as exc:
        return _failure(store, entry, exc)
    if stats.enriched + stats.failed == 0:
        return None, stats
    if S.EPSG not in enriched.column_names:
        enriched = enriched.append_column(S.EPSG, pa.nulls(enriched.num_rows, pa.int32()))
    # footprints filled from the headers (and their derived columns) travel with every chunk,
    # so all chunks of a file return the same columns
    columns = [S.metadata_column(b) for b in bands] + [S.ENRICH_ERRORS, S.EPSG]
    columns += [c for c in _FOOTPRINT_COLUMNS if c in table.column_names]
    if stats.enriched == 0 and all(c in table.column_names for c in columns) and \
            enriched.select(columns).equals(table.select(columns)):
        return None, stats  # only retried failures, failing the same way: nothing to rewrite
    return enriched.select(columns), stats


def _chunk_bounds(num_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) row chunks of at most ``chunk_rows`` rows (at least one)."""
    starts = range(0, max(num_rows, 1), max(chunk_rows, 1))
    return [(a, min(a + chunk_rows, num_rows)) for a in starts]


def _splice(table: pa.Table, bounds: list[tuple[int, int]],
            parts: list[tuple[pa.Table | None, EnrichStats]]) -> pa.Table:
    changed = [part for part, _ in parts if part is not None]
    for target in changed[0].schema:
        chunks = []
        for (a, b), (part, _) in zip(bounds, parts, strict=True):
            if part is not None:
                chunks.append(part[target.name].combine_chunks())
            elif target.name in table.column_names:
                # rows this run left alone keep their stored values; a struct written before
                # later trailing fields (etag, overview tile tables) gains them as nulls
                kept = table[target.name].slice(a, b - a).combine_chunks()
                chunks.append(kept if kept.type == target.type else kept.cast(target.type))
            else:
                chunks.append(pa.nulls(b - a, target.type))
        column = pa.chunked_array(chunks, type=target.type)
        index = table.schema.get_field_index(target.name)
        table = (table.append_column(target.name, column) if index < 0
                 else table.set_column(index, target.name, column))
    return table


def _write_file(store: Store, entry: FileEntry, info: CollectionInfo,
                bounds: list[tuple[int, int]], parts: list[Any]) -> FileOutcome:
    """Splice the row chunks' enriched columns into the file's rows; write a new data file."""
    stats = EnrichStats()
    failed = [p for p in parts if isinstance(p, _Failed)]
    if failed:
        return FileOutcome(entry, None, stats, next((f for f in failed if f.vanished), failed[0]))
    for _, part_stats in parts:
        stats.add(part_stats)
    if all(part is None for part, _ in parts):
        return FileOutcome(entry, None, stats)
    try:
        table = _splice(read_data_file(store, entry.path), bounds, parts)
        written = write_data_file(store, entry.partition, file_table(table, (), info))
    except Exception as exc:
        return FileOutcome(entry, None, stats, _failure(store, entry, exc))
    return FileOutcome(entry, written, stats)


def _plan_tasks(store: Store, entries: Sequence[FileEntry], info: CollectionInfo, bands, reader,
                only_missing: bool, chunk_rows: int, attempt: int,
                verify: Verification | None = None) -> list[Any]:
    """One write task per data file, depending on one enrichment task per row chunk."""
    tasks = []
    for number, entry in enumerate(entries):
        bounds = _chunk_bounds(entry.rows, chunk_rows)
        parts = [
            dask.delayed(_enrich_rows, pure=False)(
                store, entry, a, b, bands, reader, only_missing, verify,
                dask_key_name=f"enrich-rows-{attempt}-{number}-{a}")
            for a, b in bounds
        ]
        tasks.append(dask.delayed(_write_file, pure=False)(
            store, entry, info, bounds, parts, dask_key_name=f"enrich-write-{attempt}-{number}"))
    return tasks


def _new_fields(collection: Collection, bands: Sequence[str]) -> list[pa.Field]:
    fields = [pa.field(S.metadata_column(b), S.METADATA_TYPE) for b in bands]
    fields.append(pa.field(S.ENRICH_ERRORS, S.ENRICH_ERRORS_TYPE))
    if S.EPSG not in collection.schema.names:
        fields.append(pa.field(S.EPSG, pa.int32()))
    return fields


def _with_columns(info: CollectionInfo, names: Sequence[str], fallback: Sequence[str]
                  ) -> CollectionInfo:
    order = list(info.extra.get("column_order", fallback))
    order += [name for name in names if name not in order]
    return dataclasses.replace(info, extra={**info.extra, "column_order": order})


def _wanted_partitions(collection: Collection, store: Store, latest: Manifest) -> set[Partition]:
    """The partitions this collection's filter reaches (every partition when unfiltered)."""
    if collection.filter is None:
        return set(latest.partitions())
    wanted = set()
    for fragment in collection.fragments():
        partition = parse_partition(store.rel(fragment.path))
        if partition is not None:
            wanted.add(partition)
    return wanted


def _in_memory(collection: Collection, bands, reader, only_missing, started,
               verify: Verification | None) -> EnrichReport:
    import pyarrow.dataset as ds

    from ..collection import Collection

    table, stats = enrich_table(collection.to_table(), bands, reader=reader,
                                only_missing=only_missing, verify=verify)
    report = EnrichReport(partitions_total=1,
                          partitions_rewritten=int(stats.enriched + stats.failed > 0))
    report._count(stats)
    info = dataclasses.replace(collection.info, extra={**collection.info.extra,
                               "column_order": table.column_names})
    report.collection = Collection(ds.dataset(table), info)
    report.seconds = time.perf_counter() - started
    return report


class _Run:
    """The client's side of one enrichment: rounds of tasks, then one commit."""

    def __init__(self, store: Store, latest: Manifest, info: CollectionInfo, run_task) -> None:
        self.store, self.snapshot, self.info, self.run_task = store, latest, info, run_task
        self.pending: dict[Partition, PartitionChange] = {}
        self.stats: dict[Partition, EnrichStats] = {}
        self.failures: dict[Partition, str] = {}
        self.started = time.time()

    def enrich(self, partitions: set[Partition], attempt: int) -> list[Partition]:
        """Run the partitions' tasks on the snapshot's files; returns those whose files went."""
        entries = [e for p in sorted(partitions) for e in self.snapshot.files_of(p)]
        outcomes: dict[Partition, list[FileOutcome]] = {}
        for outcome in self.run_task(entries, attempt):
            outcomes.setdefault(outcome.source.partition, []).append(outcome)
        vanished = []
        for partition in sorted(partitions):
            results = outcomes.get(partition, [])
            written = [o.written for o in results if o.written is not None]
            stats = EnrichStats()
            for outcome in results:
                stats.add(outcome.stats)
            self.stats[partition] = stats
            failures = [o.failure for o in results if o.failure is not None]
            if failures:
                delete(self.store, [w.path for w in written])
                if any(f.vanished for f in failures):
                    vanished.append(partition)
                else:
                    self.failures[partition] = failures[0].message
                continue
            self.failures.pop(partition, None)
            if written:
                replaced = {o.source.path: o.written for o in results if o.written is not None}
                files = self.snapshot.files_of(partition)
                self.pending[partition] = PartitionChange(
                    partition, tuple(replaced.get(e.path, e) for e in files), files)
        return vanished

    def drop(self, partitions: Sequence[Partition]) -> None:
        """Forget (and delete the files of) changes that lost to another writer."""
        for partition in partitions:
            change = self.pending.pop(partition, None)
            if change is not None:
                replaced = {e.path for e in change.replaces}
                delete(self.store, [e.path for e in change.files if e.path not in replaced])


def enrich_collection(
    collection: Collection,
    bands: Sequence[str] | None = None,
    *,
    client=None,
    only_missing: bool = True,
    reader: RangeReader | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool = False,
    verify: Verification | None = None,
) -> EnrichReport:
    """Enrich every partition of an index as Dask tasks and commit them as one new version.

    A Collection not backed by an index (in memory, or a single Parquet file) is enriched in
    memory. With ``verify`` each task first checks its enriched records' objects (one HEAD
    per href, or a sample) and enriches again those that changed since enrichment. Raises ``ConcurrentWriteError`` when other writers keep rewriting the same
    partitions, and :class:`EnrichTaskError` (after committing the rest) when tasks fail.
    """
    from ..collection import load

    started = time.perf_counter()
    reader = reader or RangeReader()
    bands = list(bands) if bands is not None else collection.bands
    unknown = [b for b in bands if b not in collection.bands]
    if unknown:
        raise ValueError(f"unknown band(s) {unknown}; the collection has {collection.bands}")
    if collection.path is None or collection.version is None:
        return _in_memory(collection, bands, reader, only_missing, started, verify)
    store = collection.store()
    latest = open_for_write(store)
    if latest is None:
        raise FileNotFoundError(f"no collection index at {collection.path}")
    fields = _new_fields(collection, bands)
    names = [f.name for f in fields]
    info = _with_columns(latest.info or collection.info, names, collection.schema.names)

    def run_task(entries: list[FileEntry], attempt: int) -> list[FileOutcome]:
        return compute(_plan_tasks(store, entries, info, bands, reader, only_missing, chunk_rows,
                                   attempt, verify), client, progress=progress,
                       description="enrich COG headers")

    run = _Run(store, latest, info, run_task)
    todo = _wanted_partitions(collection, store, latest)
    total = sum(len(latest.files_of(p)) for p in todo)
    for attempt in range(ATTEMPTS):
        vanished = run.enrich(todo, attempt)
        if vanished:
            logger.info("enrich: the files of %s were replaced meanwhile; enriching them again",
                        ", ".join(partition_label(p) for p in vanished))
            run.snapshot, todo = current_version(store), set(vanished)
            continue
        if not run.pending:
            break
        try:
            commit_changes(store, list(run.pending.values()), schema=pa.schema(fields),
                           update_info=lambda now: _with_columns(now or info, names, names),
                           operation="enrich", written_since=run.started)
            break
        except PartitionConflict as conflict:
            logger.info("enrich: another writer rewrote %s meanwhile; enriching them again on "
                        "its files (%d attempt(s) left)",
                        ", ".join(partition_label(p) for p in conflict.partitions),
                        ATTEMPTS - attempt - 1)
            run.drop(conflict.partitions)
            run.snapshot, todo = conflict.latest, set(conflict.partitions)
    else:
        run.drop(list(run.pending))
        labels = ", ".join(partition_label(p) for p in sorted(todo))
        raise ConcurrentWriteError(
            f"the index at {store.url} kept changing while enriching {bands}: partitions "
            f"{labels} were rewritten by other writers in each of {ATTEMPTS} attempts; the "
            "other partitions were not committed either; run again")
    report = EnrichReport(partitions_total=total, partitions_rewritten=sum(
        sum(1 for new, old in zip(c.files, c.replaces, strict=True) if new != old)
        for c in run.pending.values()))
    for stats in run.stats.values():
        report._count(stats)
    report.collection = load(collection.path, storage_options=collection.storage_options)
    if collection.filter is not None:
        report.collection = report.collection.where(collection.filter)
    report.seconds = time.perf_counter() - started
    logger.info("enrich of %s: %s", redact_url(store.url), report)
    if report.failed:
        logger.warning("enrich of %s: %d header(s) failed (reasons in the enrich_errors "
                       "column; first: %s)", redact_url(store.url), report.failed,
                       report.errors[0] if report.errors else "not recorded")
    if run.failures:
        details = "; ".join(f"{partition_label(p)}: {m}" for p, m in sorted(run.failures.items()))
        raise EnrichTaskError(f"enrichment of {store.url} failed for {len(run.failures)} "
                              f"partition(s) (the others were committed): {details}")
    return report
