"""Tabular reads on the same plan and fetch path: ``get_gdf`` and ``sample_points``.

Both take ``on_missing`` and ``errors`` as ``get_xarray`` does. What they skipped and the tiles
they read as nodata are listed in ``GeoDataFrame.attrs["skipped_records" / "read_errors"]``
and in the Arrow schema metadata (``b"skipped_records"`` / ``b"read_errors"``, JSON lists).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyproj
import shapely

from .. import schema as S
from ..decode import DecodeError, DecodeSpec, decode_tile, tile_size_problem
from ..decode import max_tile_bytes as max_tile_limit
from ..decode.spec import fill_value
from ..io import ByteRange
from ..plan.geometry import coerce_geometries, reproject_geometries
from ..plan.grid import GridSpec
from ..redact import redact_text, redact_url
from .api import geometry_crs_of, plan_reads
from .assemble import to_dataset
from .failures import check_errors, new_read_errors
from .graph import RasterReadError
from .plan import records_for_band
from .skipped import check_on_missing, missing_records, settle_missing
from .source import read_source

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["get_gdf", "sample_points"]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def get_gdf(collection: Collection, geometries: Any, bands: Sequence[str], *,
            geometry_crs: Any = 4326, storage_options: dict | None = None,
            max_concurrent: int = 64, data_source: Any = None, on_missing: str = "skip",
            errors: str = "raise", **kwargs: Any):
    """A GeoDataFrame with one row per record x geometry x band: the array and its transform.

    ``attrs["skipped_records"]`` and ``attrs["read_errors"]`` list what ``on_missing="skip"``
    left out and what ``errors="nodata"`` read as nodata (see ``get_xarray``).
    """
    import geopandas as gpd

    source = read_source(collection, bands, data_source)
    bands = list(source.bands)
    reader = source.reader(storage_options, max_concurrent)
    src = pyproj.CRS.from_user_input(geometry_crs_of(geometries, geometry_crs))
    shapes = coerce_geometries(geometries)
    plans = plan_reads(collection, shapes, source.stored_bands, geometry_crs=src,
                       data_source=source.descriptor, on_missing=on_missing, errors=errors,
                       **kwargs)
    settle_missing((r for plan in plans for r in plan.skipped), on_missing, "get_gdf")
    rows = []
    read_errors: list[str] = []
    for number, (shape, plan) in enumerate(zip(shapes, plans, strict=True)):
        ds = to_dataset(plan, reader, errors=errors).rename(source.renames).compute()
        read_errors.extend(ds.attrs["read_errors"])
        transform = tuple(plan.transform)[:6]
        for t, record_id in enumerate(plan.ids):
            for band in bands:
                rows.append({
                    "geometry_index": number, "id": record_id,
                    "datetime": plan.times[t], "band": band,
                    "array": ds[band].values[t], "transform": transform,
                    "crs_epsg": plan.grid.crs_epsg, "geometry": shape,
                })
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=src) if rows else gpd.GeoDataFrame(
        columns=["geometry_index", "id", "datetime", "band", "array", "transform", "crs_epsg",
                 "geometry"], geometry="geometry", crs=src)
    frame.attrs["skipped_records"] = _unique(str(r) for plan in plans for r in plan.skipped)
    frame.attrs["read_errors"] = _unique(read_errors)
    return frame


def _tile_of(md: dict, row: int, col: int) -> int:
    across = -(-md["image_width"] // md["tile_width"])
    return (row // md["tile_height"]) * across + col // md["tile_width"]


def sample_points(collection: Collection, points: Any, bands: Sequence[str], *,
                  geometry_crs: Any = 4326, storage_options: dict | None = None,
                  max_concurrent: int = 64, data_source: Any = None,
                  max_tile_bytes: int | str | None = None, on_missing: str = "skip",
                  errors: str = "raise", **filters: Any) -> pa.Table:
    """Pixel values at points: one row per point x record, one column per band.

    Only the tiles under the points are fetched (one batched fetch, each tile once); a tile
    declaring more than ``max_tile_bytes`` is never fetched. Records whose band has no metadata
    are left out (``on_missing``); a tile that cannot be fetched or decoded (or is over the
    limit) raises, or with ``errors="nodata"`` gives the band's nodata value (0 or NaN without
    one). Both are listed in the schema metadata (``b"skipped_records"``, ``b"read_errors"``:
    JSON lists).
    """
    check_on_missing(on_missing)
    check_errors(errors)
    limit = max_tile_limit(max_tile_bytes)
    source = read_source(collection, bands, data_source)
    bands = source.stored_bands
    missing = [b for b in bands if b not in collection.enriched_bands]
    if missing:
        raise ValueError(f"band(s) {missing} have no COG metadata; run collection.enrich() first")
    src = pyproj.CRS.from_user_input(geometry_crs_of(points, geometry_crs))
    shapes = coerce_geometries(points)
    if not all(isinstance(p, shapely.Point) for p in shapes):
        raise ValueError("sample_points takes point geometries")
    lonlat = reproject_geometries(shapes, src, pyproj.CRS.from_epsg(4326))
    subset = collection.subset(**filters) if filters else collection
    subset = subset.subset(geometries=shapely.MultiPoint(lonlat))
    columns = [S.ID, S.DATETIME, S.ASSETS] + [S.metadata_column(b) for b in bands]
    columns += [S.ENRICH_ERRORS] if S.ENRICH_ERRORS in subset.schema.names else []
    table = subset.to_table(columns=columns)
    skipped = [r for b in bands for r in missing_records(table, b)]
    settle_missing(skipped, on_missing, "sample_points")
    samples: dict[tuple[int, str], dict[str, tuple]] = {}
    wanted: dict[tuple[str, int], ByteRange] = {}
    refused: dict[tuple[str, int], Exception] = {}
    for band in bands:
        for record in records_for_band(table, band):
            md = record.metadata
            grid = GridSpec.from_metadata(md)
            native = reproject_geometries(shapes, src, pyproj.CRS.from_epsg(grid.crs_epsg))
            xy = np.array([(p.x, p.y) for p in native])
            cols, rows = ~grid.transform * (xy[:, 0], xy[:, 1])
            for k, (col, row) in enumerate(zip(np.floor(cols), np.floor(rows), strict=True)):
                col, row = int(col), int(row)
                if not (0 <= row < md["image_height"] and 0 <= col < md["image_width"]):
                    continue
                tile = _tile_of(md, row, col)
                start = int(md["tile_offsets"][tile])
                count = int(md["tile_byte_counts"][tile])
                spec = DecodeSpec.from_metadata(md)
                problem = tile_size_problem(spec, count, limit, tile)
                key = (record.href, tile)
                if problem is not None:  # never fetched: fails (or is nodata) like a bad tile
                    refused[key] = RasterReadError(problem)
                else:
                    wanted.setdefault(key, ByteRange(record.href, start, start + count))
                samples.setdefault((k, record.id), {"datetime": record.datetime})[band] = (
                    key, row % md["tile_height"], col % md["tile_width"],
                    0 if md.get("planar_configuration") == 2 else record.band_index, spec)
    keys = list(wanted)
    reader = source.reader(storage_options, max_concurrent)
    payloads = dict(zip(keys, reader.fetch([wanted[k] for k in keys], return_exceptions=True),
                        strict=True))
    payloads.update(refused)
    read_errors, failures = new_read_errors() if errors == "nodata" else ([], None)
    decoded: dict[tuple[str, int], np.ndarray | None] = {}
    out: dict[str, list] = {"point_index": [], "id": [], "datetime": []}
    dtypes: dict[str, np.dtype] = {}
    for band in bands:
        out[band] = []
    for (k, record_id), entry in sorted(samples.items(), key=lambda kv: (kv[0][0], kv[1]["datetime"])):
        out["point_index"].append(k)
        out["id"].append(record_id)
        out["datetime"].append(entry["datetime"])
        for band in bands:
            if band not in entry:
                out[band].append(None)
                continue
            key, r, c, sample, spec = entry[band]
            if key not in decoded:
                try:
                    decoded[key] = _decode_sampled(payloads[key], spec, record_id, band, key[0],
                                                   limit)
                except RasterReadError as exc:
                    if failures is None:
                        raise
                    failures.report(exc)
                    decoded[key] = None
            native = np.dtype(spec.dtype).newbyteorder("=")
            dtypes[band] = native
            tile = decoded[key]
            out[band].append(fill_value(native, spec.nodata) if tile is None
                             else tile[r, c, sample].item())
    columns = {
        "point_index": pa.array(out["point_index"], pa.int64()),
        "id": pa.array(out["id"], pa.string()),
        "datetime": pa.array(np.array(out["datetime"], dtype="datetime64[ns]"),
                             pa.timestamp("ns")).cast(pa.timestamp("us", tz="UTC")),
    }
    for asked, band in source.bands.items():
        columns[asked] = pa.array(out[band], type=pa.from_numpy_dtype(dtypes.get(band, np.float64)))
    metadata = {b"skipped_records": json.dumps(_unique(str(r) for r in skipped)),
                b"read_errors": json.dumps(list(read_errors))}
    return pa.table(columns).replace_schema_metadata(metadata)


def _decode_sampled(payload: Any, spec: DecodeSpec, record_id: str, band: str,
                    href: str, limit: int) -> np.ndarray:
    """A sampled tile's array; RasterReadError naming record, band and href otherwise."""
    label = f"record {record_id!r}, band {band!r}, href {redact_url(href)}"
    if isinstance(payload, Exception):
        raise RasterReadError(f"{label}: {redact_text(payload)}") from payload
    try:
        return decode_tile(payload, spec, max_bytes=limit)
    except DecodeError as exc:
        raise RasterReadError(f"{label}: {exc}") from exc
