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
from affine import Affine

from ..decode import DecodeSpec, limits
from ..decode.spec import fill_value
from ..io import ByteRange
from ..plan.geometry import reproject_geometries, transformer
from ..plan.mask import geometry_mask
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
)
from ..plan.reproject import (
    aligned_offset,
    chunk_bounds_in,
    chunk_windows,
    kernel_margin,
    pixel_size_in,
)
from ..plan.tiles import axis_tiles
from ..tiff.cog_metadata import CogMetadata
from .grouping import GroupedRecord, TimeGroup, group_records
from .plan import TileRead, expected_version
from .select import Record, Selection
from .skipped import SkippedRecord

__all__ = ["SourceRead", "WarpChunk", "WarpBandPlan", "WarpPlan", "plan_warped_read",
           "output_crs_of"]

logger = logging.getLogger("rasteret_dask.read")

_UPGRADE_HINT = ("this index was enriched before overview tiles were cached, so reads at coarser "
                 "resolutions read full resolution; run collection.enrich(only_missing=False) "
                 "once to cache them")
_warned: list[bool] = []  # the hint is logged once per process


@dataclass(frozen=True, slots=True)
class SourceRead:
    """One record's part of a chunk: its tiles decoded into a window of its level, then copied
    (``placement``: rows/cols of the chunk the window fills, pixel for pixel) or warped."""

    label: str
    spec: DecodeSpec
    sample: int
    crs: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]
    nodata: float | None
    tiles: tuple[TileRead, ...]
    placement: tuple[int, int, int, int] | None = None
    scale: float | None = None
    offset: float | None = None
    image: tuple[int, int, tuple[float, ...]] = (0, 0, ())
    """Full-resolution (height, width, transform) of the record's image: where the worker
    finds the chunk's region reached by it (odc-geo's ``compute_reproject_roi``)."""
    level: int = 0
    origin: tuple[int, int] = (0, 0)
    """(row, col) of the window in its level's pixels."""


@dataclass(frozen=True)
class WarpChunk:
    """Everything one task needs to fill one output chunk (1, h, w) of one band and group."""

    shape: tuple[int, int]
    transform: tuple[float, float, float, float, float, float]
    crs: str
    dtype: str
    fill: float
    resampling: str
    ranges: tuple[ByteRange, ...]
    sources: tuple[SourceRead, ...]
    rescale: bool = False
    error: str | None = None


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
    mask: np.ndarray | None = field(default=None, repr=False)
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
        geobox = self.grid.geobox
        epsg = self.grid.crs.to_epsg()
        return {
            "records": sum(len(g.members) for g in self.groups),
            "groups": len(self.groups),
            "bands": [b.band for b in self.bands],
            "shape": (len(self.groups), *self.grid.shape),
            "crs_epsg": epsg,
            "grid": {"crs": f"EPSG:{epsg}" if epsg else self.grid.crs.to_wkt(),
                     "resolution": (abs(geobox.transform.a), abs(geobox.transform.e)),
                     "transform": tuple(geobox.transform)[:6],
                     "shape": self.grid.shape,
                     "chunk_shape": (self.grid.row_chunks[0], self.grid.col_chunks[0]),
                     "resampling": self.grid.resampling},
            "overview_levels": {b.band: dict(sorted(b.levels.items())) for b in self.bands},
            "records_per_chunk": {"max": max(per_chunk, default=0),
                                  "mean": round(float(np.mean(per_chunk)), 2) if per_chunk
                                  else 0.0},
            "chunks": sum(len(b.chunks) for b in self.bands),
            "fetch_groups": sum(1 for b in self.bands for c in b.chunks.values()
                                if c is not None and c.ranges),
            "tiles": len(ranges),
            "compressed_bytes": sum(r.end - r.start for r in ranges),
            "skipped_records": [str(r) for r in self.skipped],
            **({"upgrade": self.upgrade_hint} if self.upgrade_hint else {}),
        }


def _record_crs(md: CogMetadata) -> pyproj.CRS:
    return pyproj.CRS.from_epsg(int(md.crs_epsg))


def output_crs_of(selection: Selection, request: GridRequest) -> pyproj.CRS:
    """The read's output CRS: the geobox's, ``crs=``, the records' shared CRS, or the CRS of
    most records (said on the ``rasteret_dask.read`` logger)."""
    if request.geobox is not None:
        return pyproj.CRS.from_user_input(request.geobox.crs.to_wkt())
    if request.crs is not None:
        return request.crs
    codes = [r.metadata.crs_epsg for r in selection.records]
    counts = Counter(codes)
    if len(counts) == 1:
        return pyproj.CRS.from_epsg(int(codes[0]))
    chosen = majority_crs([pyproj.CRS.from_epsg(int(c)) for c in codes])
    listing = ", ".join(f"EPSG:{c} ({n})" for c, n in sorted(counts.items()))
    logger.info("records in %s: reading onto %s, the CRS of most records (pass crs= to "
                "choose)", listing, chosen.to_string())
    return chosen


def _default_resolution(selection: Selection, crs: pyproj.CRS) -> tuple[float, float]:
    """The finest native resolution among the requested bands, in ``crs`` units (the local
    scale at a record's centre when it is in another CRS)."""
    best: tuple[float, float] | None = None
    for records in selection.records_by_band.values():
        for record in records:
            md = record.metadata
            src = _record_crs(md)
            res = md.resolution
            if src != crs:
                centre = md.transform @ (md.image_width / 2, md.image_height / 2)
                local = pixel_size_in(centre, crs, (1.0, 1.0), src)  # one output unit, in src
                res = (res[0] / local[0], res[1] / local[1])
                side = float(np.sqrt(res[0] * res[1]))
                res = (side, side)
            if best is None or res[0] * res[1] < best[0] * best[1]:
                best = res
    assert best is not None
    return best


def _grouped(records: Sequence[Record]) -> list[GroupedRecord]:
    out = []
    lonlat = pyproj.CRS.from_epsg(4326)
    for record in records:
        md = record.metadata
        x, y = md.transform @ (md.image_width / 2, md.image_height / 2)
        lon, _ = transformer(_record_crs(md), lonlat).transform(x, y)
        out.append(GroupedRecord(record.id, record.datetime, float(lon)))
    return out


def _level(md: CogMetadata, target: tuple[float, float]) -> tuple[int, CogMetadata]:
    """The overview level GDAL would read for pixels of ``target`` size, and its metadata."""
    level = md.choose_level(target) if md.overviews else 0
    return level, (md.level(level) if level else md)


def _output_geobox(selection: Selection, request: GridRequest, crs: pyproj.CRS,
                   resolution: tuple[float, float], geometry: shapely.Geometry):
    bounds = shapely.bounds(geometry)
    return anchored_geobox(tuple(float(b) for b in bounds), crs, resolution)


def _mask(geometry: shapely.Geometry, geobox: Any, all_touched: bool) -> np.ndarray | None:
    """The pixels of the geobox outside the geometry (True), or None when none is."""
    height, width = int(geobox.shape.y), int(geobox.shape.x)
    outside = geometry_mask([geometry], (height, width), geobox.transform,
                            all_touched=all_touched)
    return outside if outside.any() else None


def _source_read(record: Record, md: CogMetadata, level: int, window: np.ndarray, placement,
                 crs: str, ranges: list[ByteRange], index: dict, limit: int,
                 scaling: tuple[float | None, float | None]) -> SourceRead | str:
    """The SourceRead of one record's window (row0, row1, col0, col1) of level ``md``; the
    tile-size problem instead when a tile is over the limit."""
    r0, r1, c0, c1 = (int(v) for v in window)
    spec = DecodeSpec.from_metadata(md)
    oversize = spec.nbytes > limit
    expect = expected_version(md)
    reads = []
    rows = axis_tiles(r0, r1, md.tile_height, md.image_height)
    cols = axis_tiles(c0, c1, md.tile_width, md.image_width)
    for tile_row, s0, s1, d0, d1 in rows:
        for tile_col, s2, s3, d2, d3 in cols:
            tile = tile_row * md.tiles_across + tile_col
            count = md.tile_byte_counts[tile]
            if count < 0 or count > limit or (count and oversize):
                return limits.tile_size_problem(spec, count, limit, tile) or "tile too large"
            key = (record.href, md.image_width, tile)
            k = index.get(key)
            if k is None:
                k = index[key] = len(ranges)
                ranges.append(ByteRange(record.href, md.tile_offsets[tile],
                                        md.tile_offsets[tile] + count, expect))
            reads.append(TileRead(k, (s0, s1, s2, s3), (d0, d1, d2, d3)))
    transform = md.transform @ Affine.translation(c0, r0)
    full = record.metadata
    return SourceRead(record.label, spec, md.sample_plane(record.band_index), crs,
                      tuple(transform)[:6], (r1 - r0, c1 - c0), md.nodata, tuple(reads),
                      placement, scaling[0], scaling[1],
                      (full.image_height, full.image_width, tuple(full.transform)[:6]), level,
                      (r0, c0))


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
        resolution = request.resolution or _default_resolution(selection, crs)
    geometry = None
    mask = None
    if request.geobox is None:
        # the grid covers the geometry's vertices projected (odc-stac's extent); the mask is
        # the geometry with its edges densified, as they bend in the output CRS
        vertices = reproject_geometries([selection.geometry], selection.geometry_crs, crs,
                                        densify=0)[0]
        geometry = reproject_geometries([selection.geometry], selection.geometry_crs, crs)[0]
        geobox = _output_geobox(selection, request, crs, resolution, vertices)
        mask = _mask(geometry, geobox, all_touched)
    else:
        geobox = request.geobox
    rows_px, cols_px = parse_chunks(chunks if chunks is not None
                                    else DEFAULT_WARP_CHUNK // WARP_TILE, WARP_TILE)
    height, width = int(geobox.shape.y), int(geobox.shape.x)
    grid = OutputGrid(geobox, request.resampling, chunk_edges_px(height, rows_px),
                      chunk_edges_px(width, cols_px))
    records = selection.records
    groups = group_records(_grouped(records), groupby)
    crs_wkt = crs.to_wkt()
    out_transform = geobox.transform
    bounds_by_crs: dict[int, np.ndarray] = {}
    bands = []
    old_index = False
    for band, band_records in selection.records_by_band.items():
        first = band_records[0].metadata
        dtype = first.native_dtype
        for record in band_records:
            if record.metadata.native_dtype != dtype:
                raise ValueError(f"band {band!r}: record {record.id!r} has dtype "
                                 f"{record.metadata.dtype}, others {first.dtype}; read bands "
                                 "of one dtype")
        nodata = first.nodata
        out_dtype = np.dtype("float32") if rescale else dtype
        fill = float("nan") if rescale else fill_value(dtype, nodata)
        if not rescale and nodata is None and dtype.kind == "f":
            fill = float("nan")
        windows = {}
        levels: Counter = Counter()
        for record in band_records:
            md = record.metadata
            epsg = int(md.crs_epsg)
            if epsg not in bounds_by_crs:
                bounds_by_crs[epsg] = chunk_bounds_in(out_transform, grid.row_edges,
                                                      grid.col_edges, crs, _record_crs(md))
            centre = md.transform @ (md.image_width / 2, md.image_height / 2)
            target = pixel_size_in(centre, _record_crs(md), resolution, crs)
            old_index = old_index or (bool(md.overviews) and not md.has_overview_tiles)
            level, lmd = _level(md, target)
            levels[level] += 1
            offset = aligned_offset(lmd.transform, out_transform) \
                if _record_crs(md) == crs else None
            if offset is not None:
                windows[record.id] = (level, lmd, offset, None)
            else:
                scale = max(target[0] / lmd.resolution[0], target[1] / lmd.resolution[1])
                margin = kernel_margin(request.resampling, scale)
                windows[record.id] = (level, lmd, None, chunk_windows(
                    bounds_by_crs[epsg], lmd.transform, (lmd.image_height, lmd.image_width),
                    margin))
        by_id = {r.id: r for r in band_records}
        work: dict[tuple[int, int, int], WarpChunk | None] = {}
        for g, group in enumerate(groups):
            members = [by_id[records[k].id] for k in group.members if records[k].id in by_id]
            for i, (a, b) in enumerate(grid.row_edges):
                for j, (c, d) in enumerate(grid.col_edges):
                    ranges: list[ByteRange] = []
                    index: dict = {}
                    sources = []
                    error = None
                    for record in members:
                        level, lmd, offset, wins = windows[record.id]
                        if offset is not None:
                            r0, r1 = max(a, offset[0]), min(b, offset[0] + lmd.image_height)
                            c0, c1 = max(c, offset[1]), min(d, offset[1] + lmd.image_width)
                            if r1 <= r0 or c1 <= c0:
                                continue
                            window = (r0 - offset[0], r1 - offset[0], c0 - offset[1],
                                      c1 - offset[1])
                            placement = (r0 - a, r1 - a, c0 - c, c1 - c)
                        else:
                            window = wins[i, j]
                            if window[1] <= window[0] or window[3] <= window[2]:
                                continue
                            placement = None
                        read = _source_read(record, lmd, level, window, placement,
                                            f"EPSG:{lmd.crs_epsg}", ranges, index, limit,
                                            (scaling or {}).get((band, record.id),
                                                                (None, None)))
                        if isinstance(read, str):
                            error = f"{record.label}: {read}"
                            break
                        sources.append(read)
                    if not sources and error is None:
                        work[(g, i, j)] = None
                        continue
                    transform = out_transform @ Affine.translation(c, a)
                    work[(g, i, j)] = WarpChunk(
                        (b - a, d - c), tuple(transform)[:6], crs_wkt, out_dtype.str, fill,
                        request.resampling, tuple(ranges) if error is None else (),
                        tuple(sources) if error is None else (), rescale, error)
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
    return WarpPlan(grid, tuple(groups), ids, tuple(bands), mask, selection.skipped, hint)
