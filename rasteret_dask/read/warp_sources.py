"""What one warped chunk reads (pure): per record, the level and window; per chunk, the tiles.

Shared by the client-side plan of a read (:mod:`.warp_plan`, every chunk at once) and the
worker-side plan of a large read (:mod:`.deferred`, one chunk per task): a record's band is
first resolved once into a :class:`RecordLevel` (the overview level odc-stac would read, whole-
pixel placement on the output grid when there is one, the kernel's margin), then each chunk's
window on that level becomes the tiles to fetch and a :class:`SourceRead`, gathered with the
chunk's other records into a :class:`WarpChunk`.

A record's internal mask is read with its window (the mask tiles under it, in the chunk's
ranges); a rotated or sheared record's window covers the chunk's footprint through all four
corners; a record georeferenced by ground control points is located by GDAL's GCP transformer
(its windows, and the GCPs its window is warped with).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyproj
import shapely
from affine import Affine

from ..decode import DecodeSpec, limits
from ..io import ByteRange
from ..plan.grid import crs_text, same_crs
from ..plan.reproject import (
    SAMPLES,
    aligned_offset,
    chunk_windows,
    gcp_locator,
    kernel_margin,
    pixel_size_in,
)
from ..plan.tiles import axis_tiles
from ..tiff.cog_metadata import CogMetadata
from .masks import MaskRead, plan_mask
from .plan import TileRead, expected_version
from .select import Record

__all__ = ["SourceRead", "WarpChunk", "WarpParams", "RecordLevel", "record_level",
           "record_windows", "chunk_work", "record_crs", "crs_key"]

Coefficients = tuple[float, float, float, float, float, float]
Gcp = tuple[float, float, float, float, float]


@dataclass(frozen=True, slots=True)
class SourceRead:
    """One record's part of a chunk: its tiles decoded into a window of its level, then copied
    (``placement``: rows/cols of the chunk the window fills, pixel for pixel) or warped."""

    label: str
    spec: DecodeSpec
    sample: int
    crs: str
    transform: Coefficients
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
    mask: MaskRead | None = None
    """The record's internal mask under the window (None: it has none)."""
    gcps: tuple[Gcp, ...] | None = None
    """For a record georeferenced by ground control points: its GCPs in the window's pixels
    (``transform`` is then their first-order fit, for planning only)."""


@dataclass(frozen=True)
class WarpChunk:
    """One output chunk (1, h, w) of one band and time group: its byte ranges and records."""

    shape: tuple[int, int]
    transform: Coefficients
    dtype: str
    fill: float
    ranges: tuple[ByteRange, ...]
    sources: tuple[SourceRead, ...]
    error: str | None = None

    def range_labels(self) -> tuple[str, ...]:
        """The record (band, href) each range belongs to, named in its fetch errors."""
        labels = [""] * len(self.ranges)
        for source in self.sources:
            tiles = source.tiles + (() if source.mask is None else source.mask.tiles)
            for tile in tiles:
                labels[tile.payload] = labels[tile.payload] or source.label
        return tuple(labels)


@dataclass(frozen=True)
class WarpParams:
    """What every chunk of a warped read shares (one graph key, not one copy per task): the
    output CRS, the kernel, rescaling, and the query geometry in the output CRS whose outside
    each chunk fills with nodata (None: no mask)."""

    crs: str
    resampling: str
    rescale: bool = False
    geometry: shapely.Geometry | None = None
    all_touched: bool = False


def record_crs(md: CogMetadata) -> pyproj.CRS:
    """A record's CRS (its EPSG code, or rebuilt from its GeoKeys)."""
    crs = md.crs
    if crs is None:
        raise ValueError("the record has no CRS (neither an EPSG code nor GeoKeys to build "
                         "one from)")
    return crs


def crs_key(md: CogMetadata) -> str:
    """A record's CRS as text (``EPSG:n``, else WKT2): its key and what GDAL is given."""
    return crs_text(record_crs(md))


@dataclass(frozen=True, slots=True)
class RecordLevel:
    """A record's band resolved for one output grid: the level read, its metadata, its
    whole-pixel (row, col) on the output grid when it can be copied, the kernel's margin."""

    record: Record
    level: int
    metadata: CogMetadata
    offset: tuple[int, int] | None
    margin: int
    scaling: tuple[float | None, float | None] = (None, None)

    @property
    def crs(self) -> pyproj.CRS:
        return record_crs(self.record.metadata)


def record_level(record: Record, crs: pyproj.CRS, transform: Affine,
                 resolution: tuple[float, float], resampling: str,
                 scaling: tuple[float | None, float | None] = (None, None)) -> RecordLevel:
    """Resolve ``record`` for an output grid (``crs``, north-up ``transform`` of pixel size
    ``resolution``): the overview level odc-stac reads at the output pixel size (the local
    scale at the record's centre), and whole-pixel placement or the kernel's margin."""
    md = record.metadata
    src = record_crs(md)
    centre = md.transform @ (md.image_width / 2, md.image_height / 2)
    target = pixel_size_in(centre, src, resolution, crs)
    level = md.choose_level(target) if md.overviews else 0
    lmd = md.level(level, context=record.label) if level else md
    offset = (aligned_offset(lmd.transform, transform)
              if same_crs(src, crs) and not md.has_gcps else None)
    scale = max(target[0] / lmd.resolution[0], target[1] / lmd.resolution[1])
    return RecordLevel(record, level, lmd, offset, kernel_margin(resampling, scale), scaling)


def record_windows(rl: RecordLevel, bounds: np.ndarray) -> np.ndarray:
    """The record's windows (row0, row1, col0, col1) on its level for chunks of ``bounds``
    (:func:`rasteret_dask.plan.reproject.chunk_bounds_in` in its CRS), with the kernel's
    margin: through its transform, or for a record georeferenced by ground control points
    through GDAL's GCP transformer (each chunk's outline located at several points)."""
    md, full = rl.metadata, rl.record.metadata
    size = (md.image_height, md.image_width)
    if not full.has_gcps:
        return chunk_windows(bounds, md.transform, size, rl.margin)
    scale = (md.image_width / full.image_width, md.image_height / full.image_height)
    return chunk_windows(bounds, gcp_locator(full.gcps, scale), size, rl.margin + 1, SAMPLES)


def _window_gcps(full: CogMetadata, md: CogMetadata, r0: int, c0: int) -> tuple[Gcp, ...]:
    """A GCP record's points in the pixels of a window at (``r0``, ``c0``) of level ``md``."""
    sx, sy = md.image_width / full.image_width, md.image_height / full.image_height
    return tuple((row * sy - r0, col * sx - c0, x, y, z) for row, col, x, y, z in full.gcps)


def _source_read(rl: RecordLevel, window: Sequence[int], placement, ranges: list[ByteRange],
                 index: dict, limit: int) -> SourceRead | str:
    """The SourceRead of a record's window (row0, row1, col0, col1) of its level; the
    tile-size problem instead when a tile is over the limit."""
    record, md = rl.record, rl.metadata
    r0, r1, c0, c1 = (int(v) for v in window)
    spec = DecodeSpec.from_metadata(md)
    oversize = spec.nbytes > limit
    expect = expected_version(md)
    reads = []
    for tile_row, s0, s1, d0, d1 in axis_tiles(r0, r1, md.tile_height, md.image_height):
        for tile_col, s2, s3, d2, d3 in axis_tiles(c0, c1, md.tile_width, md.image_width):
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
    def register(tile: int, start: int, count: int) -> int:
        key = (record.href, md.image_width, tile, "mask")
        k = index.get(key)
        if k is None:
            k = index[key] = len(ranges)
            ranges.append(ByteRange(record.href, start, start + count, expect))
        return k

    mask = plan_mask(md.mask, (r0, r1), (c0, c1), register, limit)
    transform = md.transform @ Affine.translation(c0, r0)
    full = record.metadata
    return SourceRead(record.label, spec, md.sample_plane(record.band_index),
                      crs_key(md), tuple(transform)[:6], (r1 - r0, c1 - c0),
                      md.nodata, tuple(reads), placement, rl.scaling[0], rl.scaling[1],
                      (full.image_height, full.image_width, tuple(full.transform)[:6]),
                      rl.level, (r0, c0), mask,
                      _window_gcps(full, md, r0, c0) if full.has_gcps else None)


def chunk_work(members: Sequence[tuple[RecordLevel, np.ndarray | None]],
               edges: tuple[int, int, int, int], transform: Affine, dtype: np.dtype,
               fill: float, limit: int) -> WarpChunk | None:
    """The work of one chunk: rows [a, b) and cols [c, d) of the output grid of ``transform``,
    read from ``members`` in fusion order, each with its window on its level for this chunk
    (from :func:`record_windows`; None for a record placed by whole pixels). None when no member reaches the chunk."""
    a, b, c, d = edges
    ranges: list[ByteRange] = []
    index: dict = {}
    sources = []
    for rl, window in members:
        if rl.offset is not None:
            row, col = rl.offset
            md = rl.metadata
            r0, r1 = max(a, row), min(b, row + md.image_height)
            c0, c1 = max(c, col), min(d, col + md.image_width)
            if r1 <= r0 or c1 <= c0:
                continue
            window = (r0 - row, r1 - row, c0 - col, c1 - col)
            placement = (r0 - a, r1 - a, c0 - c, c1 - c)
        else:
            if window is None or window[1] <= window[0] or window[3] <= window[2]:
                continue
            placement = None
        read = _source_read(rl, window, placement, ranges, index, limit)
        if isinstance(read, str):
            return WarpChunk((b - a, d - c), _chunk_transform(transform, a, c), dtype.str,
                             fill, (), (), f"{rl.record.label}: {read}")
        sources.append(read)
    if not sources:
        return None
    return WarpChunk((b - a, d - c), _chunk_transform(transform, a, c), dtype.str, fill,
                     tuple(ranges), tuple(sources))


def _chunk_transform(transform: Affine, row: int, col: int) -> Coefficients:
    return tuple(transform @ Affine.translation(col, row))[:6]
