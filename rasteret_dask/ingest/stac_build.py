"""``build_from_stac``: month-window searches as Dask tasks -> one partition per month -> enrich.

Phase 1 searches every month window in parallel and keeps the rows on the workers; only small
summaries (partition counts, schemas, bands) reach the client. A static catalog is first
walked (one task per child of its root, ``ingest.stac_static``); each month window's task then
keeps the walked items a search would return. Nothing is written unless every
window succeeded. Phase 2 gives each year/month partition its own task: existing rows are kept,
new ids appended, and the result written as a new data file; the client then commits every
changed partition (and the search state) as one version of the index (``index/storage.py``).
If another writer rewrote one of these partitions meanwhile, its append runs again on the new
files (bounded); partitions it did not touch merge. Then enrichment fills the metadata of the
new rows only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S
from ..index.datafiles import file_table, read_data_file, write_data_file
from ..index.geoparquet import CollectionInfo, with_metadata
from ..index.objectstore import Store, delete, open_store
from ..index.storage import (
    ConcurrentWriteError,
    PartitionChange,
    PartitionConflict,
    commit_changes,
    open_for_write,
)
from ..index.versions import FileEntry, Manifest, Partition, partition_label
from ..redact import redact_url
from ..runner import compute, persist
from .stac_changes import ItemSync, changed_ids, gone_ids
from .stac_items import conform_assets
from .stac_search import MonthWindow, StacQuery, month_windows, search_window
from .stac_static import catalog_parts, items_span, static_window, walk_catalog

__all__ = ["StacBuildSummary", "ingest_stac", "conform_table", "partition_rows"]

_PARTITION = list(S.PARTITION_COLUMNS)

logger = logging.getLogger("rasteret_dask.ingest")


@dataclasses.dataclass
class StacBuildSummary:
    """What an ingest did: items found, rows added, partitions written and untouched."""

    windows: int = 0
    items_found: int = 0
    rows_added: int = 0
    partitions_written: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    partitions_unchanged: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    windows_found: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    """Each month window searched (``YYYY-MM``) and the items it found."""
    rows_replaced: list[str] = dataclasses.field(default_factory=list)
    """Ids of items whose ``updated`` (or hrefs) changed: their rows were replaced."""
    items_gone: list[str] = dataclasses.field(default_factory=list)
    """Ids of indexed items in the searched range the search no longer returns."""
    rows_pruned: int = 0
    """Rows of gone items removed (with ``ItemSync.prune``)."""


def _summary(table: pa.Table | None, with_times: bool) -> dict[str, Any]:
    """The little a client needs from a window's rows (they stay where they were searched)."""
    if table is None:
        return {"rows": 0, "partitions": {}, "schema": None, "bands": [], "times": None}
    keys = table.select(_PARTITION).group_by(_PARTITION).aggregate([([], "count_all")])
    partitions = {(r[S.YEAR], r[S.MONTH]): r["count_all"] for r in keys.to_pylist()}
    times = None
    if with_times:
        times = list(zip(table[S.DATETIME].to_pylist(), table[S.ID].to_pylist(), strict=True))
    assets = table[S.ASSETS].combine_chunks()
    bands = [f.name for i, f in enumerate(assets.type)
             if assets.field(i).is_valid().true_count]  # bands no item carries are dropped
    return {"rows": table.num_rows, "partitions": partitions,
            "schema": table.drop_columns(_PARTITION).schema, "bands": bands, "times": times}


def conform_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast ``table`` to ``schema``: same columns in the same order, missing ones null."""
    columns = []
    for field in schema:
        if field.name == S.ASSETS:
            bands = [f.name for f in field.type]
            columns.append(conform_assets(table[S.ASSETS], bands))
        elif field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema.remove_metadata())


def partition_rows(tables: Sequence[pa.Table | None], year: int, month: int) -> pa.Table | None:
    """The rows of one year/month partition across window tables."""
    parts = []
    for table in tables:
        if table is None:
            continue
        mask = pc.and_(pc.equal(table[S.YEAR], year), pc.equal(table[S.MONTH], month))
        parts.append(table.filter(mask))
    parts = [p for p in parts if p.num_rows]
    return pa.concat_tables(parts, promote_options="permissive") if parts else None


def _first_per_id(table: pa.Table) -> pa.Table:
    ids = table[S.ID].combine_chunks()
    indices = pc.index_in(pc.unique(ids), value_set=ids)  # first occurrence of each id
    return table.take(pc.sort_indices(indices))


@dataclasses.dataclass(frozen=True)
class AppendOutcome:
    """What a partition's append task did (small: it travels back to the client)."""

    partition: Partition
    replaces: tuple[FileEntry, ...]
    written: FileEntry | None
    added: int
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    replaced: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    pruned: int = 0


def _append(store: Store, partition: Partition, existing_files: tuple[FileEntry, ...],
            tables: list[pa.Table | None], schema: pa.Schema, info: CollectionInfo,
            cutoff: tuple[Any, str] | None, sync: ItemSync | None = None) -> AppendOutcome:
    """Append new ids to one partition as a new data file (the old ones stay until commit);
    with ``sync`` also replace changed items' rows and find (and prune) gone ones."""
    year, month = (dict(partition)[S.YEAR], dict(partition)[S.MONTH])
    rows = partition_rows(tables, year, month)
    if rows is None and (sync is None or sync.window is None or not existing_files):
        return AppendOutcome(partition, existing_files, None, 0)
    if rows is not None:
        if cutoff is not None:
            keep = [(t, i) <= cutoff for t, i in zip(rows[S.DATETIME].to_pylist(),
                                                      rows[S.ID].to_pylist(), strict=True)]
            rows = rows.filter(pa.array(keep))
        rows = _first_per_id(rows)
    existing = [read_data_file(store, entry.path) for entry in existing_files]
    replaced: set[str] = set()
    gone: list[str] = []
    if sync is not None:
        found = set(rows[S.ID].to_pylist()) if rows is not None else set()
        for table in existing:
            if sync.refresh and rows is not None:
                replaced |= changed_ids(table, rows)
            if sync.window is not None:
                gone += gone_ids(table, found, sync.window)
    drop = replaced | (set(gone) if sync is not None and sync.prune else set())
    if rows is not None and existing:
        known = pa.concat_arrays([t[S.ID].combine_chunks() for t in existing])
        fresh = pc.invert(pc.is_in(rows[S.ID], value_set=known))
        if replaced:
            fresh = pc.or_(fresh, pc.is_in(rows[S.ID], value_set=pa.array(sorted(replaced))))
        rows = rows.filter(fresh)
    added = 0 if rows is None else rows.num_rows - len(replaced)
    if (rows is None or rows.num_rows == 0) and not drop:
        return AppendOutcome(partition, existing_files, None, 0, gone=tuple(gone))
    if drop:
        dropped = pa.array(sorted(drop))
        existing = [t.filter(pc.invert(pc.is_in(t[S.ID], value_set=dropped))) for t in existing]
    # the partition keeps every column its files have (another writer's metadata included;
    # files enriched before a struct's trailing fields existed conform to the current type)
    kept = {f.name: pa.field(f.name, S.METADATA_TYPE) if S.is_metadata_column(f.name, f.type)
            else f for t in existing for f in t.schema if f.name not in schema.names}
    schema = pa.schema([*schema, *kept.values()])
    parts = [conform_table(t, schema) for t in existing]
    if rows is not None and rows.num_rows:
        parts.append(conform_table(rows.drop_columns(_PARTITION), schema))
    merged = pa.concat_tables(parts)
    pruned = len(set(gone) & drop)
    written = write_data_file(store, partition, file_table(merged, (), info))
    first = last = None
    if rows is not None and rows.num_rows:
        first, last = pc.min(rows[S.DATETIME]).as_py(), pc.max(rows[S.DATETIME]).as_py()
    return AppendOutcome(partition, existing_files, written, added, first, last,
                         tuple(sorted(replaced)), tuple(gone), pruned)


def _unified_schema(schemas: list[pa.Schema], existing: pa.Schema | None, bands: list[str]
                    ) -> pa.Schema:
    plain = [s.remove_metadata() for s in ([existing] if existing is not None else []) + schemas]
    without = [pa.schema([f for f in s if f.name != S.ASSETS]) for s in plain]
    unified = pa.unify_schemas(without, promote_options="permissive")
    fields = list(unified)
    position = plain[0].get_field_index(S.ASSETS)
    fields.insert(position if position >= 0 else len(fields), pa.field(S.ASSETS, S.assets_type(bands)))
    return pa.schema(fields)


def _cutoff(summaries: list[dict], max_items: int | None) -> tuple[Any, str] | None:
    if max_items is None:
        return None
    stamps = sorted(t for s in summaries for t in (s["times"] or []))
    if len(stamps) <= max_items:
        return None
    return stamps[max_items - 1] if max_items > 0 else (dt.datetime.min, "")


def _merged_windows(old: Sequence[Sequence[str]], new: tuple[str, str]) -> list[list[str]]:
    spans = sorted([list(w) for w in old] + [list(new)])
    merged: list[list[str]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _span(info: CollectionInfo | None, outcomes: Sequence[AppendOutcome]) -> tuple[str, str] | None:
    """The index's date range widened by the rows just added."""
    stamps = [s for o in outcomes for s in (o.first, o.last) if s is not None]
    if info is not None and info.date_range is not None:
        stamps += [dt.datetime.fromisoformat(v) for v in info.date_range]
    if not stamps:
        return None
    aware = [s if s.tzinfo else s.replace(tzinfo=dt.UTC) for s in stamps]
    return min(aware).isoformat(), max(aware).isoformat()


def _updated_info(now: CollectionInfo | None, base: CollectionInfo, schema: pa.Schema,
                  stac_state: Mapping[str, Any], outcomes: Sequence[AppendOutcome]
                  ) -> CollectionInfo:
    """The new collection metadata over whatever version is latest at commit time."""
    current = now or base
    bands = list(current.bands) + [b for b in base.bands if b not in current.bands]
    order = list(current.extra.get("column_order", []))
    order += [n for n in [*base.extra.get("column_order", []), *schema.names] if n not in order]
    order += [c for c in _PARTITION if c not in order]
    old_state = current.extra.get("stac") or {}
    state = {**stac_state, "searched": _merged_windows(
        [*old_state.get("searched", []), *stac_state["searched"]], stac_state["searched"][-1])}
    return dataclasses.replace(
        current, name=base.name, data_source=base.data_source, description=base.description,
        bands=tuple(bands), date_range=_span(now, outcomes),
        extra={**current.extra, "column_order": order, "stac": state})


def _append_tasks(store: Store, snapshot: Manifest | None, partitions: Sequence[Partition],
                  tables: list[Any], summaries: list[dict], schema: pa.Schema,
                  info: CollectionInfo, cutoff, attempt: int,
                  sync: ItemSync | None = None) -> list[Any]:
    tasks = []
    for partition in partitions:
        key = (dict(partition)[S.YEAR], dict(partition)[S.MONTH])
        inputs = [t for t, s in zip(tables, summaries, strict=True) if key in s["partitions"]]
        existing = snapshot.files_of(partition) if snapshot is not None else ()
        tasks.append(dask.delayed(_append, pure=False)(
            store, partition, existing, inputs, schema, info, cutoff, sync,
            dask_key_name=f"stac-append-{key[0]}-{key[1]:02d}-{attempt}-"
                          f"{dask.base.tokenize(store.url, schema, existing)}"))
    return tasks


ATTEMPTS = 5
"""Rounds of appends and commit before concurrent writers make an ingest give up."""


def _window_tasks(spec: StacQuery, date_range: Sequence[Any] | None, client: Any,
                  progress: bool = False) -> tuple[list[MonthWindow], list[Any]]:
    """The month windows and their persisted row tables (API searches, or a static walk)."""
    if not spec.is_static:
        if date_range is None:
            raise ValueError("date_range is required to search a STAC API")
        windows = month_windows(date_range)
        searches = [dask.delayed(search_window, pure=False)(
            spec, w, dask_key_name=f"stac-search-{w.year}-{w.month:02d}-"
                                   f"{dask.base.tokenize(spec, w)}") for w in windows]
        return windows, persist(searches, client, progress=progress,
                                description="STAC search (month windows)")
    parts = catalog_parts(spec)
    walks = persist([dask.delayed(walk_catalog, pure=False)(
        spec, part, dask_key_name=f"stac-walk-{n}-{dask.base.tokenize(spec, part)}")
        for n, part in enumerate(parts)], client, progress=progress,
        description="STAC catalog walk")
    if date_range is None:
        span = compute([dask.delayed(items_span)(walks)], client)[0]
        if span is None:
            raise ValueError(f"the static STAC catalog {spec.stac_api} has no items"
                             + (f" of collection {spec.collection!r}" if spec.collection else ""))
        date_range = span
    windows = month_windows(date_range)
    filters = [dask.delayed(static_window, pure=False)(
        spec, w, *walks, dask_key_name=f"stac-static-{w.year}-{w.month:02d}-"
                                       f"{dask.base.tokenize(spec, w)}") for w in windows]
    return windows, persist(filters, client, progress=progress,
                            description="STAC items (month windows)")


def ingest_stac(spec: StacQuery, date_range: Sequence[Any] | None, root: str | os.PathLike, *,
                name: str, data_source: str | None, description: str | None,
                client: Any = None, storage_options: dict | None = None,
                sync: ItemSync | None = None, progress: bool = False) -> StacBuildSummary:
    """Search ``date_range`` month by month and commit new items into the index at ``root``.

    ``root`` is a local folder or an fsspec URL; a folder holding anything but an index is
    refused before any search. For a static catalog ``date_range`` may be None (the span of
    its items). With ``sync`` (re-enrichment) items already indexed are compared too: rows of
    changed items are replaced, and items of the searched range the search no longer returns
    are reported (and removed with ``sync.prune``); its ``window`` is set to the searched
    range here. ``progress`` shows the searches' and the partition writes' progress.
    """
    store = open_store(root, storage_options)
    base = open_for_write(store)
    old_info = base.info if base is not None else None
    existing_schema = base.schema if base is not None else None
    windows, tables = _window_tasks(spec, date_range, client, progress)
    summaries = compute([dask.delayed(_summary)(t, spec.max_items is not None) for t in tables],
                        client)
    summary = StacBuildSummary(windows=len(windows), items_found=sum(s["rows"] for s in summaries),
                               windows_found=[(f"{w.year:04d}-{w.month:02d}", s["rows"])
                                              for w, s in zip(windows, summaries, strict=True)])
    logger.info("stac-ingest: %d item(s) found at %s in %d month window(s)",
                summary.items_found, redact_url(spec.stac_api), len(windows))
    bands = list(old_info.bands) if old_info is not None else []
    for s in summaries:
        bands += [b for b in s["bands"] if b not in bands]
    schemas = [s["schema"] for s in summaries if s["schema"] is not None]
    searched = (windows[0].start.isoformat(), windows[-1].end.isoformat())
    stac_state = {
        "api": spec.stac_api, "collection": spec.collection, "bbox": spec.bbox,
        "intersects": spec.intersects, "query": spec.query, "static_catalog": spec.is_static,
        "band_map": dict(spec.band_map or {}) or None,
        "band_index_map": dict(spec.band_index_map or {}) or None,
        "searched": [list(searched)],
        "last_run": dt.datetime.now(dt.UTC).isoformat(),
    }
    if not schemas and existing_schema is None:
        what = (f"items of collection {spec.collection!r}" if spec.collection else "items")
        source = (f"the static STAC catalog {spec.stac_api}" if spec.is_static
                  else f"the STAC search at {spec.stac_api}")
        raise ValueError(f"{source} found no {what} in {searched[0]} .. {searched[1]}"
                         + (f" within bbox {spec.bbox}" if spec.bbox else "")
                         + (f" matching query {spec.query}" if spec.query else ""))
    schema = _unified_schema(schemas, existing_schema, bands)
    order = list(old_info.extra.get("column_order", [])) if old_info else []
    order += [n for n in schema.names if n not in order]
    order += [c for c in _PARTITION if c not in order]
    start = old_info or CollectionInfo(name=name)
    info = dataclasses.replace(
        start, name=name, data_source=data_source or start.data_source,
        description=description or start.description, bands=tuple(bands),
        extra={**start.extra, "column_order": order})
    commit_schema = schema
    if schemas:
        first = next(t for t, s in zip(tables, summaries, strict=True) if s["rows"])
        sample = conform_table(compute([first], client)[0].drop_columns(_PARTITION), schema)
        commit_schema = schema.with_metadata(with_metadata(sample, info).schema.metadata)
    cutoff = _cutoff(summaries, spec.max_items)
    keys = {k for s in summaries for k in s["partitions"]}
    if sync is not None and cutoff is None:  # a complete search: gone items can be told
        sync = dataclasses.replace(sync, window=(windows[0].start, windows[-1].end))
        if base is not None:
            keys |= {(dict(p)[S.YEAR], dict(p)[S.MONTH]) for p in base.partitions()
                     if (windows[0].start.year, windows[0].start.month)
                     <= (dict(p)[S.YEAR], dict(p)[S.MONTH])
                     <= (windows[-1].end.year, windows[-1].end.month)}
    elif sync is not None:
        sync = dataclasses.replace(sync, window=None)
    todo: list[Partition] = [((S.YEAR, y), (S.MONTH, m)) for y, m in sorted(keys)]
    snapshot = base
    outcomes: dict[Partition, AppendOutcome] = {}
    for attempt in range(ATTEMPTS):
        for outcome in compute(_append_tasks(store, snapshot, todo, tables, summaries, schema,
                                          info, cutoff, attempt, sync), client,
                               progress=progress, description="STAC partitions written"):
            outcomes[outcome.partition] = outcome
        changes = [PartitionChange(o.partition, (o.written,), o.replaces)
                   for o in outcomes.values() if o.written is not None]
        try:
            commit_changes(store, changes, schema=commit_schema, operation="stac-ingest",
                           update_info=lambda now: _updated_info(now, info, schema, stac_state,
                                                                 list(outcomes.values())))
            break
        except PartitionConflict as conflict:
            logger.info("stac-ingest: another writer rewrote %s meanwhile; appending to its "
                        "files again (%d attempt(s) left)",
                        ", ".join(partition_label(p) for p in conflict.partitions),
                        ATTEMPTS - attempt - 1)
            for partition in conflict.partitions:
                lost = outcomes.pop(partition, None)
                if lost is not None and lost.written is not None:
                    delete(store, [lost.written.path])
            snapshot, todo = conflict.latest, list(conflict.partitions)
    else:
        delete(store, [o.written.path for o in outcomes.values() if o.written is not None])
        labels = ", ".join(partition_label(p) for p in todo)
        raise ConcurrentWriteError(
            f"the index at {store.url} kept changing while adding STAC items: partitions "
            f"{labels} were rewritten by other writers in each of {ATTEMPTS} attempts; "
            "nothing was changed; run again")
    for partition in sorted(outcomes):
        outcome = outcomes[partition]
        key = (dict(partition)[S.YEAR], dict(partition)[S.MONTH])
        summary.rows_added += outcome.added
        summary.rows_replaced += outcome.replaced
        summary.items_gone += outcome.gone
        summary.rows_pruned += outcome.pruned
        (summary.partitions_written if outcome.written is not None
         else summary.partitions_unchanged).append(key)
    return summary
