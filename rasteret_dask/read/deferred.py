"""Large warped reads planned on the workers: the client plans only what grows with the output.

A read whose output grid has more than :data:`DEFERRED_CHUNKS` chunks (a country or a continent)
is not planned record by record in the client. The client reads the matching index rows' id,
datetime, CRS84 bbox and partition (never a metadata column; each band's dtype and nodata come
from one enriched row), finds the chunks each record's bbox covers (one vectorised transform),
groups the records in time, and keeps per (time group, chunk) the ids of the records meeting
it: one small tuple per output chunk. The records'
metadata is read on the workers, one loader task per band and index partition (year, month);
each chunk's task takes its records from those loaders, plans its own windows and tiles
(:mod:`.warp_sources`), fetches, decodes, resamples and fuses them (:mod:`.warp`).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyproj

from .. import schema as S
from ..decode import limits
from ..plan.geometry import reproject_geometries, transformer
from ..plan.output_grid import (
    DEFAULT_WARP_CHUNK,
    WARP_TILE,
    GridRequest,
    OutputGrid,
    anchored_geobox,
    parse_chunks,
    time_chunk,
)
from .grouping import GroupedRecord, TimeGroup, group_records
from .warp_plan import explain_grid, output_grid
from .warp_sources import WarpParams

__all__ = ["DEFERRED_CHUNKS", "DeferredBand", "DeferredPlan", "should_defer",
           "plan_deferred_read", "LightRecords", "loader_ids", "load_partition"]

logger = logging.getLogger("rasteret_dask.read")

DEFERRED_CHUNKS = 64
"""Output chunks above which a warped read is planned on the workers."""

BLOCK_BYTES = 64 * 1024 * 1024
"""Default size of a deferred read's chunk: as many time steps as fit (at most
:data:`MAX_TIME_CHUNK`), unless ``chunks={"time": n}`` says otherwise."""

MAX_TIME_CHUNK = 16

_EDGE_SAMPLES = 8
"""Points per bbox edge transformed into the output CRS to find the chunks a record covers."""


def should_defer(request: GridRequest, geometry_bounds_out: tuple[float, float, float, float]
                 | None, chunks: Any) -> bool:
    """Whether a read's output grid has more than :data:`DEFERRED_CHUNKS` chunks, judged
    before anything is read (a ``geobox``, or ``crs`` and ``resolution`` with the query's
    bounds in the output CRS)."""
    rows, cols = parse_chunks(chunks if chunks is not None
                              else DEFAULT_WARP_CHUNK // WARP_TILE, WARP_TILE)
    if request.geobox is not None:
        height, width = int(request.geobox.shape.y), int(request.geobox.shape.x)
    elif request.resolution is not None and geometry_bounds_out is not None:
        x0, y0, x1, y1 = geometry_bounds_out
        width = (x1 - x0) / request.resolution[0]
        height = (y1 - y0) / request.resolution[1]
    else:
        return False
    return math.ceil(height / rows) * math.ceil(width / cols) > DEFERRED_CHUNKS


@dataclass(frozen=True)
class LightRecords:
    """The planning columns of a read's matching rows (no metadata column is read)."""

    ids: tuple[str, ...]
    times: np.ndarray
    bbox: np.ndarray
    """(n, 4) CRS84 minx, miny, maxx, maxy."""
    partition: tuple[tuple[int, int], ...]
    """(year, month) of each record's index partition."""
    dtype: dict[str, np.dtype]
    nodata: dict[str, float | None]
    """Per band, of the first matching record enriched for it (the workers check the rest)."""


def light_records(collection: Any, lonlat: Any, bands: Sequence[str],
                  filters: dict[str, Any]) -> LightRecords:
    """Read only the planning columns of the rows meeting ``lonlat`` (EPSG:4326), and each
    band's dtype and nodata from the first rows enriched for it."""
    subset = collection.subset(geometries=lonlat, **filters)
    names = [S.ID, S.DATETIME, "bbox_minx", "bbox_miny", "bbox_maxx", "bbox_maxy", S.YEAR,
             S.MONTH]
    table = subset.dataset.to_table(columns=names)
    bbox = np.column_stack([table[c].to_numpy(zero_copy_only=False).astype("float64")
                            for c in names[2:6]]) if table.num_rows else np.zeros((0, 4))
    dtype: dict[str, np.dtype] = {}
    nodata: dict[str, float | None] = {}
    for band in bands:
        column = S.metadata_column(band)
        sample = subset.dataset.head(16, columns=[column],
                                     filter=~pc.is_null(pc.field(column)))[column]
        first = next((v for v in sample.to_pylist() if v is not None), None)
        if first is None:
            raise ValueError(f"band {band!r}: no record meeting the read has metadata; run "
                             "collection.enrich() first")
        dtype[band] = np.dtype(first["dtype"]).newbyteorder("=")
        nodata[band] = first["nodata"]
    return LightRecords(
        tuple(table[S.ID].to_pylist()),
        table[S.DATETIME].to_numpy(zero_copy_only=False).astype("datetime64[ns]"),
        bbox, tuple(zip(table[S.YEAR].to_pylist(), table[S.MONTH].to_pylist(), strict=True)),
        dtype, nodata)


def _chunk_ranges(bbox: np.ndarray, crs: pyproj.CRS, grid: OutputGrid) -> np.ndarray:
    """Per record, the (row0, row1, col0, col1) chunk index range (inclusive, clipped) its
    CRS84 bbox covers on the output grid, or row1 < row0 when it misses the grid."""
    n = len(bbox)
    t = np.linspace(0.0, 1.0, _EDGE_SAMPLES + 1)
    minx, miny, maxx, maxy = (bbox[:, k:k + 1] for k in range(4))
    wraps = minx > maxx  # across the antimeridian: the whole band of longitudes
    minx = np.where(wraps, -180.0, minx)
    maxx = np.where(wraps, 180.0, maxx)
    xs = np.concatenate([minx + (maxx - minx) * t, minx + (maxx - minx) * t,
                         np.repeat(minx, len(t), 1), np.repeat(maxx, len(t), 1)], axis=1)
    ys = np.concatenate([np.repeat(miny, len(t), 1), np.repeat(maxy, len(t), 1),
                         miny + (maxy - miny) * t, miny + (maxy - miny) * t], axis=1)
    with np.errstate(invalid="ignore"):
        ox, oy = transformer(pyproj.CRS.from_epsg(4326), crs).transform(xs, ys, errcheck=False)
    ox = np.where(np.isfinite(ox) & np.isfinite(oy), ox, np.nan)
    oy = np.where(np.isfinite(ox), oy, np.nan)
    inverse = ~grid.geobox.transform
    cols, rows = inverse @ (ox, oy)
    with np.errstate(invalid="ignore"):
        c0, c1 = np.nanmin(cols, axis=1), np.nanmax(cols, axis=1)
        r0, r1 = np.nanmin(rows, axis=1), np.nanmax(rows, axis=1)
    step_r, step_c = grid.row_chunks[0], grid.col_chunks[0]
    height, width = grid.shape
    out = np.full((n, 4), -1, dtype="int64")
    ok = np.isfinite(c0) & np.isfinite(r0) & (c1 >= 0) & (r1 >= 0) & (c0 < width) & (r0 < height)
    out[ok, 0] = np.clip(np.floor(r0[ok] / step_r), 0, len(grid.row_edges) - 1)
    out[ok, 1] = np.clip(np.floor(r1[ok] / step_r), 0, len(grid.row_edges) - 1)
    out[ok, 2] = np.clip(np.floor(c0[ok] / step_c), 0, len(grid.col_edges) - 1)
    out[ok, 3] = np.clip(np.floor(c1[ok] / step_c), 0, len(grid.col_edges) - 1)
    out[~ok, 0], out[~ok, 1] = 0, -1
    return out


@dataclass(frozen=True)
class DeferredBand:
    """One band of a deferred read: output dtype and fill, and per (group, row, col) chunk
    the ids of the records meeting it, in fusion order (absent: no record)."""

    band: str
    dtype: np.dtype
    nodata: float | None
    fill: float
    chunks: dict[tuple[int, int, int], tuple[str, ...]] = field(repr=False)
    partitions: dict[str, tuple[int, int]] = field(repr=False)
    """Record id -> its (year, month) index partition (where the loaders find it)."""
    source_dtype: str = ""
    """The dtype every record of the band must have (checked by the workers)."""


@dataclass(frozen=True)
class DeferredPlan:
    """A large warped read: the output grid, time groups and per-band chunk membership; the
    records' metadata stays in the index until the workers' loader tasks read it."""

    grid: OutputGrid
    groups: tuple[TimeGroup, ...]
    ids: tuple[tuple[str, ...], ...]
    bands: tuple[DeferredBand, ...]
    params: WarpParams = field(repr=False)
    resolution: tuple[float, float] = (0.0, 0.0)
    collection: Any = field(default=None, repr=False)
    scaling: bool = False
    max_tile_bytes: int = limits.DEFAULT_MAX_TILE_BYTES
    skipped: tuple = ()
    """Always empty: records without metadata for a band are left out by the workers."""
    group_parts: tuple[tuple[tuple[int, int], ...], ...] = ()
    """Per time group, the (year, month) partitions of its records (its chunks' loaders)."""

    @property
    def times(self) -> tuple[np.datetime64, ...]:
        return tuple(g.time for g in self.groups)

    def explain(self) -> dict:
        """A dry run: the output grid, groups, tasks and records per chunk (the tiles and
        overview levels are planned by the workers, so they are not counted here)."""
        per_chunk = [len(v) for b in self.bands for v in b.chunks.values()]
        loaders = {(b.band, p) for b in self.bands for p in set(b.partitions.values())}
        blocks = (-(-len(self.groups) // self.grid.time_chunk) * len(self.grid.row_edges)
                  * len(self.grid.col_edges))
        return {
            **explain_grid(self.grid, self.groups, [b.band for b in self.bands], per_chunk),
            "planned_on": "workers",
            "overview_levels": None,
            "chunks": blocks * len(self.bands),
            "loaders": len(loaders),
            "tasks": blocks * len(self.bands) + len(loaders) + 2 * len(self.bands),
            "fetch_groups": sum(len(b.chunks) for b in self.bands),
            "tiles": None,
            "compressed_bytes": None,
            "skipped_records": [],
        }


def _output_crs(request: GridRequest) -> pyproj.CRS:
    if request.geobox is not None:
        return pyproj.CRS.from_user_input(request.geobox.crs.to_wkt())
    assert request.crs is not None
    return request.crs


def plan_deferred_read(collection: Any, geometry: Any, geometry_crs: pyproj.CRS,
                       bands: Sequence[str], request: GridRequest, *, groupby: Any = None,
                       chunks: Any = None, all_touched: bool = False, rescale: bool = False,
                       max_tile_bytes: int | str | None = None,
                       filters: dict[str, Any] | None = None) -> DeferredPlan:
    """Plan a large warped read without reading any record's tile tables.

    Parameters
    ----------
    collection
        The index (pickled once into the graph for the workers' loader tasks).
    geometry, geometry_crs
        The query geometry and its CRS (None with ``request.geobox``).
    bands
        Bands as the index names them.
    request
        Output grid: a geobox, or ``crs`` and ``resolution``.
    groupby, chunks, all_touched, rescale, max_tile_bytes
        As ``get_xarray``.
    filters
        ``Collection.subset`` arguments.

    Raises
    ------
    ValueError
        When no record meets the output grid, or none has metadata for a band. A record
        without metadata for a band is left out by the workers (logged); one of another
        dtype than the band's fails its chunks, named.
    """
    crs = _output_crs(request)
    lonlat_crs = pyproj.CRS.from_epsg(4326)
    vertices = None
    if request.geobox is not None:
        geobox = request.geobox
        lonlat = geobox.extent.to_crs("EPSG:4326").geom
    else:
        vertices = reproject_geometries([geometry], geometry_crs, crs, densify=0)[0]
        geobox = anchored_geobox(tuple(float(v) for v in vertices.bounds), crs,
                                 request.resolution)
        lonlat = reproject_geometries([geometry], geometry_crs, lonlat_crs)[0]
    grid = output_grid(geobox, request.resampling, chunks)
    light = light_records(collection, lonlat, bands, filters or {})
    ranges = _chunk_ranges(light.bbox, crs, grid)
    keep = np.flatnonzero(ranges[:, 1] >= ranges[:, 0])
    if not len(keep):
        raise ValueError(f"no record meets the output grid ({len(light.ids)} record(s) "
                         "matched the query)")
    grouped = [GroupedRecord(light.ids[k], light.times[k],
                             float((light.bbox[k, 0] + light.bbox[k, 2]) / 2)) for k in keep]
    groups = group_records(grouped, groupby)
    membership: dict[tuple[int, int, int], list[str]] = defaultdict(list)
    group_parts = []
    for g, group in enumerate(groups):
        parts = set()
        for m in group.members:
            k = keep[m]
            r0, r1, c0, c1 = ranges[k]
            rid = light.ids[k]
            parts.add(light.partition[k])
            for i in range(r0, r1 + 1):
                for j in range(c0, c1 + 1):
                    membership[(g, i, j)].append(rid)
        group_parts.append(tuple(sorted(parts)))
    members = {key: tuple(ids) for key, ids in membership.items()}
    partitions = {light.ids[k]: light.partition[k] for k in keep}
    deferred = []
    for band in bands:
        dtype, nodata = light.dtype[band], light.nodata[band]
        out_dtype, fill = _output_values(dtype, nodata, rescale)
        deferred.append(DeferredBand(band, out_dtype, None if rescale else nodata, fill,
                                     members, partitions, dtype.str))
    if time_chunk(chunks, 0) == 0:  # not given: blocks of about BLOCK_BYTES
        itemsize = max(b.dtype.itemsize for b in deferred)
        steps = BLOCK_BYTES // (grid.row_chunks[0] * grid.col_chunks[0] * itemsize)
        grid = replace(grid, time_chunk=int(min(max(steps, 1), MAX_TIME_CHUNK, len(groups))))
    params = WarpParams(crs.to_wkt(), request.resampling, rescale,
                        None if request.geobox is not None else
                        reproject_geometries([geometry], geometry_crs, crs)[0], all_touched)
    ids = tuple(tuple(grouped[m].id for m in g.members) for g in groups)
    resolution = (abs(geobox.transform.a), abs(geobox.transform.e))
    return DeferredPlan(grid, tuple(groups), ids, tuple(deferred), params, resolution,
                        collection.subset(**(filters or {})) if filters else collection,
                        rescale, limits.max_tile_bytes(max_tile_bytes), (),
                        tuple(group_parts))


def _output_values(dtype: np.dtype, nodata: float | None, rescale: bool
                   ) -> tuple[np.dtype, float]:
    from ..decode.spec import fill_value

    if rescale:
        return np.dtype("float32"), float("nan")
    if nodata is None and dtype.kind == "f":
        return dtype, float("nan")
    return dtype, fill_value(dtype, nodata)


def loader_ids(band: DeferredBand) -> dict[tuple[int, int], tuple[str, ...]]:
    """The record ids each (year, month) loader of a band reads."""
    by_partition: dict[tuple[int, int], list[str]] = defaultdict(list)
    for rid, partition in band.partitions.items():
        by_partition[partition].append(rid)
    return {p: tuple(sorted(ids)) for p, ids in by_partition.items()}


def load_partition(collection: Any, band: str, partition: tuple[int, int],
                   ids: tuple[str, ...], rescale: bool) -> dict[str, Any]:
    """Loader task: the records ``ids`` of one index partition, read with their band's
    metadata (``Record`` values keyed by id, with their (scale, offset) when rescaling)."""
    from .rescale import scaling_of_rows
    from .select import band_records

    year, month = partition
    columns = [S.ID, S.DATETIME, S.ASSETS, S.metadata_column(band)]
    if rescale and S.RASTER_BANDS in collection.schema.names:
        columns.append(S.RASTER_BANDS)
    where = ((pc.field(S.YEAR) == year) & (pc.field(S.MONTH) == month)
             & pc.field(S.ID).isin(pa.array(ids, pa.string())))
    table = collection.dataset.to_table(columns=columns, filter=where)
    records = {r.id: r for r in band_records(table, band)}
    scaling = scaling_of_rows(table, band) if rescale else {}
    return {"records": records, "scaling": scaling}

