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
from .api import prepare_reads
from .assemble import to_dataset
from .chunks import decode_chunk
from .failures import TileFailures, check_errors, new_read_errors
from .graph import fetch_group
from .pending import ChunkJob, PendingPayloads
from .plan import NO_GROUP
from .points import PointPlan, plan_points, sample_order
from .select import query_geometries, select
from .skipped import check_on_missing, settle_missing

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["get_gdf", "sample_points"]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def get_gdf(collection: Collection, geometries: Any, bands: Sequence[str] | str, *,
            geometry_crs: Any = 4326, storage_options: dict | None = None,
            max_concurrent: int = 64, data_source: Any = None, on_missing: str = "skip",
            errors: str = "raise", **kwargs: Any):
    """A GeoDataFrame with one row per record x geometry x band: the array and its transform.

    The arrays are read (computed) at once, on the same plan and fetch path as ``get_xarray``.

    Parameters
    ----------
    collection
        The index to read from.
    geometries
        One or several geometries (see ``read.api.plan_reads``).
    bands : sequence of str or str
        Bands to read, as the index or the data source's band map names them.
    geometry_crs : CRS-like, default 4326
        CRS of ``geometries`` unless they carry their own; the frame's CRS.
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
        ``transform`` (6 coefficients), ``crs_epsg`` and ``geometry`` (the query geometry).

    Raises
    ------
    ValueError, MissingRecordsError, RasterReadError
        As ``get_xarray`` and its computation.
    """
    import geopandas as gpd

    selections, plans = prepare_reads(collection, geometries, bands, geometry_crs=geometry_crs,
                                      data_source=data_source, on_missing=on_missing,
                                      errors=errors, **kwargs)
    source = selections[0].source
    src = selections[0].geometry_crs
    bands = list(source.bands)
    reader = source.reader(storage_options, max_concurrent)
    settle_missing((r for plan in plans for r in plan.skipped), on_missing, "get_gdf")
    rows = []
    read_errors: list[str] = []
    for number, (selection, plan) in enumerate(zip(selections, plans, strict=True)):
        ds = to_dataset(plan, reader, errors=errors).rename(source.renames).compute()
        read_errors.extend(ds.attrs["read_errors"])
        transform = tuple(plan.transform)[:6]
        for t, record_id in enumerate(plan.ids):
            for band in bands:
                rows.append({
                    "geometry_index": number, "id": record_id,
                    "datetime": plan.times[t], "band": band,
                    "array": ds[band].values[t], "transform": transform,
                    "crs_epsg": plan.grid.crs_epsg, "geometry": selection.geometry,
                })
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=src) if rows else gpd.GeoDataFrame(
        columns=["geometry_index", "id", "datetime", "band", "array", "transform", "crs_epsg",
                 "geometry"], geometry="geometry", crs=src)
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


def sample_points(collection: Collection, points: Any, bands: Sequence[str] | str, *,
                  geometry_crs: Any = 4326, storage_options: dict | None = None,
                  max_concurrent: int = 64, data_source: Any = None,
                  max_tile_bytes: int | str | None = None, on_missing: str = "skip",
                  errors: str = "raise", **filters: Any) -> pa.Table:
    """Pixel values at points: one row per point x record, one column per band.

    The points become a point plan (``read.points``): each tile under them is fetched once,
    through the same fetch groups and chunk decoding as an array read, and nothing else is
    fetched. Records may be in several CRSs (each is sampled in its own).

    Parameters
    ----------
    collection
        The index to read from.
    points
        Point geometries (anything ``get_xarray`` takes as geometries, all points).
    bands : sequence of str or str
        Bands to sample, as the index or the data source's band map names them.
    geometry_crs : CRS-like, default 4326
        CRS of ``points`` unless they carry their own.
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
        Columns ``point_index``, ``id``, ``datetime`` (UTC) and one per band (null where the
        point is outside that band's image), sorted by point then time. The schema metadata
        lists what was skipped and read as nodata (``b"skipped_records"``,
        ``b"read_errors"``: JSON lists).

    Raises
    ------
    ValueError
        For non-point geometries, an unknown ``on_missing``, ``errors`` or
        ``max_tile_bytes``, an unknown or unenriched band, or a record without an EPSG code.
    MissingRecordsError
        With ``on_missing="raise"``.
    RasterReadError
        With ``errors="raise"``, for a tile that cannot be read (naming record, band, href).
    """
    check_on_missing(on_missing)
    check_errors(errors)
    shapes, src = query_geometries(points, geometry_crs)
    if not all(isinstance(p, shapely.Point) for p in shapes):
        raise ValueError("sample_points takes point geometries")
    (selection,) = select(collection, shapely.MultiPoint(shapes), bands, geometry_crs=src,
                          data_source=data_source, on_missing=on_missing, align=False,
                          **filters)
    settle_missing(selection.skipped, on_missing, "sample_points")
    plan = plan_points(selection, max_tile_bytes=max_tile_bytes)
    source = selection.source
    bands = source.stored_bands
    read_errors, failures = new_read_errors() if errors == "nodata" else ([], None)
    chunks = _Chunks(plan, source.reader(storage_options, max_concurrent), failures)
    out: dict[str, list] = {"point_index": [], "id": [], "datetime": []}
    dtypes: dict[str, np.dtype] = {}
    for band in bands:
        out[band] = []
    for k, record_id, entry in sample_order(plan):
        out["point_index"].append(k)
        out["id"].append(record_id)
        out["datetime"].append(entry["datetime"])
        for band in bands:
            sample = entry.get(band)
            if sample is None:
                out[band].append(None)
                continue
            array = chunks.array(sample.chunk)
            dtypes[band] = array.dtype
            out[band].append(array[0, sample.row, sample.col].item())
    columns = {
        "point_index": pa.array(out["point_index"], pa.int64()),
        "id": pa.array(out["id"], pa.string()),
        "datetime": pa.array(np.array(out["datetime"], dtype="datetime64[ns]"),
                             pa.timestamp("ns")).cast(pa.timestamp("us", tz="UTC")),
    }
    for asked, band in source.bands.items():
        columns[asked] = pa.array(out[band], type=pa.from_numpy_dtype(dtypes.get(band, np.float64)))
    metadata = {b"skipped_records": json.dumps(_unique(str(r) for r in selection.skipped)),
                b"read_errors": json.dumps(list(read_errors))}
    return pa.table(columns).replace_schema_metadata(metadata)
