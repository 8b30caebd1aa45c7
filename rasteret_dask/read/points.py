"""Point samples through the read planner (pure): points -> record tiles -> chunks -> fetch groups.

For each band and record of an unaligned :class:`~.select.Selection`, the points are taken
into the record's CRS and pixel grid; every tile under at least one point becomes one output
chunk, the box of its points, read by a ``ChunkWork`` like any chunk of an array read. Tile
byte ranges are batched with :class:`~.plan.FetchGroups`; a tile several chunks need (bands
of one multi-sample file) is one range of one group, so every tile under the points is
fetched once. Tiles over the size limit are never fetched (their chunk raises, or reads as
nodata); a tile whose decoded size is over the limit is sparse or refused, so one pixel of it
stands for all its points and nothing tile-sized is allocated. A nodata fallback
(``sample_points(max_distance_pixels=)``) plans the pixels around chosen points the same way
(:func:`plan_neighbourhoods`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyproj
import shapely

from ..decode import DecodeSpec, limits
from ..decode.spec import fill_value
from ..plan.grid import pixel_coordinates, same_crs
from ..plan.reproject import gcp_locator
from ..tiff.cog_metadata import CogMetadata
from .masks import MaskRead, plan_mask
from .plan import (
    DEFAULT_GROUP_BYTES,
    DEFAULT_GROUP_TILES,
    NO_GROUP,
    ChunkWork,
    FetchGroup,
    FetchGroups,
    TileRead,
    expected_version,
)
from .select import Record, Selection

__all__ = ["PointSample", "PointPlan", "Neighbourhood", "plan_points", "plan_neighbourhoods",
           "sample_order"]


@dataclass(frozen=True, slots=True)
class PointSample:
    """Where point ``point``'s value of a record's band is: pixel (row, col) of chunk
    ``chunk`` of the plan."""

    point: int
    record: Record
    chunk: int
    row: int
    col: int


@dataclass(frozen=True)
class PointPlan:
    """Fetch groups, chunks (each with its group, :data:`~.plan.NO_GROUP` when nothing is
    fetched) and samples, in band, record, point order."""

    groups: tuple[FetchGroup, ...]
    chunks: tuple[tuple[int, ChunkWork], ...]
    samples: tuple[PointSample, ...]

    def explain(self) -> dict:
        """Chunks, tiles and compressed bytes the samples need, without any I/O."""
        return {
            "samples": len(self.samples),
            "chunks": len(self.chunks),
            "fetch_groups": len(self.groups),
            "tiles": sum(len(g.ranges) for g in self.groups),
            "compressed_bytes": sum(r.end - r.start for g in self.groups for r in g.ranges),
        }


Hit = tuple[int, int, int]
"""A point inside an image: (point number, image row, image column)."""


def _hits(md: CogMetadata, cols: np.ndarray, rows: np.ndarray) -> dict[int, list[Hit]]:
    """The points inside the image, grouped by the tile holding them (tiles in first-hit
    order, points in input order)."""
    by_tile: dict[int, list[Hit]] = {}
    for k, (col, row) in enumerate(zip(np.floor(cols), np.floor(rows), strict=True)):
        col, row = int(col), int(row)
        if 0 <= row < md.image_height and 0 <= col < md.image_width:
            by_tile.setdefault(md.tile_at(row, col), []).append((k, row, col))
    return by_tile


class _Planner:
    """Chunks and fetch groups of a point plan as records are added."""

    def __init__(self, limit: int, group_tiles: int, group_bytes: int) -> None:
        self.limit = limit
        self.fetch = FetchGroups(group_tiles, group_bytes)
        # (href, tile, mask tile?, group of a mask tile) -> group, index
        self.placed: dict[tuple[str, int, bool, int], tuple[int, int]] = {}
        self.chunks: list[tuple[int, ChunkWork]] = []
        self.samples: list[PointSample] = []

    def _payload(self, record: Record, tile: int) -> tuple[int, int]:
        key = (record.href, tile, False, -1)
        found = self.placed.get(key)
        if found is None:
            md = record.metadata
            start, end = md.tile_range(tile)
            self.fetch.open_chunk(2 if md.mask is not None else 1)
            found = (self.fetch.current,
                     self.fetch.add(record.href, tile, start, end - start, record.label,
                                    expected_version(md)))
            self.placed[key] = found
            if md.mask is not None:  # the mask tiles under the whole tile join its group
                top = (tile // md.tiles_across) * md.tile_height
                left = (tile % md.tiles_across) * md.tile_width
                self._mask(record, found[0], (top, top + md.tile_height),
                           (left, left + md.tile_width))
        return found

    def _mask(self, record: Record, group: int, rows: tuple[int, int],
              cols: tuple[int, int]) -> MaskRead | None:
        """The record's internal mask under a chunk of fetch group ``group`` (the mask tiles
        were added to it with the chunk's data tile)."""
        def register(tile: int, start: int, count: int) -> int:
            key = (record.href, tile, True, group)
            found = self.placed.get(key)
            if found is None:
                assert group == self.fetch.current, "a mask tile outside its data tile's group"
                found = (group, self.fetch.add(record.href, tile, start, count, record.label,
                                               expected_version(record.metadata), mask=True))
                self.placed[key] = found
            return found[1]

        return plan_mask(record.metadata.mask, rows, cols, register, self.limit)

    def add(self, record: Record, cols: np.ndarray, rows: np.ndarray) -> None:
        """Plan the samples of one record's band at pixel positions (``cols``, ``rows``)."""
        md = record.metadata
        spec = DecodeSpec.from_metadata(md)
        fill = fill_value(md.native_dtype, md.nodata)
        sample = md.sample_plane(record.band_index)
        where: dict[int, tuple[int, int, int]] = {}
        for tile, hits in _hits(md, cols, rows).items():
            count = md.tile_byte_counts[tile]
            problem = limits.tile_size_problem(spec, count, self.limit, tile)
            top = (tile // md.tiles_across) * md.tile_height
            left = (tile % md.tiles_across) * md.tile_width
            uniform = problem is not None or spec.nbytes > self.limit
            if uniform:
                # refused, or sparse (the only tiles over the limit that are read): one value,
                # so one pixel stands for every point of the tile
                _, row, col = hits[0]
                r0, r1, c0, c1 = row, row + 1, col, col + 1
            else:
                r0, r1 = min(h[1] for h in hits), max(h[1] for h in hits) + 1
                c0, c1 = min(h[2] for h in hits), max(h[2] for h in hits) + 1
            shape = (r1 - r0, c1 - c0)
            if problem is not None:  # never fetched: decoding the chunk raises it
                self.chunks.append((NO_GROUP, ChunkWork(spec, shape, fill, sample, (),
                                                        record.label, problem)))
            else:
                group, index = self._payload(record, tile)
                read = TileRead(index, (r0 - top, r1 - top, c0 - left, c1 - left),
                                (0, shape[0], 0, shape[1]))
                mask = self._mask(record, group, (r0, r1), (c0, c1))
                self.chunks.append((group, ChunkWork(spec, shape, fill, sample, (read,),
                                                     record.label, None, mask)))
            chunk = len(self.chunks) - 1
            for k, row, col in hits:
                where[k] = (chunk, 0, 0) if uniform else (chunk, row - r0, col - c0)
        for k in sorted(where):
            chunk, row, col = where[k]
            self.samples.append(PointSample(k, record, chunk, row, col))


def plan_points(
    selection: Selection,
    *,
    max_tile_bytes: int | str | None = None,
    group_tiles: int = DEFAULT_GROUP_TILES,
    group_bytes: int = DEFAULT_GROUP_BYTES,
) -> PointPlan:
    """Plan sampling every record of every band of ``selection`` at its geometry's points.

    Parameters
    ----------
    selection
        An unaligned selection (every band keeps its own records) whose geometry is a
        (multi)point; records may be in several CRSs.
    max_tile_bytes
        Tiles declaring more are never fetched (see
        :func:`rasteret_dask.decode.limits.max_tile_bytes`).
    group_tiles, group_bytes
        Fetch-group bounds, as for array reads.

    Returns
    -------
    PointPlan
        Samples in band, record, point order; points outside a record's image have none.
    """
    planner = _Planner(limits.max_tile_bytes(max_tile_bytes), group_tiles, group_bytes)
    pixels = _PointPixels(selection)
    for records in selection.records_by_band.values():
        for record in records:
            planner.add(record, *pixels.of(record))
    return PointPlan(planner.fetch.close(), tuple(planner.chunks), tuple(planner.samples))


class _PointPixels:
    """The selection's points as fractional (col, row) pixel positions of a record's grid
    (points reprojected once per CRS)."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.coordinates: list[tuple[pyproj.CRS, np.ndarray]] = []

    def of(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        grid = self.selection.grids[(record.band, record.id)]
        xy = next((xy for crs, xy in self.coordinates if same_crs(crs, grid.crs)), None)
        if xy is None:
            xy = shapely.get_coordinates(self.selection.geometry_in(grid.crs))
            self.coordinates.append((grid.crs, xy))
        md = record.metadata
        if md.has_gcps:  # located as GDAL's GCP transformer locates them
            return gcp_locator(md.gcps)(xy[:, 0], xy[:, 1])
        return pixel_coordinates(xy[:, 0], xy[:, 1], grid.transform)


@dataclass(frozen=True)
class Neighbourhood:
    """The pixels around point ``point``'s own pixel in a record's band, inside its image.

    ``row``/``col`` are the point's fractional image position; ``pixels`` maps each pixel
    (image row, image column) to its sample's position in the plan's ``samples``.
    """

    point: int
    record: Record
    row: float
    col: float
    pixels: Mapping[tuple[int, int], int]


def plan_neighbourhoods(
    selection: Selection,
    centres: Sequence[tuple[int, Record]],
    offsets: Sequence[tuple[int, int]],
    *,
    max_tile_bytes: int | str | None = None,
    group_tiles: int = DEFAULT_GROUP_TILES,
    group_bytes: int = DEFAULT_GROUP_BYTES,
) -> tuple[PointPlan, tuple[Neighbourhood, ...]]:
    """Plan reading the pixels at ``offsets`` around points' own pixels (a nodata fallback).

    Parameters
    ----------
    selection
        The selection the points were sampled from.
    centres
        (point number, record of a band) pairs whose point lies inside the record's image.
    offsets
        (row, col) offsets from the point's own pixel; those outside the image are left out.
    max_tile_bytes, group_tiles, group_bytes
        As :func:`plan_points`.

    Returns
    -------
    (PointPlan, tuple of Neighbourhood)
        The plan's samples are the neighbourhood pixels (each tile fetched once); one
        neighbourhood per centre, in order.
    """
    planner = _Planner(limits.max_tile_bytes(max_tile_bytes), group_tiles, group_bytes)
    pixels = _PointPixels(selection)
    found = []
    for point, record in centres:
        cols, rows = pixels.of(record)
        col, row = float(cols[point]), float(rows[point])
        md = record.metadata
        keys = [(r, c) for r, c in ((int(np.floor(row)) + dr, int(np.floor(col)) + dc)
                                    for dr, dc in offsets)
                if 0 <= r < md.image_height and 0 <= c < md.image_width]
        first = len(planner.samples)
        if keys:
            planner.add(record, np.array([c + 0.5 for _, c in keys]),
                        np.array([r + 0.5 for r, _ in keys]))
        where = {keys[s.point]: first + n for n, s in enumerate(planner.samples[first:])}
        found.append(Neighbourhood(point, record, row, col, where))
    plan = PointPlan(planner.fetch.close(), tuple(planner.chunks), tuple(planner.samples))
    return plan, tuple(found)


def sample_order(plan: PointPlan) -> list[tuple[int, str, dict]]:
    """Output rows of a point plan: (point, record id, {"datetime", band: sample}) sorted by
    point then time (ties in plan order), as ``sample_points`` returns them."""
    rows: dict[tuple[int, str], dict] = {}
    for s in plan.samples:
        entry = rows.setdefault((s.point, s.record.id), {"datetime": s.record.datetime})
        entry[s.record.band] = s
    ordered = sorted(rows.items(), key=lambda kv: (kv[0][0], kv[1]["datetime"]))
    return [(k, rid, entry) for (k, rid), entry in ordered]
