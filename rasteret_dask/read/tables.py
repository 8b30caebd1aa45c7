"""Tabular reads on the same plan and fetch path: ``get_gdf`` and ``sample_points``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyproj
import shapely

from .. import schema as S
from ..decode import DecodeSpec, decode_tile, tile_size_problem
from ..decode import max_tile_bytes as max_tile_limit
from ..io import ByteRange
from ..plan.geometry import coerce_geometries, reproject_geometries
from ..plan.grid import GridSpec
from ..redact import redact_text, redact_url
from .api import geometry_crs_of, plan_reads
from .assemble import to_dataset
from .graph import RasterReadError
from .plan import records_for_band
from .source import read_source

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["get_gdf", "sample_points"]


def get_gdf(collection: Collection, geometries: Any, bands: Sequence[str], *,
            geometry_crs: Any = 4326, storage_options: dict | None = None,
            max_concurrent: int = 64, data_source: Any = None, **kwargs: Any):
    """A GeoDataFrame with one row per record x geometry x band: the array and its transform."""
    import geopandas as gpd

    source = read_source(collection, bands, data_source)
    bands = list(source.bands)
    reader = source.reader(storage_options, max_concurrent)
    src = pyproj.CRS.from_user_input(geometry_crs_of(geometries, geometry_crs))
    shapes = coerce_geometries(geometries)
    plans = plan_reads(collection, shapes, source.stored_bands, geometry_crs=src,
                       data_source=source.descriptor, **kwargs)
    rows = []
    for number, (shape, plan) in enumerate(zip(shapes, plans, strict=True)):
        ds = to_dataset(plan, reader).rename(source.renames).compute()
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
    return frame


def _tile_of(md: dict, row: int, col: int) -> int:
    across = -(-md["image_width"] // md["tile_width"])
    return (row // md["tile_height"]) * across + col // md["tile_width"]


def sample_points(collection: Collection, points: Any, bands: Sequence[str], *,
                  geometry_crs: Any = 4326, storage_options: dict | None = None,
                  max_concurrent: int = 64, data_source: Any = None,
                  max_tile_bytes: int | str | None = None, **filters: Any) -> pa.Table:
    """Pixel values at points: one row per point x record, one column per band.

    Only the tiles under the points are fetched (one batched fetch, each tile once); a tile
    declaring more than ``max_tile_bytes`` raises before anything is fetched.
    """
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
    table = subset.to_table(columns=[S.ID, S.DATETIME, S.ASSETS]
                            + [S.metadata_column(b) for b in bands])
    samples: dict[tuple[int, str], dict[str, tuple]] = {}
    wanted: dict[tuple[str, int], ByteRange] = {}
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
                if problem is not None:
                    raise RasterReadError(f"record {record.id!r}, band {band!r}, "
                                          f"href {redact_url(record.href)}: {problem}")
                key = (record.href, tile)
                wanted.setdefault(key, ByteRange(record.href, start, start + count))
                samples.setdefault((k, record.id), {"datetime": record.datetime})[band] = (
                    key, row % md["tile_height"], col % md["tile_width"],
                    0 if md.get("planar_configuration") == 2 else record.band_index, spec)
    keys = list(wanted)
    reader = source.reader(storage_options, max_concurrent)
    payloads = dict(zip(keys, reader.fetch([wanted[k] for k in keys], return_exceptions=True),
                        strict=True))
    decoded: dict[tuple[str, int], np.ndarray] = {}
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
                payload = payloads[key]
                if isinstance(payload, Exception):
                    raise RasterReadError(f"record {record_id!r}, band {band!r}, "
                                          f"href {redact_url(key[0])}: "
                                          f"{redact_text(payload)}") from payload
                decoded[key] = decode_tile(payload, spec, max_bytes=limit)
            value = decoded[key][r, c, sample]
            dtypes[band] = value.dtype
            out[band].append(value.item())
    columns = {
        "point_index": pa.array(out["point_index"], pa.int64()),
        "id": pa.array(out["id"], pa.string()),
        "datetime": pa.array(np.array(out["datetime"], dtype="datetime64[ns]"),
                             pa.timestamp("ns")).cast(pa.timestamp("us", tz="UTC")),
    }
    for asked, band in source.bands.items():
        columns[asked] = pa.array(out[band], type=pa.from_numpy_dtype(dtypes.get(band, np.float64)))
    return pa.table(columns)
