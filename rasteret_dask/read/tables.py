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
import shapely

from ..io import RangeReader
from ..plan.grid import crs_text
from .api import prepare_reads
from .assemble import to_dataset
from .chunks import decode_chunk
from .failures import TileFailures, check_errors, new_read_errors
from .graph import fetch_group
from .matching import SampleRow, check_match, is_valid, nearest_valid, pick_rows, window_offsets
from .pending import ChunkJob, PendingPayloads
from .plan import NO_GROUP
from .points import PointPlan, plan_neighbourhoods, plan_points, sample_order
from .queries import read_queries
from .select import Record, Selection, select
from .skipped import check_on_missing, settle_missing

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["get_gdf", "sample_points"]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def get_gdf(collection: Collection, geometries: Any, bands: Sequence[str] | str, *,
            geometry_crs: Any = 4326, geometry_column: str | None = None,
            storage_options: dict | None = None,
            max_concurrent: int = 64, data_source: Any = None, on_missing: str = "skip",
            errors: str = "raise", **kwargs: Any):
    """A GeoDataFrame with one row per record x geometry x band: the array and its transform.

    The arrays are read (computed) at once, on the same plan and fetch path as ``get_xarray``.

    Parameters
    ----------
    collection
        The index to read from.
    geometries
        One or several geometries (see ``read.api.plan_reads``), or a table of them
        (pyarrow, (geo)pandas, polars, DuckDB; see ``read.queries``) whose other columns are
        kept on each geometry's rows.
    bands : sequence of str or str
        Bands to read, as the index or the data source's band map names them.
    geometry_crs : CRS-like, default 4326
        CRS of ``geometries`` unless they declare their own; the frame's CRS.
    geometry_column : str, optional
        The geometry column of a table of geometries (default: detected).
    storage_options : dict, optional
        fsspec options for the COGs (default: the data source's).
    max_concurrent : int, default 64
        Requests in flight.
    data_source : DatasetDescriptor or str, optional
        Overrides the collection's data source.
    on_missing : {"skip", "raise"}, default "skip"
        Records without metadata for a band: left out (warned, listed in
        ``attrs["skipped_records"]``) or ``MissingRecordsError``.
    errors : {"raise", "nodata"}, default "raise"
        A tile that cannot be fetched or decoded: ``RasterReadError``, or read as nodata and
        listed in ``attrs["read_errors"]``.
    **kwargs
        ``all_touched``, ``chunks``, ``max_tile_bytes`` and ``Collection.subset`` filters, as
        ``get_xarray`` takes them.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``geometry_index``, ``id``, ``datetime``, ``band``, ``array`` (y, x),
        ``transform`` (6 coefficients), ``crs_epsg`` (None for a custom CRS), ``crs``
        (``EPSG:n`` or WKT2) and ``geometry`` (the query geometry),
        then the query table's other columns (a name the frame already uses gets an
        ``input_`` prefix).

    Raises
    ------
    ValueError, MissingRecordsError, RasterReadError
        As ``get_xarray`` and its computation.
    """
    import geopandas as gpd

    queries = read_queries(geometries, geometry_crs, geometry_column)
    selections, plans = prepare_reads(collection, list(queries.geometries), bands,
                                      geometry_crs=queries.crs, data_source=data_source,
                                      on_missing=on_missing, errors=errors, **kwargs)
    source = selections[0].source
    src = queries.crs
    bands = list(source.bands)
    reader = source.reader(storage_options, max_concurrent)
    settle_missing((r for plan in plans for r in plan.skipped), on_missing, "get_gdf")
    rows = []
    read_errors: list[str] = []
    for number, (selection, plan) in enumerate(zip(selections, plans, strict=True)):
        ds = to_dataset(plan, reader, errors=errors).rename(source.renames).compute()
        read_errors.extend(ds.attrs["read_errors"])
        transform = tuple(plan.transform)[:6]
        crs = crs_text(plan.grid.crs)
        for t, record_id in enumerate(plan.ids):
            for band in bands:
                rows.append({
                    "geometry_index": number, "id": record_id,
                    "datetime": plan.times[t], "band": band,
                    "array": ds[band].values[t], "transform": transform,
                    "crs_epsg": plan.grid.crs_epsg, "crs": crs,
                    "geometry": selection.geometry,
                })
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=src) if rows else gpd.GeoDataFrame(
        columns=["geometry_index", "id", "datetime", "band", "array", "transform", "crs_epsg",
                 "crs", "geometry"], geometry="geometry", crs=src)
    kept = queries.kept_columns(frame["geometry_index"].to_numpy(dtype=np.int64),
                                set(frame.columns))
    for name, values in kept.items():
        frame[name] = values.to_pandas()
    frame.attrs["skipped_records"] = _unique(str(r) for plan in plans for r in plan.skipped)
    frame.attrs["read_errors"] = _unique(read_errors)
    return frame


class _Chunks:
    """A point plan's chunks, decoded on demand: every fetch group is submitted at once, and
    a chunk is decoded (once) by ``decode_chunk`` when a sample first needs it."""

    def __init__(self, plan: PointPlan, reader: RangeReader,
                 failures: TileFailures | None) -> None:
        jobs: list[list[ChunkJob]] = [[] for _ in plan.groups]
        self._slots: dict[int, int] = {}
        for c, (group, work) in enumerate(plan.chunks):
            if group != NO_GROUP:
                self._slots[c] = len(jobs[group])
                jobs[group].append((work, None))
        self._plan = plan
        self._failures = failures
        self._pending: list[PendingPayloads] = [
            fetch_group(reader, group, tuple(jobs[g]), failures)
            for g, group in enumerate(plan.groups)]
        self._arrays: dict[int, np.ndarray] = {}

    def array(self, chunk: int) -> np.ndarray:
        """The (1, h, w) array of chunk ``chunk``; RasterReadError naming record, band and
        href when it cannot be read (unless the failures are read as nodata)."""
        array = self._arrays.get(chunk)
        if array is None:
            group, work = self._plan.chunks[chunk]
            if group == NO_GROUP:
                array = decode_chunk(None, work, None, self._failures)
            else:
                array = self._pending[group].chunk(self._slots[chunk])
            self._arrays[chunk] = array
        return array


def _values(plan: PointPlan, chunks: _Chunks, bands: Sequence[str]
            ) -> list[tuple[int, str, np.datetime64, dict[str, Any], dict[str, Record]]]:
    """(point, record id, time, band -> value, band -> record) per output row of ``plan``."""
    rows = []
    for k, record_id, entry in sample_order(plan):
        values: dict[str, Any] = {}
        records: dict[str, Record] = {}
        for band in bands:
            sample = entry.get(band)
            if sample is not None:
                array = chunks.array(sample.chunk)
                values[band] = array[0, sample.row, sample.col].item()
                records[band] = sample.record
        rows.append((k, record_id, entry["datetime"], values, records))
    return rows


def _fall_back(rows: list, selection: Selection, radius: int, reader: RangeReader,
               failures: TileFailures | None, max_tile_bytes: int | str | None) -> None:
    """Replace invalid values of points inside an image by their nearest valid neighbour
    (``read.matching``): one more point plan, of the pixels around those points only."""
    centres = [(k, band, record) for k, _, _, values, records in rows
               for band, record in records.items()
               if not is_valid(values[band], record.metadata.nodata)]
    if not centres:
        return
    plan, hoods = plan_neighbourhoods(selection, [(k, r) for k, _, r in centres],
                                      window_offsets(radius), max_tile_bytes=max_tile_bytes)
    chunks = _Chunks(plan, reader, failures)
    found: dict[tuple[int, str, str], Any] = {}
    for (_, band, record), hood in zip(centres, hoods, strict=True):
        values = {}
        for key, n in hood.pixels.items():
            sample = plan.samples[n]
            values[key] = chunks.array(sample.chunk)[0, sample.row, sample.col].item()
        md = record.metadata
        value = nearest_valid(hood.row, hood.col, values, radius, md.resolution, md.nodata)
        if value is not None:
            found[(hood.point, band, record.id)] = value
    for k, record_id, _, values, _ in rows:
        for band in values:
            if (k, band, record_id) in found:
                values[band] = found[(k, band, record_id)]


def sample_points(collection: Collection, points: Any, bands: Sequence[str] | str, *,
                  geometry_crs: Any = 4326, geometry_column: str | None = None,
                  match: str = "all", max_distance_pixels: int = 0,
                  storage_options: dict | None = None,
                  max_concurrent: int = 64, data_source: Any = None,
                  max_tile_bytes: int | str | None = None, on_missing: str = "skip",
                  errors: str = "raise", **filters: Any) -> pa.Table:
    """Pixel values at points: one row per point x record (or per point, see ``match``), one
    column per band.

    The points become a point plan (``read.points``): each tile under them is fetched once,
    through the same fetch groups and chunk decoding as an array read, and nothing else is
    fetched. Records may be in several CRSs (each is sampled in its own). A value is the
    pixel holding the point, as rasterio's ``DatasetReader.sample`` reads it.

    Parameters
    ----------
    collection
        The index to read from.
    points
        Point geometries (anything ``get_xarray`` takes as geometries, all points), or a table
        of points (pyarrow, (geo)pandas, polars, DuckDB; see ``read.queries``) whose other
        columns are kept in the output.
    bands : sequence of str or str
        Bands to sample, as the index or the data source's band map names them.
    geometry_crs : CRS-like, default 4326
        CRS of ``points`` unless they declare their own.
    geometry_column : str, optional
        The geometry column of a table of points (default: detected).
    match : {"all", "latest", "nearest_time"}, default "all"
        ``"all"``: every record whose image holds the point. ``"latest"``: per point, the
        most recent record whose every band is valid there (not nodata, not NaN), else the
        most recent record. ``"nearest_time"``: the same choice by closeness to the point's
        own time, the ``datetime`` column of a table of points (required). Ties are
        documented in ``read.matching``.
    max_distance_pixels : int, default 0
        With N > 0, a point whose own pixel is nodata (or NaN) takes the nearest valid pixel
        within N pixels (square rings, closest pixel rectangle in map units); points outside
        the image stay without a value. The pixels around those points are read in a second
        point plan.
    storage_options : dict, optional
        fsspec options for the COGs (default: the data source's).
    max_concurrent : int, default 64
        Requests in flight.
    data_source : DatasetDescriptor or str, optional
        Overrides the collection's data source.
    max_tile_bytes : int or str, optional
        A tile declaring more is never fetched; it fails like a tile that cannot be read.
    on_missing : {"skip", "raise"}, default "skip"
        Records whose band has no metadata: left out with a warning, or
        ``MissingRecordsError``.
    errors : {"raise", "nodata"}, default "raise"
        A tile that cannot be fetched or decoded (or is over the limit): ``RasterReadError``,
        or the band's nodata value (0 or NaN without one).
    **filters
        ``Collection.subset`` arguments.

    Returns
    -------
    pyarrow.Table
        Columns ``point_index`` (the point's position, its row in a table of points), ``id``,
        ``datetime`` (UTC), one per band (null where the point is outside that band's image),
        then the point table's other columns (a name the output already uses gets an
        ``input_`` prefix), sorted by point then time. The schema metadata lists what was
        skipped and read as nodata (``b"skipped_records"``, ``b"read_errors"``: JSON lists).

    Raises
    ------
    ValueError
        For non-point geometries, an unknown ``match``, ``on_missing``, ``errors`` or
        ``max_tile_bytes``, a negative ``max_distance_pixels``, ``"nearest_time"`` without
        point times, an unknown or unenriched band, or a record without an EPSG code.
    MissingRecordsError
        With ``on_missing="raise"``.
    RasterReadError
        With ``errors="raise"``, for a tile that cannot be read (naming record, band, href).
    """
    check_on_missing(on_missing)
    check_errors(errors)
    check_match(match, max_distance_pixels)
    queries = read_queries(points, geometry_crs, geometry_column)
    if not all(isinstance(p, shapely.Point) for p in queries.geometries):
        raise ValueError("sample_points takes point geometries")
    times = queries.require_times("match='nearest_time'") if match == "nearest_time" else None
    (selection,) = select(collection, shapely.MultiPoint(queries.geometries), bands,
                          geometry_crs=queries.crs, data_source=data_source,
                          on_missing=on_missing, align=False, **filters)
    settle_missing(selection.skipped, on_missing, "sample_points")
    plan = plan_points(selection, max_tile_bytes=max_tile_bytes)
    source = selection.source
    bands = source.stored_bands
    read_errors, failures = new_read_errors() if errors == "nodata" else ([], None)
    reader = source.reader(storage_options, max_concurrent)
    values = _values(plan, _Chunks(plan, reader, failures), bands)
    if max_distance_pixels:
        _fall_back(values, selection, max_distance_pixels, reader, failures, max_tile_bytes)
    rows = pick_rows([SampleRow(k, rid, when, vals,
                                all(b in vals and is_valid(vals[b], recs[b].metadata.nodata)
                                    for b in bands))
                      for k, rid, when, vals, recs in values], match, times)
    columns = {
        "point_index": pa.array([r.point for r in rows], pa.int64()),
        "id": pa.array([r.record_id for r in rows], pa.string()),
        "datetime": pa.array(np.array([r.datetime for r in rows], dtype="datetime64[ns]"),
                             pa.timestamp("ns")).cast(pa.timestamp("us", tz="UTC")),
    }
    for asked, band in source.bands.items():
        columns[asked] = pa.array([r.values.get(band) for r in rows],
                                  type=pa.from_numpy_dtype(_band_dtype(selection, band)))
    columns.update(queries.kept_columns(np.array([r.point for r in rows], dtype=np.int64),
                                        set(columns)))
    metadata = {b"skipped_records": json.dumps(_unique(str(r) for r in selection.skipped)),
                b"read_errors": json.dumps(list(read_errors))}
    return pa.table(columns).replace_schema_metadata(metadata)


def _band_dtype(selection: Selection, band: str) -> np.dtype:
    """The dtype of a band's samples: its records' (float64 without any record)."""
    records = selection.records_by_band.get(band, ())
    if not records:
        return np.dtype(np.float64)
    return np.result_type(*{r.metadata.native_dtype for r in records})
