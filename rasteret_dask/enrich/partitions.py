"""Enrichment of a partitioned index as Dask tasks: one per partition (or row chunk of a large one).

Each partition's task reads its rows, fetches all their headers concurrently, fills the metadata
columns and atomically replaces its own partition file. A large partition is split into row
chunks whose results a final task splices in. Partitions with nothing to do are not rewritten.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import pyarrow as pa
import pyarrow.parquet as pq

from .. import schema as S
from ..index.geoparquet import CollectionInfo
from ..index.storage import partition_values, replace_partition, update_common_schema
from ..io import RangeReader
from .table import EnrichStats, enrich_table

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["EnrichReport", "enrich_collection", "DEFAULT_CHUNK_ROWS"]

DEFAULT_CHUNK_ROWS = 5_000


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

    def __str__(self) -> str:
        return (
            f"enriched {self.enriched}, failed {self.failed}, skipped {self.skipped} band-records; "
            f"rewrote {self.partitions_rewritten} of {self.partitions_total} partitions "
            f"in {self.seconds:.2f} s"
        )


def _enrich_rows(file: str, start: int, stop: int, bands: Sequence[str], reader: RangeReader,
                 only_missing: bool) -> tuple[pa.Table | None, EnrichStats]:
    """Enrich rows [start, stop) of one partition file; None when nothing in them changed."""
    table = pq.read_table(file).slice(start, stop - start)
    enriched, stats = enrich_table(table, bands, reader=reader, only_missing=only_missing)
    if stats.enriched + stats.failed == 0:
        return None, stats
    if S.EPSG not in enriched.column_names:
        enriched = enriched.append_column(S.EPSG, pa.nulls(enriched.num_rows, pa.int32()))
    columns = [S.metadata_column(b) for b in bands] + [S.ENRICH_ERRORS, S.EPSG]
    if stats.enriched == 0 and all(c in table.column_names for c in columns) and \
            enriched.select(columns).equals(table.select(columns)):
        return None, stats  # only retried failures, failing the same way: nothing to rewrite
    return enriched.select(columns), stats


def _chunk_bounds(num_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) row chunks of at most ``chunk_rows`` rows (at least one)."""
    starts = range(0, max(num_rows, 1), max(chunk_rows, 1))
    return [(a, min(a + chunk_rows, num_rows)) for a in starts]


def _commit(root: str, file: str, info: CollectionInfo, bounds: list[tuple[int, int]],
            parts: list[tuple[pa.Table | None, EnrichStats]]) -> tuple[EnrichStats, bool]:
    """Splice the row chunks' enriched columns into the partition and replace it atomically."""
    stats = EnrichStats()
    for _, part_stats in parts:
        stats.add(part_stats)
    changed = [table for table, _ in parts if table is not None]
    if not changed:
        return stats, False
    table = pq.read_table(file)
    for target in changed[0].schema:
        chunks = []
        for (a, b), (part, _) in zip(bounds, parts, strict=True):
            if part is not None:
                chunks.append(part[target.name].combine_chunks())
            elif target.name in table.column_names:
                chunks.append(table[target.name].slice(a, b - a).combine_chunks())
            else:
                chunks.append(pa.nulls(b - a, target.type))
        column = pa.chunked_array(chunks, type=target.type)
        index = table.schema.get_field_index(target.name)
        table = (table.append_column(target.name, column) if index < 0
                 else table.set_column(index, target.name, column))
    replace_partition(root, partition_values(Path(root), Path(file)), table, info)
    return stats, True


def _plan_tasks(files: list[tuple[str, int]], root: str, info: CollectionInfo, bands, reader,
                only_missing: bool, chunk_rows: int) -> list[Any]:
    """One commit task per partition, depending on one enrichment task per row chunk."""
    tasks = []
    for number, (file, num_rows) in enumerate(files):
        bounds = _chunk_bounds(num_rows, chunk_rows)
        parts = [
            dask.delayed(_enrich_rows, pure=False)(
                file, a, b, bands, reader, only_missing,
                dask_key_name=f"enrich-rows-{number}-{a}")
            for a, b in bounds
        ]
        tasks.append(dask.delayed(_commit, pure=False)(
            root, file, info, bounds, parts, dask_key_name=f"enrich-commit-{number}"))
    return tasks


def _run(tasks: list[Any], client, progress: bool) -> list[Any]:
    from ..cluster import active_client

    client = active_client(client)
    if client is not None:
        futures = client.compute(tasks)
        if progress:
            from distributed import progress as show_progress

            show_progress(futures)
        return client.gather(futures)
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar(minimum=1.0):
            return list(dask.compute(*tasks, scheduler="threads"))
    return list(dask.compute(*tasks, scheduler="threads"))


def enrich_collection(
    collection: Collection,
    bands: Sequence[str] | None = None,
    *,
    client=None,
    only_missing: bool = True,
    reader: RangeReader | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool = False,
) -> EnrichReport:
    """Enrich every partition of an exported collection as Dask tasks; in memory otherwise."""
    from ..collection import Collection, load

    started = time.perf_counter()
    reader = reader or RangeReader()
    bands = list(bands) if bands is not None else collection.bands
    unknown = [b for b in bands if b not in collection.bands]
    if unknown:
        raise ValueError(f"unknown band(s) {unknown}; the collection has {collection.bands}")
    report = EnrichReport()
    if collection.path is None:
        table, stats = enrich_table(collection.to_table(), bands, reader=reader,
                                    only_missing=only_missing)
        report.enriched, report.failed, report.skipped = stats.enriched, stats.failed, stats.skipped
        report.errors, report.partitions_total = stats.errors, 1
        report.partitions_rewritten = int(stats.enriched + stats.failed > 0)
        import pyarrow.dataset as ds

        info = dataclasses.replace(collection.info, extra={**collection.info.extra,
                                   "column_order": table.column_names})
        report.collection = Collection(ds.dataset(table), info)
        report.seconds = time.perf_counter() - started
        return report
    root = collection.path
    new_fields = [pa.field(S.metadata_column(b), S.METADATA_TYPE) for b in bands]
    new_fields.append(pa.field(S.ENRICH_ERRORS, S.ENRICH_ERRORS_TYPE))
    if S.EPSG not in collection.schema.names:
        new_fields.append(pa.field(S.EPSG, pa.int32()))
    order = collection.info.extra.get("column_order", collection.schema.names)
    order = order + [f.name for f in new_fields if f.name not in order]
    info = dataclasses.replace(collection.info, extra={**collection.info.extra, "column_order": order})
    update_common_schema(root, new_fields, info)
    fragments = collection.fragments()
    files = [(f.path, f.metadata.num_rows) for f in fragments]
    tasks = _plan_tasks(files, root, info, bands, reader, only_missing, chunk_rows)
    for stats, rewritten in _run(tasks, client, progress):
        report.enriched += stats.enriched
        report.failed += stats.failed
        report.skipped += stats.skipped
        report.errors.extend(stats.errors[: max(0, 50 - len(report.errors))])
        report.partitions_rewritten += int(rewritten)
    report.partitions_total = len(files)
    report.collection = load(root)
    if collection.filter is not None:
        report.collection = report.collection.where(collection.filter)
    report.seconds = time.perf_counter() - started
    return report
