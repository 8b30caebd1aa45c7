"""Validate an input table against the index contract and derive the missing columns.

Accepts Arrow tables (and anything Arrow can import), pandas and geopandas frames
(``index.inputs``); assets as a struct, a map or a JSON string column; geometry as WKB,
GeoArrow WKB, WKT or shapely objects, in the CRS the column declares (reprojected to CRS84,
``index.geometry_input``) or null (filled from the header at enrichment:
:func:`fill_missing_footprints`); timestamps, dates, ISO text or integer years
(``index.times``); ``proj:epsg`` derived from the projection columns (``index.projection``);
``raster_bands`` from the assets' STAC band descriptions (``index.raster_bands``).
Every user column survives with its type. Stored footprints are CRS84: coordinates outside
[-180, 180] x [-90, 90] are refused, polygons crossing the antimeridian are split at +/-180
(``index.footprints``). Derived columns (``scene_bbox``, ``bbox_*``, the ``bbox`` covering,
``year``, ``month``) are always computed from ``geometry`` and ``datetime``; input values of
them are replaced, never trusted (records without a footprint get null bbox columns).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from .. import schema as S
from .footprints import (
    crossing_mask,
    header_footprints,
    lonlat_bounds,
    out_of_range_mask,
    split_at_antimeridian,
)
from .geometry_input import NOT_WKB_HINT, declared_crs, decode_footprints, is_crs84, to_crs84
from .inputs import as_arrow_table
from .projection import derive_epsg
from .raster_bands import raster_bands_of_assets
from .times import to_utc

__all__ = ["as_arrow_table", "normalize_table", "conform_metadata_array",
           "fill_missing_footprints", "MAX_REPORTED_IDS"]

MAX_REPORTED_IDS = 5


class _Problems:
    """Collects every contract violation so one ValueError can name them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def raise_if_any(self) -> None:
        if self.items:
            lines = "\n".join(f"  - {m}" for m in self.items)
            raise ValueError(f"table does not satisfy the collection contract:\n{lines}")


def _row_ids(ids: pa.ChunkedArray, mask: pa.ChunkedArray | np.ndarray) -> str:
    """The first ids (or row numbers when ids are unusable) where mask is true, for messages."""
    rows = np.flatnonzero(np.asarray(mask, dtype=bool))
    shown = []
    for r in rows[:MAX_REPORTED_IDS]:
        value = ids[int(r)].as_py() if ids is not None else None
        shown.append(f"row {int(r)}" if value is None else repr(value))
    more = f" (+{len(rows) - MAX_REPORTED_IDS} more)" if len(rows) > MAX_REPORTED_IDS else ""
    return ", ".join(shown) + more


def _normalize_ids(table: pa.Table, problems: _Problems) -> pa.ChunkedArray | None:
    ids = table[S.ID]
    if pa.types.is_integer(ids.type) or pa.types.is_large_string(ids.type):
        ids = ids.cast(pa.string())
    if not pa.types.is_string(ids.type):
        problems.add(f"column 'id' must be string, got {ids.type}")
        return None
    nulls = ids.is_null()
    if pc.any(nulls).as_py():
        problems.add(f"null id at {_row_ids(None, nulls.to_numpy(zero_copy_only=False))}")
    counts = pc.value_counts(ids.drop_null())
    dup = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    if len(dup):
        shown = ", ".join(repr(v) for v in dup[:MAX_REPORTED_IDS].to_pylist())
        more = f" (+{len(dup) - MAX_REPORTED_IDS} more)" if len(dup) > MAX_REPORTED_IDS else ""
        problems.add(f"duplicate id {shown}{more}")
    return ids


def _bounds_problem(ids, geoms: np.ndarray, outside: np.ndarray, crs) -> str:
    bounds = shapely.bounds(geoms)
    first = int(np.flatnonzero(outside)[0])
    record = _row_ids(ids, np.arange(len(geoms)) == first)
    box = ", ".join(f"{v:.6g}" for v in bounds[first])
    more = int(outside.sum()) - 1
    others = f" (and {more} more record{'s' if more != 1 else ''})" if more else ""
    if crs is not None:
        return (f"footprint of record {record} has bounds ({box}) outside CRS84 longitude/"
                f"latitude [-180, 180] x [-90, 90] after reprojection from {crs.to_string()}"
                f"{others}: check the CRS the geometry column declares")
    return (f"footprint of record {record} has bounds ({box}) outside CRS84 longitude/latitude "
            f"[-180, 180] x [-90, 90]{others}: footprints must be in OGC:CRS84 (EPSG:4326 axis "
            "order lon, lat); reproject them to EPSG:4326 before building the index, or declare "
            "their CRS (a GeoDataFrame's crs, GeoArrow or GeoParquet metadata)")


def _normalize_geometry(table: pa.Table, ids, problems: _Problems):
    """WKB of each footprint in CRS84 (null where a record has none) plus the shapely values."""
    try:
        crs = declared_crs(table.schema, S.GEOMETRY)
    except ValueError as exc:
        problems.add(str(exc))
        return None, None
    column = table[S.GEOMETRY]
    decoded = decode_footprints(column)
    if isinstance(decoded, str):
        problems.add(decoded)
        return None, None
    if decoded.unparsable.any():
        hint = NOT_WKB_HINT if decoded.encoding == "WKB" else "text that is not WKT"
        problems.add(f"unparsable geometry at {_row_ids(ids, decoded.unparsable)}: {hint}")
        return None, None
    geoms = decoded.geoms
    reproject = crs is not None and not is_crs84(crs)
    if reproject:
        geoms, failed = to_crs84(geoms, crs)
        if failed is not None:
            record = _row_ids(ids, np.arange(len(geoms)) == failed)
            problems.add(f"footprint of record {record} cannot be reprojected from "
                         f"{crs.to_string()} to CRS84 (coordinates outside the CRS's domain)")
            return None, None
    present = ~shapely.is_missing(geoms)
    outside = out_of_range_mask(shapely.bounds(geoms)) & present
    if outside.any():
        problems.add(_bounds_problem(ids, geoms, outside, crs if reproject else None))
        return None, None
    keep_bytes = decoded.encoding == "WKB" and not reproject and \
        bool((present == ~np.asarray(column.is_null().to_numpy(zero_copy_only=False))).all())
    if keep_bytes:
        storage = column.type.storage_type if isinstance(column.type, pa.ExtensionType) else None
        if storage is not None:
            column = pa.chunked_array([c.storage for c in column.chunks], type=storage)
        wkb = column.cast(pa.binary())
    else:
        wkb = pa.chunked_array([pa.array(shapely.to_wkb(geoms), pa.binary())])
    return _split_crossing(wkb, geoms)


def _split_crossing(wkb: pa.ChunkedArray, geoms: np.ndarray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Footprints crossing the antimeridian as written, split at +/-180 (WKB and shapely)."""
    rows = np.flatnonzero(crossing_mask(geoms))
    if not len(rows):
        return wkb, geoms
    geoms = geoms.copy()
    values = np.asarray(wkb.to_numpy(zero_copy_only=False), dtype=object).copy()
    for row in rows:
        geoms[row] = split_at_antimeridian(geoms[row])
        values[row] = shapely.to_wkb(geoms[row])
    return pa.chunked_array([pa.array(values, pa.binary())]), geoms


def _asset_struct(bands: Sequence[str], rows: list[dict | None]) -> pa.Array:
    """Build the normalised assets struct from per-row ``{band: href | {href, band_index}}``."""
    columns = {}
    for band in bands:
        hrefs, indices = [], []
        for row in rows:
            asset = None if row is None else row.get(band)
            if isinstance(asset, str):
                asset = {"href": asset}
            href = None if asset is None else asset.get("href")
            hrefs.append(href)
            idx = None if asset is None else asset.get("band_index")
            indices.append(None if href is None else int(idx or 0))
        mask = pa.array([h is None for h in hrefs])
        columns[band] = pa.StructArray.from_arrays(
            [pa.array(hrefs, pa.string()), pa.array(indices, pa.int32())],
            fields=list(S.ASSET_TYPE),
            mask=mask,
        )
    return pa.StructArray.from_arrays(list(columns.values()), names=list(bands))


def _normalize_assets(column: pa.ChunkedArray, problems: _Problems) -> pa.ChunkedArray | None:
    t = column.type
    if pa.types.is_struct(t):
        chunks = [_asset_struct_from_struct(chunk, problems) for chunk in column.chunks]
        if any(c is None for c in chunks):
            return None
        if not chunks:
            return pa.chunked_array([], type=S.assets_type([f.name for f in t]))
        return pa.chunked_array(chunks)
    if pa.types.is_map(t):
        rows = [None if v is None else dict(v) for v in column.to_pylist()]
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        rows = []
        for i, text in enumerate(column.to_pylist()):
            try:
                rows.append(None if text is None else json.loads(text))
            except json.JSONDecodeError as exc:
                problems.add(f"assets of row {i} is not valid JSON: {exc}")
                return None
    else:
        problems.add(f"column 'assets' must be a struct, map or JSON string, got {t}")
        return None
    bands: dict[str, None] = {}
    for row in rows:
        for band in row or {}:
            bands.setdefault(band, None)
    return pa.chunked_array([_asset_struct(list(bands), rows)])


def _asset_struct_from_struct(chunk: pa.StructArray, problems: _Problems) -> pa.Array | None:
    """Vectorised path: each band field is a struct with href (+band_index) or an href string."""
    arrays, names = [], []
    for i, field in enumerate(chunk.type):
        value = chunk.field(i)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            href = value.cast(pa.string())
            index = pa.array(np.zeros(len(value), np.int32))
        elif pa.types.is_struct(field.type) and field.type.get_field_index("href") >= 0:
            href = value.field("href").cast(pa.string())
            if field.type.get_field_index("band_index") >= 0:
                index = pc.fill_null(value.field("band_index").cast(pa.int32()), 0)
            else:
                index = pa.array(np.zeros(len(value), np.int32))
        else:
            problems.add(f"asset {field.name!r} must be an href string or a struct with 'href'")
            return None
        valid = pc.and_(pc.is_valid(href), pc.is_valid(chunk)) if chunk.null_count else pc.is_valid(href)
        arrays.append(
            pa.StructArray.from_arrays(
                [href, index], fields=list(S.ASSET_TYPE), mask=pc.invert(valid)
            )
        )
        names.append(field.name)
    return pa.StructArray.from_arrays(arrays, names=names)


def conform_metadata_array(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Cast a ``{band}_metadata`` struct to ``METADATA_TYPE``, adding absent fields as null."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    if column.type == S.METADATA_TYPE:
        return column
    chunks = []
    for chunk in column.chunks:
        fields = []
        for target in S.METADATA_TYPE:
            idx = chunk.type.get_field_index(target.name)
            if idx < 0:
                fields.append(pa.nulls(len(chunk), target.type))
            else:
                fields.append(chunk.field(idx).cast(target.type))
        mask = chunk.is_null() if chunk.null_count else None
        chunks.append(pa.StructArray.from_arrays(fields, fields=list(S.METADATA_TYPE), mask=mask))
    return pa.chunked_array(chunks, type=S.METADATA_TYPE)


def _replace(table: pa.Table, name: str, column) -> pa.Table:
    idx = table.schema.get_field_index(name)
    field = pa.field(name, column.type, metadata=None)
    if idx < 0:
        return table.append_column(field, column)
    return table.set_column(idx, field, column)


def _derive_bbox_columns(table: pa.Table, geoms: np.ndarray) -> pa.Table:
    """``scene_bbox``, ``bbox_*`` and the covering struct from the footprints, replacing input
    values; a footprint across the antimeridian has west > east (``index.footprints``); a
    record without a footprint gets nulls."""
    bounds = lonlat_bounds(geoms)
    missing = shapely.is_missing(np.asarray(geoms, dtype=object))
    bounds[missing] = 0.0
    mask = pa.array(missing) if missing.any() else None
    flat = pa.array(bounds.ravel(), pa.float64())
    table = _replace(table, S.SCENE_BBOX, pa.FixedSizeListArray.from_arrays(flat, 4, mask=mask))
    for i, name in enumerate(S.BBOX_COLUMNS):
        table = _replace(table, name, pa.array(bounds[:, i], pa.float64(), mask=missing))
    struct_name = S.BBOX_STRUCT
    existing = table.schema.field(struct_name).type if struct_name in table.column_names else None
    if existing is not None and existing != S.BBOX_STRUCT_TYPE:
        struct_name = S.BBOX_STRUCT_FALLBACK
    arrays = [pa.array(bounds[:, i], pa.float64(), mask=missing) for i in range(4)]
    covering = pa.StructArray.from_arrays(arrays, fields=list(S.BBOX_STRUCT_TYPE), mask=mask)
    return _replace(table, struct_name, covering)


def fill_missing_footprints(table: pa.Table) -> tuple[pa.Table, int]:
    """Footprints of records that have none, from their enriched headers; derived columns follow.

    A record's footprint is its raster's extent (transform, width, height) in its header's
    CRS (its EPSG code, else the CRS rebuilt from its GeoKeys), densified and reprojected to
    CRS84 (split at the antimeridian; a raster on another body than Earth keeps its body's
    longitude/latitude), from the first band whose metadata has all four. ``scene_bbox``, ``bbox_*`` and the covering are then
    recomputed for every row.

    Parameters
    ----------
    table : pyarrow.Table
        A normalised (and enriched) collection table.

    Returns
    -------
    (pyarrow.Table, int)
        The table (unchanged when nothing was filled) and how many footprints were filled.
    """
    if S.GEOMETRY not in table.column_names or not table[S.GEOMETRY].null_count:
        return table, 0
    kind = table.schema.field(S.GEOMETRY).type
    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_null(kind)):
        return table, 0  # not a normalised footprint column (e.g. WKT): left as given
    geometry = table[S.GEOMETRY].combine_chunks()
    geoms = shapely.from_wkb(geometry.to_numpy(zero_copy_only=False))
    todo = shapely.is_missing(geoms)
    filled = 0
    for band in S.metadata_bands(table.schema):
        if not todo.any():
            break
        rows = np.flatnonzero(todo)
        metadata = table[S.metadata_column(band)].take(pa.array(rows)).to_pylist()
        shapes = header_footprints(metadata)
        got = ~shapely.is_missing(shapes)
        geoms[rows[got]] = shapes[got]
        todo[rows[got]] = False
        filled += int(got.sum())
    if not filled:
        return table, 0
    wkb = pa.array(shapely.to_wkb(geoms), pa.binary())
    table = _replace(table, S.GEOMETRY, wkb)
    return _derive_bbox_columns(table, geoms), filled


def _raster_bands(table: pa.Table, ids: pa.ChunkedArray | None, problems: _Problems) -> pa.Table:
    """``raster_bands`` from the assets' STAC band descriptions (``index.raster_bands``) while
    the assets still hold them; else an input ``raster_bands`` column, checked."""
    names = ids.to_pylist() if ids is not None else list(range(table.num_rows))
    try:
        derived = raster_bands_of_assets(table[S.ASSETS], names)
    except ValueError as exc:
        problems.add(str(exc))
        return table
    if derived is not None:
        return _replace(table, S.RASTER_BANDS, derived)
    if S.RASTER_BANDS in table.column_names and table[S.RASTER_BANDS].type != S.RASTER_BANDS_TYPE:
        try:
            return _replace(table, S.RASTER_BANDS, table[S.RASTER_BANDS].cast(S.RASTER_BANDS_TYPE))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            problems.add(f"column {S.RASTER_BANDS!r} must be {S.RASTER_BANDS_TYPE}, got "
                         f"{table[S.RASTER_BANDS].type}")
    return table


def normalize_table(data: Any) -> pa.Table:
    """Validate ``data`` against the contract and return it with normalised and derived columns.

    Parameters
    ----------
    data : table-like
        Anything :func:`index.inputs.as_arrow_table` accepts.

    Returns
    -------
    pyarrow.Table
        ``year`` and ``month`` recomputed from ``datetime`` (else ``start_datetime``), the
        bbox columns from the footprints (in CRS84), ``proj:epsg`` from the projection
        columns, even when the input has them.

    Raises
    ------
    ValueError
        Naming each missing or mistyped column and the first offending row ids (footprints
        outside CRS84 name the first offending record and its bounds).
    """
    table = as_arrow_table(data).combine_chunks()
    problems = _Problems()
    has_range = S.START_DATETIME in table.column_names
    for name in S.REQUIRED_COLUMNS:
        if name not in table.column_names and not (name == S.DATETIME and has_range):
            problems.add(f"missing required column {name!r}")
    problems.raise_if_any()

    ids = _normalize_ids(table, problems)
    if ids is not None:
        table = _replace(table, S.ID, ids)

    stamps = {}
    for name in (S.DATETIME, S.START_DATETIME, S.END_DATETIME):
        if name in table.column_names:
            stamps[name] = to_utc(table[name], name, problems.add)
            if stamps[name] is not None:
                table = _replace(table, name, stamps[name])
    if S.DATETIME not in table.column_names:
        table = _replace(table, S.DATETIME, pa.nulls(table.num_rows, S.DATETIME_TYPE))
        stamps[S.DATETIME] = table[S.DATETIME]
    when = stamps.get(S.DATETIME)
    if when is not None and stamps.get(S.START_DATETIME) is not None:
        when = pc.coalesce(when, stamps[S.START_DATETIME])
    if when is not None:
        missing = when.is_null().to_numpy(zero_copy_only=False)
        if missing.any():
            problems.add(f"no usable timestamp (datetime or start_datetime) at {_row_ids(ids, missing)}")

    wkb, geoms = _normalize_geometry(table, ids, problems)
    if wkb is not None:
        table = _replace(table, S.GEOMETRY, wkb)

    def unreadable_crs(column: str, row: int, message: str) -> None:
        record = _row_ids(ids, np.arange(table.num_rows) == row)
        problems.add(f"{column!r} of record {record} names no CRS pyproj can read: {message}")

    table = derive_epsg(table, unreadable_crs)
    table = _raster_bands(table, ids, problems)
    assets = _normalize_assets(table[S.ASSETS], problems)
    if assets is not None:
        table = _replace(table, S.ASSETS, assets)
        no_href = np.ones(table.num_rows, dtype=bool)
        for i in range(assets.type.num_fields):
            no_href &= pc.is_null(pc.struct_field(assets, [i])).to_numpy(zero_copy_only=False)
        if no_href.any():
            problems.add(f"no asset with an href at {_row_ids(ids, no_href)}")
    for field in table.schema:
        if S.is_metadata_column(field.name, field.type):
            table = _replace(table, field.name, conform_metadata_array(table[field.name]))
        elif field.name == S.ENRICH_ERRORS and field.type != S.ENRICH_ERRORS_TYPE:
            problems.add(f"column 'enrich_errors' must be {S.ENRICH_ERRORS_TYPE}, got {field.type}")
    problems.raise_if_any()

    table = _derive_bbox_columns(table, geoms)
    # the partition keys are derived, never trusted: an input year/month that contradicts
    # the timestamp (or is no month at all) would file the record where no date query finds it
    for name, fn in ((S.YEAR, pc.year), (S.MONTH, pc.month)):
        table = _replace(table, name, fn(when).cast(pa.int64()))
    return table.replace_schema_metadata(None)
