"""The ``assets`` column of an input table: kept or renamed band assets, assets built from
href columns (one file's samples as bands), href prefix rewrites, the GeoTIFF data assets of
stac-geoparquet. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S

__all__ = ["asset_keys", "assets_from_href_columns", "raster_asset_keys", "rewrite_hrefs",
           "select_assets"]


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
            if index is not None:  # the asset's other fields (raster:bands...) stay
                names = [f.name for f in asset.type if f.name != "band_index"]
                asset = pa.StructArray.from_arrays(
                    [asset.field(n) for n in names] + [pa.array([index] * len(asset), pa.int32())],
                    names=[*names, "band_index"], mask=asset.is_null())
            fields.append(asset)
        chunks.append(pa.StructArray.from_arrays(fields, names=list(mapping)))
    return pa.chunked_array(chunks)


def assets_from_href_columns(table: pa.Table, href_column: str | Mapping[str, str],
                              band_codes, band_index_map: Mapping[str, int] | None) -> pa.Table:
    """Build ``assets`` from href columns: one column whose file holds the bands of
    ``band_index_map`` (each at its sample index), or band -> column (each band at its
    ``band_index_map`` index, default 0)."""
    indices = dict(band_index_map or {})
    if isinstance(href_column, str):
        if indices:
            href_column = dict.fromkeys(indices, href_column)
        else:
            band = (list(band_codes)[0] if band_codes else "data")
            href_column = {band: href_column}
    structs = []
    for band, column in href_column.items():
        if column not in table.column_names:
            raise ValueError(f"href column {column!r} (band {band!r}) not in the table; its "
                             f"columns are {table.column_names}")
        hrefs = table[column].cast(pa.string()).combine_chunks()
        index = int(indices.get(band, 0))
        structs.append(pa.StructArray.from_arrays(
            [hrefs, pa.array([index] * len(hrefs), pa.int32())], fields=list(S.ASSET_TYPE),
            mask=hrefs.is_null()))
    assets = pa.StructArray.from_arrays(structs, names=list(href_column))
    position = table.schema.get_field_index(S.ASSETS)
    if position >= 0:
        return table.set_column(position, S.ASSETS, assets)
    return table.append_column(S.ASSETS, assets)


_RASTER_MEDIA = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")


def raster_asset_keys(table: pa.Table) -> list[str] | None:
    """stac-geoparquet assets (structs with ``type``/``roles``): keys of the GeoTIFF data assets."""
    if S.ASSETS not in table.column_names or not pa.types.is_struct(table.schema.field(S.ASSETS).type):
        return None
    assets = table[S.ASSETS].combine_chunks()
    keys, described = [], False
    for i, field in enumerate(assets.type):
        if not pa.types.is_struct(field.type) or field.type.get_field_index("type") < 0:
            keys.append(field.name)
            continue
        described = True
        media = pc.drop_null(assets.field(i).field("type"))
        first = media[0].as_py() if len(media) else ""
        href = pc.drop_null(assets.field(i).field("href"))
        path = (href[0].as_py() if len(href) else "").split("?", 1)[0].lower()
        if str(first).lower().startswith(_RASTER_MEDIA) or path.endswith((".tif", ".tiff")):
            keys.append(field.name)
    return keys if described else None


def asset_keys(table: pa.Table) -> set[str] | None:
    """The asset keys of a table, ``None`` when its assets are not a struct."""
    if S.ASSETS not in table.column_names or not pa.types.is_struct(table.schema.field(S.ASSETS).type):
        return None
    return {f.name for f in table.schema.field(S.ASSETS).type}
