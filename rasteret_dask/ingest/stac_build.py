"""``build_from_stac``: month-window searches as Dask tasks -> one partition per month -> enrich.

Phase 1 searches every month window in parallel and keeps the rows on the workers; only small
summaries (partition counts, schemas, bands) reach the client. Nothing is written unless every
window succeeded. Phase 2 writes each year/month partition in its own task: existing rows are
kept, new ids appended, and the partition is replaced atomically. Then enrichment fills the
metadata of the new rows only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import schema as S
from ..index.geoparquet import CollectionInfo
from ..index.storage import (
    COMMON_METADATA,
    PART_NAME,
    partition_path,
    recover,
    replace_partition,
    write_common_metadata,
)
from .stac_items import conform_assets
from .stac_search import MonthWindow, StacQuery, month_windows, search_window

__all__ = ["StacBuildSummary", "ingest_stac", "conform_table", "partition_rows"]

_PARTITION = list(S.PARTITION_COLUMNS)


@dataclasses.dataclass
class StacBuildSummary:
    """What an ingest did: items found, rows added, partitions written and untouched."""

    windows: int = 0
    items_found: int = 0
    rows_added: int = 0
    partitions_written: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    partitions_unchanged: list[tuple[int, int]] = dataclasses.field(default_factory=list)


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


def _commit(root: str, year: int, month: int, tables: list[pa.Table | None], schema: pa.Schema,
            info: CollectionInfo, cutoff: tuple[Any, str] | None) -> tuple[int, int, int]:
    """Append new ids to one partition and replace it atomically; returns (year, month, added)."""
    rows = partition_rows(tables, year, month)
    if rows is None:
        return year, month, 0
    if cutoff is not None:
        keep = [(t, i) <= cutoff for t, i in zip(rows[S.DATETIME].to_pylist(),
                                                  rows[S.ID].to_pylist(), strict=True)]
        rows = rows.filter(pa.array(keep))
    rows = _first_per_id(rows)
    target = partition_path(Path(root), {S.YEAR: year, S.MONTH: month}) / PART_NAME
    existing = pq.read_table(target) if target.exists() else None
    if existing is not None:
        rows = rows.filter(pc.invert(pc.is_in(rows[S.ID], value_set=existing[S.ID].combine_chunks())))
    if rows.num_rows == 0:
        return year, month, 0
    merged = conform_table(rows.drop_columns(_PARTITION), schema)
    if existing is not None:
        merged = pa.concat_tables([conform_table(existing, schema), merged])
    replace_partition(root, {S.YEAR: year, S.MONTH: month}, merged, info)
    return year, month, rows.num_rows


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


def _run(tasks: list[Any], client: Any, persist: bool = False) -> list[Any]:
    if client is not None:
        return list(client.persist(tasks)) if persist else client.gather(client.compute(tasks))
    if persist:
        return list(dask.persist(*tasks, scheduler="threads"))
    return list(dask.compute(*tasks, scheduler="threads"))


def _merged_windows(old: Sequence[Sequence[str]], new: tuple[str, str]) -> list[list[str]]:
    spans = sorted([list(w) for w in old] + [list(new)])
    merged: list[list[str]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def ingest_stac(spec: StacQuery, date_range: Sequence[Any], root: str | os.PathLike, *,
                name: str, data_source: str | None, description: str | None,
                client: Any = None) -> StacBuildSummary:
    """Search ``date_range`` month by month and write new items into the partitions at ``root``."""
    from ..collection import load

    windows: list[MonthWindow] = month_windows(date_range)
    root = Path(root)
    old_info: CollectionInfo | None = None
    existing_schema = None
    if (root / COMMON_METADATA).exists():
        recover(root)
        existing_schema = pq.read_schema(root / COMMON_METADATA)
        old_info = load(root).info
    searches = [dask.delayed(search_window, pure=False)(
        spec, w, dask_key_name=f"stac-search-{w.year}-{w.month:02d}-{dask.base.tokenize(spec, w)}")
        for w in windows]
    tables = _run(searches, client, persist=True)
    summaries = _run([dask.delayed(_summary)(t, spec.max_items is not None) for t in tables], client)
    summary = StacBuildSummary(windows=len(windows), items_found=sum(s["rows"] for s in summaries))
    bands = list(old_info.bands) if old_info is not None else []
    for s in summaries:
        bands += [b for b in s["bands"] if b not in bands]
    schemas = [s["schema"] for s in summaries if s["schema"] is not None]
    searched = (windows[0].start.isoformat(), windows[-1].end.isoformat())
    stac_state = {
        "api": spec.stac_api, "collection": spec.collection, "bbox": spec.bbox,
        "intersects": spec.intersects, "query": spec.query,
        "band_map": dict(spec.band_map or {}) or None,
        "band_index_map": dict(spec.band_index_map or {}) or None,
        "searched": _merged_windows((old_info.extra.get("stac") or {}).get("searched", [])
                                    if old_info else [], searched),
        "last_run": dt.datetime.now(dt.UTC).isoformat(),
    }
    if not schemas and existing_schema is None:
        raise ValueError(f"the STAC search of {spec.collection!r} at {spec.stac_api} found no "
                         f"items in {searched[0]} .. {searched[1]}"
                         + (f" within bbox {spec.bbox}" if spec.bbox else ""))
    schema = _unified_schema(schemas, existing_schema, bands)
    order = list(old_info.extra.get("column_order", [])) if old_info else []
    order += [n for n in schema.names if n not in order]
    order += [c for c in _PARTITION if c not in order]
    base = old_info or CollectionInfo(name=name)
    info = dataclasses.replace(
        base, name=name, data_source=data_source or base.data_source,
        description=description or base.description, bands=tuple(bands),
        extra={**base.extra, "column_order": order, "stac": stac_state})
    sample = None
    if schemas:
        first = next(t for t, s in zip(tables, summaries, strict=True) if s["rows"])
        sample = conform_table(_run([first], client)[0].drop_columns(_PARTITION), schema)
    write_common_metadata(root, schema, info, sample=sample)
    keys = sorted({k for s in summaries for k in s["partitions"]})
    cutoff = _cutoff(summaries, spec.max_items)
    commits = []
    for year, month in keys:
        inputs = [t for t, s in zip(tables, summaries, strict=True) if (year, month) in s["partitions"]]
        commits.append(dask.delayed(_commit, pure=False)(
            str(root), year, month, inputs, schema, info, cutoff,
            dask_key_name=f"stac-commit-{year}-{month:02d}-{dask.base.tokenize(root, schema)}"))
    for year, month, added in _run(commits, client):
        summary.rows_added += added
        (summary.partitions_written if added else summary.partitions_unchanged).append((year, month))
    span = load(root).date_range()
    if span is not None:
        info = dataclasses.replace(info, date_range=(span[0].isoformat(), span[1].isoformat()))
        write_common_metadata(root, pq.read_schema(root / COMMON_METADATA), info)
    return summary
