"""One call from a table or a (stac-)GeoParquet file to an enriched, exported, partitioned index."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import schema as S
from .collection import Collection, build_collection_from_table
from .index.normalize import as_arrow_table

__all__ = ["build_from_table", "DEFAULT_WORKSPACE", "rewrite_hrefs", "select_assets"]

DEFAULT_WORKSPACE = "rasteret_workspace"


def rewrite_hrefs(assets: pa.ChunkedArray, patterns: Mapping[str, str]) -> pa.ChunkedArray:
    """Replace href prefixes (``{"s3://bucket/": "https://bucket.s3.amazonaws.com/"}``)."""
    chunks = []
    for chunk in assets.chunks:
        fields = []
        for i in range(chunk.type.num_fields):
            asset = chunk.field(i)
            href = asset.field("href")
            for old, new in patterns.items():
                href = pc.replace_substring_regex(href, "^" + re.escape(old), new.replace("\\", "\\\\"))
            fields.append(pa.StructArray.from_arrays(
                [href, asset.field("band_index")], fields=list(S.ASSET_TYPE), mask=asset.is_null()))
        chunks.append(pa.StructArray.from_arrays(fields, names=[f.name for f in chunk.type]))
    return pa.chunked_array(chunks)


def select_assets(assets: pa.ChunkedArray, band_codes: Mapping[str, str] | Sequence[str],
                  band_index_map: Mapping[str, int] | None = None) -> pa.ChunkedArray:
    """Keep (and rename) the asset keys that are bands: ``{band_code: asset_key}`` or a list."""
    mapping = dict(band_codes) if isinstance(band_codes, Mapping) else {b: b for b in band_codes}
    chunks = []
    for chunk in assets.chunks:
        keys = [f.name for f in chunk.type]
        missing = [key for key in mapping.values() if key not in keys]
        if missing:
            raise ValueError(f"asset key(s) {missing} not in the table's assets {keys}")
        fields = []
        for band, key in mapping.items():
            asset = chunk.field(keys.index(key))
            index = (band_index_map or {}).get(band)
            if index is not None:
                asset = pa.StructArray.from_arrays(
                    [asset.field("href"), pa.array([index] * len(asset), pa.int32())],
                    fields=list(S.ASSET_TYPE), mask=asset.is_null())
            fields.append(asset)
        chunks.append(pa.StructArray.from_arrays(fields, names=list(mapping)))
    return pa.chunked_array(chunks)


def _assets_from_href_columns(table: pa.Table, href_column: str | Mapping[str, str],
                              band_codes) -> pa.Table:
    """Build ``assets`` from per-band href columns (a plain table of file paths)."""
    if isinstance(href_column, str):
        band = (list(band_codes)[0] if band_codes else "data")
        href_column = {band: href_column}
    structs = []
    for column in href_column.values():
        if column not in table.column_names:
            raise ValueError(f"href column {column!r} not in the table")
        hrefs = table[column].cast(pa.string()).combine_chunks()
        structs.append(pa.StructArray.from_arrays(
            [hrefs, pa.array([0] * len(hrefs), pa.int32())], fields=list(S.ASSET_TYPE),
            mask=hrefs.is_null()))
    assets = pa.StructArray.from_arrays(structs, names=list(href_column))
    return table.append_column(S.ASSETS, assets)


def build_from_table(
    table_or_path: Any,
    *,
    name: str,
    workspace_dir: str | os.PathLike | None = None,
    enrich_cog: bool = True,
    band_codes: Mapping[str, str] | Sequence[str] | None = None,
    column_map: Mapping[str, str] | None = None,
    href_column: str | Mapping[str, str] | None = None,
    band_index_map: Mapping[str, int] | None = None,
    url_rewrite_patterns: Mapping[str, str] | None = None,
    data_source: str | None = None,
    storage_options: dict | None = None,
    client: Any = None,
    progress: bool = True,
) -> Collection:
    """Normalise, export (``workspace_dir/name``, partitioned) and enrich a table or Parquet file.

    ``workspace_dir`` defaults to ``./rasteret_workspace`` (relative to the working directory).
    """
    if isinstance(table_or_path, str | os.PathLike):
        table = pq.read_table(table_or_path)
    else:
        table = as_arrow_table(table_or_path)
    if column_map:
        table = table.rename_columns([column_map.get(c, c) for c in table.column_names])
    if href_column is not None:
        table = _assets_from_href_columns(table, href_column, band_codes)
    elif band_codes is not None and S.ASSETS in table.column_names:
        table = table.set_column(table.schema.get_field_index(S.ASSETS), S.ASSETS,
                                 select_assets(table[S.ASSETS], band_codes, band_index_map))
    collection = build_collection_from_table(table, name=name, data_source=data_source)
    if url_rewrite_patterns:
        normalized = collection.to_table()
        normalized = normalized.set_column(
            normalized.schema.get_field_index(S.ASSETS), S.ASSETS,
            rewrite_hrefs(normalized[S.ASSETS], url_rewrite_patterns))
        collection = build_collection_from_table(normalized, name=name, data_source=data_source)
    root = Path(workspace_dir if workspace_dir is not None else DEFAULT_WORKSPACE) / name
    collection = collection.export(root)
    if enrich_cog:
        report = collection.enrich(client=client, storage_options=storage_options, progress=progress)
        collection = report.collection
    return collection
