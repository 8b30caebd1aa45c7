"""Warped read planning, pure: a selection -> output grid -> per (group, chunk) source reads.

A warped read puts records of any CRSs, resolutions and overview levels onto one output grid
(:mod:`rasteret_dask.plan.output_grid`). Each output chunk of each time group of each band is
one :class:`WarpChunk`: the byte ranges of every tile its records' source windows need (the
chunk's footprint in the record's CRS plus the kernel's margin, on the overview level GDAL
would read), and per record a :class:`SourceRead` saying how to decode those tiles into the
window and put the window onto the chunk: copied when the level's grid is the output grid
shifted by whole pixels, else resampled by GDAL's warper. Records are fused first-valid in the
group's order (:mod:`.grouping`). Tasks grow with chunks x groups x bands, not with records.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyproj
import shapely

from ..decode import limits
from ..decode.spec import fill_value
from ..plan.geometry import CelestialBodyError, body_lonlat, reproject_geometries, transformer
from ..plan.grid import as_crs, crs_name, same_crs
from ..plan.output_grid import (
    DEFAULT_WARP_CHUNK,
    WARP_TILE,
    GridRequest,
    OutputGrid,
    anchored_geobox,
    chunk_edges_px,
    describe_geobox,
    majority_crs,
    parse_chunks,
    time_chunk,
)
from ..plan.reproject import chunk_bounds_in, pixel_size_in
from .grouping import GroupedRecord, TimeGroup, group_records
from .select import Record, Selection
from .skipped import SkippedRecord
from .warp_sources import (
    WarpChunk,
    WarpParams,
    chunk_work,
    crs_key,
    record_crs,
    record_level,
    record_windows,
)

__all__ = ["WarpBandPlan", "WarpPlan", "plan_warped_read", "output_crs_of", "output_grid",
           "band_values", "grouped_records", "default_resolution", "explain_grid"]

logger = logging.getLogger("rasteret_dask.read")

_UPGRADE_HINT = ("this index was enriched before overview tiles were cached, so reads at coarser "
                 "resolutions read full resolution; run collection.enrich(only_missing=False) "
                 "once to cache them")
_warned: list[bool] = []  # the hint is logged once per process


@dataclass(frozen=True)
class WarpBandPlan:
    """One band of a warped read: output dtype and nodata, and its chunks keyed (g, i, j)
    (None: no record of the group reaches the chunk, which is filled)."""

    band: str
    dtype: np.dtype
    nodata: float | None
    fill: float
    chunks: dict[tuple[int, int, int], WarpChunk | None]
    levels: dict[int, int]
    """Overview level read -> records reading it (0 = full resolution)."""


@dataclass(frozen=True)
class WarpPlan:
    """A whole warped read: output grid, time groups, bands, mask and skipped records."""

    grid: OutputGrid
    groups: tuple[TimeGroup, ...]
    ids: tuple[tuple[str, ...], ...]
    bands: tuple[WarpBandPlan, ...]
    params: WarpParams = field(repr=False, default=None)  # type: ignore[assignment]
    skipped: tuple[SkippedRecord, ...] = ()
    upgrade_hint: str | None = None

    @property
    def times(self) -> tuple[np.datetime64, ...]:
        return tuple(g.time for g in self.groups)

    def explain(self) -> dict:
        """A dry run of the read, without any I/O: the output grid (CRS, resolution, shape,
        transform), time groups, overview levels per band, records per chunk, tasks, tiles and
        compressed bytes."""
        ranges = [r for b in self.bands for c in b.chunks.values() if c is not None
                  for r in c.ranges]
        per_chunk = [len(c.sources) for b in self.bands for c in b.chunks.values()
                     if c is not None]
        return {
            **explain_grid(self.grid, self.groups, [b.band for b in self.bands], per_chunk),
            "overview_levels": {b.band: dict(sorted(b.levels.items())) for b in self.bands},
            "chunks": sum(len(b.chunks) for b in self.bands),
            "fetch_groups": sum(1 for b in self.bands for c in b.chunks.values()
                                if c is not None and c.ranges),
            "tiles": len(ranges),
            "compressed_bytes": sum(r.end - r.start for r in ranges),
            "skipped_records": [str(r) for r in self.skipped],
            **({"upgrade": self.upgrade_hint} if self.upgrade_hint else {}),
        }


def explain_grid(grid: OutputGrid, groups: Sequence[TimeGroup], bands: list[str],
                 per_chunk: list[int]) -> dict:
    """The part of a warped read's ``explain()`` about its grid: records, groups, bands,
    shape, CRS, the output grid and the records per chunk (``per_chunk``: one count per
    chunk that has any)."""
    geobox = grid.geobox
    epsg = grid.crs.to_epsg()
    return {
        "records": sum(len(g.members) for g in groups),
        "groups": len(groups),
        "bands": bands,
        "shape": (len(groups), *grid.shape),
        "crs_epsg": epsg,
        "grid": {"crs": f"EPSG:{epsg}" if epsg else grid.crs.to_wkt(),
                 "resolution": (abs(geobox.transform.a), abs(geobox.transform.e)),
                 "transform": tuple(geobox.transform)[:6], "shape": grid.shape,
                 "chunk_shape": (grid.row_chunks[0], grid.col_chunks[0]),
                 "time_chunk": grid.time_chunk, "resampling": grid.resampling},
        "records_per_chunk": {"max": max(per_chunk, default=0),
                              "mean": round(float(np.mean(per_chunk)), 2) if per_chunk
                              else 0.0},
    }


def output_crs_of(selection: Selection, request: GridRequest) -> pyproj.CRS:
    """The read's output CRS: the geobox's, ``crs=``, the records' shared CRS, or the CRS of
    most records (said on the ``rasteret_dask.read`` logger)."""
    if request.geobox is not None:
        return pyproj.CRS.from_user_input(request.geobox.crs.to_wkt())
    if request.crs is not None:
        return request.crs
    crss = [record_crs(r.metadata) for r in selection.records]
    counts = Counter(crs_key(r.metadata) for r in selection.records)
    if len(counts) == 1:
        return crss[0]
    chosen = majority_crs(crss)
    listing = ", ".join(f"{crs_name(as_crs(c))} ({n})" for c, n in sorted(counts.items()))
    logger.info("records in %s: reading onto %s, the CRS of most records (pass crs= to "
                "choose)", listing, chosen.to_string())
    return chosen


def default_resolution(selection: Selection, crs: pyproj.CRS) -> tuple[float, float]:
    """The finest native resolution among the requested bands, in ``crs`` units (the local
    scale at a record's centre when it is in another CRS)."""
    best: tuple[float, float] | None = None
    for records in selection.records_by_band.values():
        for record in records:
            md = record.metadata
            src = record_crs(md)
            res = md.resolution
            if not same_crs(src, crs):
                centre = md.transform @ (md.image_width / 2, md.image_height / 2)
                local = pixel_size_in(centre, crs, (1.0, 1.0), src)  # one output unit, in src
                res = (res[0] / local[0], res[1] / local[1])
                side = float(np.sqrt(res[0] * res[1]))
                res = (side, side)
            if best is None or res[0] * res[1] < best[0] * best[1]:
                best = res
    assert best is not None
    return best


def grouped_records(records: Sequence[Record]) -> list[GroupedRecord]:
    """What ``groupby`` sees of each record (id, datetime, longitude of its image centre)."""
    out = []
    lonlat = pyproj.CRS.from_epsg(4326)
    for record in records:
        md = record.metadata
        x, y = md.transform @ (md.image_width / 2, md.image_height / 2)
        try:
            lon, _ = transformer(record_crs(md), lonlat).transform(x, y)
        except CelestialBodyError:  # another body: its own longitudes tell the solar day
            lon, _ = transformer(record_crs(md), body_lonlat(record_crs(md))).transform(x, y)
        out.append(GroupedRecord(record.id, record.datetime, float(lon)))
    return out


def _output_geobox(selection: Selection, request: GridRequest, crs: pyproj.CRS,
                   resolution: tuple[float, float], geometry: shapely.Geometry):
    bounds = shapely.bounds(geometry)
    return anchored_geobox(tuple(float(b) for b in bounds), crs, resolution)


def plan_warped_read(selection: Selection, request: GridRequest, *, groupby: Any = None,
                     chunks: Any = None, all_touched: bool = False, rescale: bool = False,
                     scaling: dict[tuple[str, str], tuple[float | None, float | None]]
                     | None = None,
                     max_tile_bytes: int | str | None = None) -> WarpPlan:
    """Plan a read of ``selection`` onto the requested output grid.

    Parameters
    ----------
    selection
        The read's records (any CRSs and resolutions).
    request
        Checked output-grid arguments (:func:`rasteret_dask.plan.output_grid.grid_request`).
    groupby
        Time grouping (see :mod:`.grouping`).
    chunks
        ``chunks=`` of the read (tiles of 512 output pixels, or pixels as a dict or pair).
    all_touched
        Keep every pixel the geometry touches (a geometry read).
    rescale
        Return float32 physical values (``scaling`` holds (scale, offset) per (band, id)).
    max_tile_bytes
        Tile size limit (see :func:`rasteret_dask.decode.limits.max_tile_bytes`).

    Raises
    ------
    ValueError
        When a band's records have several dtypes, or the output grid misses every record.
    """
    limit = limits.max_tile_bytes(max_tile_bytes)
    crs = output_crs_of(selection, request)
    if request.geobox is not None:
        resolution = (abs(request.geobox.transform.a), abs(request.geobox.transform.e))
    else:
        resolution = request.resolution or default_resolution(selection, crs)
    geometry = None
    if request.geobox is None:
        # the grid covers the geometry's vertices projected (odc-stac's extent); the mask is
        # the geometry with its edges densified, as they bend in the output CRS
        vertices = reproject_geometries([selection.geometry], selection.geometry_crs, crs,
                                        densify=0)[0]
        geometry = reproject_geometries([selection.geometry], selection.geometry_crs, crs)[0]
        geobox = _output_geobox(selection, request, crs, resolution, vertices)
    else:
        geobox = request.geobox
    grid = output_grid(geobox, request.resampling, chunks)
    records = selection.records
    groups = group_records(grouped_records(records), groupby)
    params = WarpParams(crs.to_wkt(), request.resampling, rescale, geometry, all_touched)
    out_transform = geobox.transform
    bounds_by_crs: dict[str, np.ndarray] = {}
    bands = []
    old_index = False
    for band, band_records in selection.records_by_band.items():
        dtype, nodata, out_dtype, fill = band_values(band, band_records, rescale)
        levels: Counter = Counter()
        resolved = {}
        for record in band_records:
            md = record.metadata
            epsg = crs_key(md)
            if epsg not in bounds_by_crs:
                bounds_by_crs[epsg] = chunk_bounds_in(out_transform, grid.row_edges,
                                                      grid.col_edges, crs, record_crs(md))
            old_index = old_index or (bool(md.overviews) and not md.has_overview_tiles)
            rl = record_level(record, crs, out_transform, resolution, request.resampling,
                              (scaling or {}).get((band, record.id), (None, None)))
            levels[rl.level] += 1
            windows = (None if rl.offset is not None
                       else record_windows(rl, bounds_by_crs[epsg]))
            resolved[record.id] = (rl, windows)
        work: dict[tuple[int, int, int], WarpChunk | None] = {}
        for g, group in enumerate(groups):
            members = [resolved[records[k].id] for k in group.members
                       if records[k].id in resolved]
            for i, (a, b) in enumerate(grid.row_edges):
                for j, (c, d) in enumerate(grid.col_edges):
                    work[(g, i, j)] = chunk_work(
                        [(rl, None if wins is None else wins[i, j]) for rl, wins in members],
                        (a, b, c, d), out_transform, out_dtype, fill, limit)
        bands.append(WarpBandPlan(band, out_dtype, None if rescale else nodata, fill, work,
                                  dict(levels)))
    if all(c is None for b in bands for c in b.chunks.values()):
        what = (f"geobox={describe_geobox(request.geobox)}" if request.geobox is not None
                else "the output grid")
        raise ValueError(f"{what} misses every record of the read "
                         f"({len(records)} record(s) matched the query)")
    ids = tuple(tuple(records[k].id for k in g.members) for g in groups)
    hint = _UPGRADE_HINT if old_index else None
    if old_index and not _warned:
        _warned.append(True)
        logger.warning(_UPGRADE_HINT)
    return WarpPlan(grid, tuple(groups), ids, tuple(bands), params, selection.skipped, hint)


def output_grid(geobox: Any, resampling: str, chunks: Any, default_time: int = 1
                ) -> OutputGrid:
    """The geobox cut into regular chunks (``chunks=``, default 1024 pixels and one time step)
    from its origin."""
    rows_px, cols_px = parse_chunks(chunks if chunks is not None
                                    else DEFAULT_WARP_CHUNK // WARP_TILE, WARP_TILE)
    height, width = int(geobox.shape.y), int(geobox.shape.x)
    return OutputGrid(geobox, resampling, chunk_edges_px(height, rows_px),
                      chunk_edges_px(width, cols_px), time_chunk(chunks, default_time))


def band_values(band: str, records: Sequence[Record], rescale: bool
                ) -> tuple[np.dtype, float | None, np.dtype, float]:
    """A band's source dtype and nodata (its records must share the dtype), and the read's
    output dtype and fill (float32 and NaN when rescaled; NaN for float data without nodata).

    Raises
    ------
    ValueError
        When the band's records have several dtypes.
    """
    first = records[0].metadata
    dtype = first.native_dtype
    for record in records:
        if record.metadata.native_dtype != dtype:
            raise ValueError(f"band {band!r}: record {record.id!r} has dtype "
                             f"{record.metadata.dtype}, others {first.dtype}; read bands of "
                             "one dtype")
    nodata = first.nodata
    if rescale:
        return dtype, nodata, np.dtype("float32"), float("nan")
    fill = fill_value(dtype, nodata)
    if nodata is None and dtype.kind == "f":
        fill = float("nan")
    return dtype, nodata, dtype, fill
