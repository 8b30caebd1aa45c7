"""Read planning, pure: a selection -> output grid -> regular chunks -> byte ranges.

The plan is made of frozen values. Output chunks are regular from the output window's origin
(every chunk the same size but the last along each axis: Zarr-ready), so a chunk edge may cut
through a tile. Each output chunk's ``ChunkWork`` carries only its own tiles' positions and
decode parameters; the byte ranges of many chunks are batched into ``FetchGroup``s so that one
Dask task fetches many tiles concurrently (requests in flight are not capped by the number of
Dask threads). Neighbouring chunks share a fetch group while it has room, and a tile that
several chunks read is one range of one group: a chunk planned after that group closed borrows
the range from it (its task depends on both fetch tasks). So every tile is fetched once, and
decoded once per process (see :mod:`.shared_tiles`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import dask
import numpy as np
import shapely
from affine import Affine

from ..decode import DecodeSpec, limits
from ..decode.spec import fill_value
from ..io import ByteRange
from ..io.identity import ObjectIdentity
from ..plan.grid import GridSpec, Window, crs_text
from ..plan.mask import geometry_mask
from ..plan.output_grid import chunk_edges_px
from ..plan.tiles import axis_tiles, strips_per_chunk
from ..tiff.cog_metadata import CogMetadata
from .masks import MaskRead, plan_mask
from .select import Record, Selection
from .skipped import SkippedRecord
from .tile_reads import TileRead

__all__ = ["TileRead", "ChunkWork", "FetchGroup", "FetchGroups", "BandPlan", "ReadPlan",
           "plan_read", "expected_version", "check_axis_aligned", "DEFAULT_GROUP_TILES",
           "DEFAULT_GROUP_BYTES",
           "NO_GROUP"]

LEND_TILES_KEY = "rasteret_dask.lend-tiles"
"""Dask config key: ``False`` plans every fetch group with its own copy of a tile that
straddles into a neighbouring group (fetched and decoded once per group that reads it) instead
of borrowing it from the group that fetched it. Borrowing saves those requests but keeps the
lending group's bytes until its borrowers are decoded; a chunk-by-chunk write (``rasteret-dask
read --out``) turns it off so that only the groups in flight are in memory."""

DEFAULT_GROUP_TILES = 48
DEFAULT_GROUP_BYTES = 96 * 1024 * 1024
NO_GROUP = -1
"""Fetch group of a chunk no tile of its record touches: it is filled with nodata, no fetch."""


@dataclass(frozen=True, slots=True)
class ChunkWork:
    """Everything a decode task needs for one output chunk (time, y, x) of one band; ``error``
    says why the chunk cannot be read when the plan already knows (a tile over the size limit:
    nothing is fetched and the decode task raises it); ``mask`` reads the record's internal
    mask under the chunk (its pixels masked there read as ``fill``); ``borrowed`` are the
    (group, range) of earlier fetch groups it reads tiles of (shared with chunks there): a
    ``TileRead`` whose ``payload`` is ``-n`` reads ``borrowed[n - 1]``."""

    spec: DecodeSpec
    shape: tuple[int, int]
    fill: float
    sample: int
    tiles: tuple[TileRead, ...]
    label: str
    error: str | None = None
    mask: MaskRead | None = None
    borrowed: tuple[tuple[int, int], ...] = ()

    @property
    def lenders(self) -> tuple[int, ...]:
        """The earlier fetch groups it borrows tiles from, in order of first use."""
        return tuple(dict.fromkeys(group for group, _ in self.borrowed))

    @property
    def payloads(self) -> set[int]:
        """Every range of its own fetch group the chunk reads (data and mask tiles; borrowed
        ones are in :attr:`borrowed`)."""
        out = {read.payload for read in self.tiles if read.payload >= 0}
        if self.mask is not None:
            out.update(read.payload for read in self.mask.tiles if read.payload >= 0)
        return out


@dataclass(frozen=True)
class FetchGroup:
    """Byte ranges fetched together by one task; ``labels`` name record, band and href."""

    ranges: tuple[ByteRange, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class BandPlan:
    """One band's output: dtype, fill, fetch groups and per-chunk work keyed (t, i, j); a
    chunk's group is :data:`NO_GROUP` when its record has no tile there."""

    band: str
    dtype: np.dtype
    nodata: float | None
    row_chunks: tuple[int, ...]
    col_chunks: tuple[int, ...]
    groups: tuple[FetchGroup, ...]
    chunks: dict[tuple[int, int, int], tuple[int, ChunkWork]]

    @property
    def shared_tiles(self) -> int:
        """Ranges of its fetch groups that more than one chunk reads (a tile straddling
        chunk edges: fetched and decoded once, cropped into each)."""
        uses = Counter((g, index) for g, work in self.chunks.values() if g != NO_GROUP
                       for index in work.payloads)
        uses.update(lent for g, work in self.chunks.values() if g != NO_GROUP
                    for lent in work.borrowed)
        return sum(1 for n in uses.values() if n > 1)


@dataclass(frozen=True)
class ReadPlan:
    """A whole read: the output grid, the time axis, one ``BandPlan`` per band, the mask, and
    the matching records left out because a band of theirs has no metadata."""

    grid: GridSpec
    window: Window
    times: tuple[np.datetime64, ...]
    ids: tuple[str, ...]
    cloud_cover: tuple[float | None, ...] | None
    bands: tuple[BandPlan, ...]
    mask: np.ndarray | None = field(default=None, repr=False)
    skipped: tuple[SkippedRecord, ...] = ()

    @property
    def transform(self) -> Affine:
        return self.grid.window_transform(self.window)

    def explain(self) -> dict:
        """A dry run of the read, without any I/O (what ``Collection.explain`` returns).

        Returns
        -------
        dict
            ``records`` (time steps), ``bands`` (as the index names them), ``shape`` (time, y,
            x), ``crs_epsg`` (None for a custom CRS), ``crs`` (``EPSG:n`` or WKT2),
            ``chunk_shape`` (rows, columns of every chunk but the last along each axis),
            ``chunks`` and ``fetch_groups`` (dask tasks), ``tiles`` and
            ``compressed_bytes`` (what will be fetched; each tile is decoded once per
            process), ``shared_tiles`` (tiles that several chunks crop from, straddling
            chunk edges) and ``skipped_records`` (messages).
        """
        tiles = sum(len(g.ranges) for b in self.bands for g in b.groups)
        shared = sum(b.shared_tiles for b in self.bands)
        first = self.bands[0] if self.bands else None
        nbytes = sum(r.end - r.start for b in self.bands for g in b.groups for r in g.ranges)
        return {
            "records": len(self.times),
            "bands": [b.band for b in self.bands],
            "shape": (len(self.times), self.window.height, self.window.width),
            "crs_epsg": self.grid.crs_epsg,
            "crs": crs_text(self.grid.crs),
            "chunk_shape": (None if first is None else
                            (first.row_chunks[0], first.col_chunks[0])),
            "chunks": sum(len(b.chunks) for b in self.bands),
            "fetch_groups": sum(len(b.groups) for b in self.bands),
            "tiles": tiles,
            "shared_tiles": shared,
            "compressed_bytes": nbytes,
            "skipped_records": [str(r) for r in self.skipped],
        }


class FetchGroups:
    """Tile byte ranges batched into fetch groups as chunks are planned.

    A group closes before a chunk whose new tiles would take it past ``group_tiles`` ranges,
    or once it holds ``group_bytes``; within a group each tile of a file is one range, however
    many chunks read it (tiles a chunk shares with its neighbours do not count). With
    ``lend``, :meth:`read` hands a chunk the tiles of closed groups as borrowed ranges instead
    of fetching them again.
    """

    __slots__ = ("groups", "_max_tiles", "_max_bytes", "_ranges", "_labels", "_index", "_size",
                 "_closed", "_record", "_owners")

    def __init__(self, group_tiles: int, group_bytes: int, lend: bool = False) -> None:
        self.groups: list[FetchGroup] = []
        self._max_tiles = group_tiles
        self._max_bytes = group_bytes
        self._ranges: list[ByteRange] = []
        self._labels: list[str] = []
        self._index: dict[tuple[str, int, bool], int] = {}
        self._size = 0
        self._closed: dict[tuple[str, int, bool], tuple[int, int]] | None = {} if lend else None
        self._record = 0  # the record being planned (see next_record)
        self._owners: dict[tuple[str, int, bool], int] = {}  # open group's range -> its record

    @property
    def current(self) -> int:
        """Position of the open group (the group of the chunk being planned)."""
        return len(self.groups)

    def new_tiles(self, href: str, tiles: Iterable[int]) -> int:
        """How many of ``tiles`` of ``href`` (image tiles, not mask) the open group lacks
        (and, lending, no closed group holds)."""
        closed = self._closed or {}
        return sum(1 for tile in tiles
                   if (href, tile, False) not in self._index and (href, tile, False) not in closed)

    def next_record(self) -> None:
        """The chunks planned next are another record's: closed groups lend only to chunks of
        the record they were planned for (its neighbouring chunks), never to a later record
        that reads the same file, whose tasks may run much later (the lender's tiles would be
        held until then)."""
        self._record += 1
        if self._closed:
            self._closed.clear()

    def open_chunk(self, tiles: int) -> None:
        """Start a chunk adding (at most) ``tiles`` ranges: close the open group if it is
        full."""
        if self._ranges and (len(self._ranges) + tiles > self._max_tiles
                             or self._size >= self._max_bytes):
            self.close()

    def add(self, href: str, tile: int, start: int, count: int, label: str,
            expect: ObjectIdentity | None = None, mask: bool = False) -> int:
        """Index of tile ``tile`` of ``href`` (bytes [start, start + count)) in the open
        group, where it is added unless it already is; ``expect`` is the object version the
        record's metadata was read from (the fetch refuses bytes of any other); ``mask``: a
        tile of the image's internal mask."""
        key = (href, tile, mask)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self._ranges)
            self._owners[key] = self._record
            self._ranges.append(ByteRange(href, start, start + count, expect))
            self._labels.append(label)
            self._size += count
        return index

    def read(self, href: str, tile: int, start: int, count: int, label: str,
             expect: ObjectIdentity | None, mask: bool, borrowed: list[tuple[int, int]]
             ) -> int:
        """A chunk's payload index of a tile: its range in the open group (see :meth:`add`),
        or, lending, ``-n`` when a closed group holds it, ``(group, range)`` being appended
        to the chunk's ``borrowed`` as its n-th entry."""
        key = (href, tile, mask)
        if self._closed is not None and key not in self._index:
            lent = self._closed.get(key)
            if lent is not None:
                if lent not in borrowed:
                    borrowed.append(lent)
                return -(borrowed.index(lent) + 1)
        return self.add(href, tile, start, count, label, expect, mask)

    def close(self) -> tuple[FetchGroup, ...]:
        """Close the open group (if it holds a range); every group so far."""
        if self._ranges:
            if self._closed is not None:
                group = len(self.groups)
                self._closed.update((key, (group, index)) for key, index in self._index.items()
                                    if self._owners[key] == self._record)
            self.groups.append(FetchGroup(tuple(self._ranges), tuple(self._labels)))
        self._ranges, self._labels, self._index, self._size = [], [], {}, 0
        self._owners = {}
        return tuple(self.groups)


def expected_version(md: CogMetadata) -> ObjectIdentity | None:
    """The object version a record's metadata was read from (ETag, size, Last-Modified), which
    every fetch of its tiles must still find; None for metadata enriched before they were kept."""
    return ObjectIdentity.recorded(md.etag, md.object_size, md.last_modified)


def _register(fetch: FetchGroups, href: str, label: str, expect: ObjectIdentity | None,
              borrowed: list[tuple[int, int]]):
    """A mask tile of ``href`` into the open fetch group, or borrowed from a closed one (see
    :func:`.masks.plan_mask`)."""
    def register(tile: int, start: int, count: int) -> int:
        return fetch.read(href, tile, start, count, label, expect, True, borrowed)
    return register


def _band_plan(band: str, records: Sequence[Record], window: Window,
               offsets: Mapping[tuple[str, str], tuple[int, int]],
               row_edges: list[tuple[int, int]], col_edges: list[tuple[int, int]],
               group_tiles: int, group_bytes: int, max_tile_bytes: int,
               lend: bool = True) -> BandPlan:
    first = records[0].metadata
    dtype = first.native_dtype
    nodata = first.nodata
    fetch = FetchGroups(group_tiles, group_bytes, lend=lend)
    chunks: dict[tuple[int, int, int], tuple[int, ChunkWork]] = {}
    for t, record in enumerate(records):
        fetch.next_record()
        md = record.metadata
        if md.native_dtype != dtype:
            raise ValueError(f"{record.label}: dtype {md.dtype}, but {records[0].label} has "
                             f"{first.dtype}; a band's records must share one dtype")
        spec = DecodeSpec.from_metadata(md)
        oversize = spec.nbytes > max_tile_bytes  # only sparse tiles of it can be read
        fill = fill_value(dtype, nodata)
        sample = md.sample_plane(record.band_index)
        off_r, off_c = offsets[(band, record.id)]
        label = record.label
        href = record.href
        expect = expected_version(md)
        tile_offsets, counts = md.tile_offsets, md.tile_byte_counts
        tile_h, tile_w, across = md.tile_height, md.tile_width, md.tiles_across
        # output pixel (window) -> union grid -> this record's image coordinates, per axis
        dr, dc = window.row_off - off_r, window.col_off - off_c
        row_parts = [axis_tiles(r0 + dr, r1 + dr, tile_h, md.image_height)
                     for r0, r1 in row_edges]
        col_parts = [axis_tiles(c0 + dc, c1 + dc, tile_w, md.image_width)
                     for c0, c1 in col_edges]
        mask = md.mask  # its tiles under each chunk share the chunk's fetch group
        mask_rows = [0 if mask is None else len(axis_tiles(r0 + dr, r1 + dr, mask.tile_height,
                                                           mask.height)) for r0, r1 in row_edges]
        mask_cols = [0 if mask is None else len(axis_tiles(c0 + dc, c1 + dc, mask.tile_width,
                                                           mask.width)) for c0, c1 in col_edges]
        empty: dict[tuple[int, int], ChunkWork] = {}  # one fill-only work per chunk shape
        for i, (r0, r1) in enumerate(row_edges):
            rows = row_parts[i]
            for j, (c0, c1) in enumerate(col_edges):
                cols = col_parts[j]
                shape = (r1 - r0, c1 - c0)
                if not rows or not cols:
                    if shape not in empty:
                        empty[shape] = ChunkWork(spec, shape, fill, sample, (), label)
                    chunks[(t, i, j)] = (NO_GROUP, empty[shape])
                    continue
                fetch.open_chunk(fetch.new_tiles(href, (r[0] * across + c[0] for r in rows
                                                        for c in cols))
                                 + mask_rows[i] * mask_cols[j])
                reads = []
                borrowed: list[tuple[int, int]] = []
                refused = None
                for tile_row, s0, s1, d0, d1 in rows:
                    for tile_col, s2, s3, d2, d3 in cols:
                        tile = tile_row * across + tile_col
                        count = counts[tile]
                        if count < 0 or count > max_tile_bytes or (count and oversize):
                            refused = limits.tile_size_problem(spec, count, max_tile_bytes, tile)
                            continue
                        index = fetch.read(href, tile, tile_offsets[tile], count, label,
                                           expect, False, borrowed)
                        reads.append(TileRead(index, (s0, s1, s2, s3), (d0, d1, d2, d3)))
                if refused is not None:  # never fetched: the decode task raises it
                    chunks[(t, i, j)] = (NO_GROUP, ChunkWork(spec, shape, fill, sample, (),
                                                             label, refused))
                    continue
                masked = plan_mask(mask, (r0 + dr, r1 + dr), (c0 + dc, c1 + dc),
                                   _register(fetch, href, label, expect, borrowed),
                                   max_tile_bytes)
                work = ChunkWork(spec, shape, fill, sample, tuple(reads), label, None, masked,
                                 tuple(borrowed))
                chunks[(t, i, j)] = (fetch.current, work)
    return BandPlan(band, dtype, nodata, tuple(b - a for a, b in row_edges),
                    tuple(b - a for a, b in col_edges), fetch.close(), chunks)


def plan_read(
    selection: Selection,
    *,
    all_touched: bool = False,
    tiles_per_chunk: int = 1,
    chunk_pixels: tuple[int, int] | None = None,
    group_tiles: int = DEFAULT_GROUP_TILES,
    group_bytes: int = DEFAULT_GROUP_BYTES,
    mask: bool = True,
    max_tile_bytes: int | str | None = None,
) -> ReadPlan:
    """Plan reading a selection's geometry from every record of every band (an aligned
    selection in one CRS).

    The records' grids are unioned, the geometry (reprojected into their CRS) becomes a pixel
    window trimmed to the pixels it burns, the window regular chunks from its origin (the last
    along each axis may be shorter) and each chunk a ``ChunkWork``; tile byte ranges are
    batched into fetch groups. Chunks are ``chunk_pixels`` (rows, columns) when given, else
    ``tiles_per_chunk`` tiles of the first record a side (a striped image's strips grouped
    into chunks of about :data:`~rasteret_dask.plan.tiles.STRIP_CHUNK_PIXELS`, at least
    ``tiles_per_chunk`` strips), so a window starting on a tile edge has one chunk per tile
    (block). A tile declaring more than
    ``max_tile_bytes`` (decoded, unless sparse, or compressed; see
    :func:`rasteret_dask.decode.limits.max_tile_bytes`) is never fetched: its chunk's task
    raises an error naming record, band, href, the declared size and the limit. The
    selection's skipped records are kept in the plan to be reported.

    Raises
    ------
    ValueError
        When the records are in several CRSs, their grids do not line up or are rotated, a
        band's records have several dtypes, or the geometry meets no record's image (every
        message about records names record, band and href).
    """
    limit = limits.max_tile_bytes(max_tile_bytes)
    union, offsets = selection.union()
    check_axis_aligned(selection)
    geometry = selection.geometry_in(union.crs)
    window = union.window_for_geometry(geometry, all_touched=all_touched, clip=True)
    if window is None or window.is_empty:
        raise ValueError("the geometry does not intersect any record's image")
    mask_array = None
    if mask:
        window, mask_array = _burn(geometry, union, window, all_touched)
    records_by_band = selection.records_by_band
    first_band = next(iter(records_by_band))
    anchor = records_by_band[first_band][0]
    md = anchor.metadata
    # regular chunks from the window's origin, sized by the first record's tiles (tiles
    # declaring more than the limit get smaller chunks: no chunk allocates more)
    if chunk_pixels is not None:
        size_r, size_c = chunk_pixels
    else:
        step_h, step_w = limits.bounded_tile_step(md.tile_height, md.tile_width,
                                                  md.dtype.itemsize, limit)
        row_tiles = tiles_per_chunk
        if md.striped and step_h == md.tile_height:  # strips are grouped into chunks
            row_tiles = max(tiles_per_chunk, strips_per_chunk(md.tile_height, md.image_width))
        size_r, size_c = step_h * row_tiles, step_w * tiles_per_chunk
    row_edges = list(chunk_edges_px(window.height, size_r))
    col_edges = list(chunk_edges_px(window.width, size_c))
    bands = tuple(
        _band_plan(band, records, window, offsets, row_edges, col_edges, group_tiles,
                   group_bytes, limit, lend=bool(dask.config.get(LEND_TILES_KEY, True)))
        for band, records in records_by_band.items()
    )
    ref = records_by_band[first_band]
    cloud = None
    if any(r.cloud_cover is not None for r in ref):
        cloud = tuple(r.cloud_cover for r in ref)
    return ReadPlan(union, window, tuple(r.datetime for r in ref), tuple(r.id for r in ref),
                    cloud, bands, mask_array, selection.skipped)


def check_axis_aligned(selection: Selection) -> None:
    """Refuse records whose pixels are not on a north-up grid (a rotated or sheared transform,
    or ground control points only): a read on the records' own grid has 1-D x/y coordinates.
    ``get_xarray`` reads such records onto an output grid instead; the other users of a native
    plan (``iterate_rasters``, TorchGeo datasets) refuse them.

    Raises
    ------
    ValueError
        Naming the first such record, band and href, and its transform or GCPs.
    """
    for records in selection.records_by_band.values():
        for record in records:
            md = record.metadata
            if md.has_gcps:
                raise ValueError(
                    f"{record.label}: it is georeferenced by {len(md.gcps)} ground control "
                    "points only, not on a grid with 1-D coordinates; get_xarray reads it "
                    "onto an output grid")
            if not md.is_axis_aligned:
                raise ValueError(
                    f"{record.label}: its transform {tuple(md.transform)[:6]} is rotated or "
                    "sheared, and 1-D coordinates need an axis-aligned grid (transform b == "
                    "d == 0); get_xarray reads it onto a north-up output grid")


def _burn(geometry: shapely.Geometry, grid: GridSpec, window: Window,
          all_touched: bool) -> tuple[Window, np.ndarray | None]:
    """Rasterise the geometry (rasterio.features semantics) and trim the window to the pixels
    it burns; the mask (True = outside) is None when every pixel of the window is inside."""
    t = grid.window_transform(window)
    if t.b == 0 and t.d == 0:
        xs = sorted((t.c + t.a / 2, t.c + t.a * (window.width - 0.5)))
        ys = sorted((t.f + t.e / 2, t.f + t.e * (window.height - 0.5)))
        centres = shapely.box(xs[0], ys[0], xs[1], ys[1])
        if shapely.contains_properly(geometry, centres):
            return window, None
    outside = geometry_mask([geometry], (window.height, window.width),
                            grid.window_transform(window), all_touched=all_touched)
    inside = ~outside
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if not len(rows):
        return window, outside
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    window = Window(window.row_off + int(r0), window.col_off + int(c0), int(r1 - r0), int(c1 - c0))
    outside = outside[r0:r1, c0:c1]
    return window, (outside if outside.any() else None)
