"""The reduced-resolution levels of a tiled TIFF: the IFDs chained after the image.

`OverviewWalk` reads each IFD of the chain (sans-I/O, recording missing bytes in the
`IfdReader` like the rest of the parse): its kind (reduced image, mask, or a new page that ends
the walk), its size and tile size, the parameters its tiles decode with, and its TileOffsets
and TileByteCounts. `usable_overviews` then keeps a level's tile tables only when its tiles
decode exactly like the full-resolution image's (same codec, predictor, sample layout, JPEG
tables, LERC parameters), so a reader can plan and decode them with the image's metadata.
Mask IFDs (GDAL's internal masks, :mod:`.masks`) are read in the same walk, with their tile
tables, and paired with the image and its levels by size; a level of a masked image whose own
mask is missing or unreadable keeps no tile tables (a reader never reads it unmasked).
Reduced-resolution IFDs stored in strips are not listed: GDAL writes tiled overviews, for
striped images too (128 x 128 tiles), and those are cached like a COG's.

Tile tables are read when their entry counts match the level's size (a level declaring any
other count, or more tiles than :data:`MAX_TILES` summed over the levels, is listed without
them, never fetched). Tables the bytes held do not cover are requested with whatever else
the parse misses, so GDAL COGs (every IFD and table in the header) still cost the header's
own requests: one GET when the prefix holds them, and the same rounds as the image's own
tables when it does not (they are written back to back). Other layouts fetch them in the
rounds that already follow the IFD chain, plus at most one for the last level's tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .ifd import MAX_TILES, Ifd, IfdReader
from .masks import MaskImage, read_mask
from .tags import (
    BITS_PER_SAMPLE,
    COMPRESSION,
    IMAGE_LENGTH,
    IMAGE_WIDTH,
    JPEG_TABLES,
    LERC_PARAMETERS,
    NEW_SUBFILE_TYPE,
    PHOTOMETRIC,
    PLANAR_CONFIGURATION,
    PREDICTOR,
    SAMPLE_FORMAT,
    SAMPLES_PER_PIXEL,
    SUBFILE_MASK,
    SUBFILE_REDUCED_IMAGE,
    TILE_BYTE_COUNTS,
    TILE_LENGTH,
    TILE_OFFSETS,
    TILE_WIDTH,
)
from .values import single_value, tag_values

__all__ = ["Overview", "ReducedImage", "OverviewWalk", "decoding", "usable_overviews",
           "DECODE_TAGS"]

DECODE_TAGS = (COMPRESSION, PREDICTOR, SAMPLES_PER_PIXEL, PLANAR_CONFIGURATION, BITS_PER_SAMPLE,
               SAMPLE_FORMAT, PHOTOMETRIC, JPEG_TABLES, LERC_PARAMETERS)
"""The tags whose values decide how a tile's bytes become pixels."""

_SIZE_TAGS = (IMAGE_WIDTH, IMAGE_LENGTH, TILE_WIDTH, TILE_LENGTH)
_INT64_MAX = (1 << 63) - 1

Tiles = tuple[int, ...]


@dataclass(frozen=True)
class Overview:
    """A reduced-resolution level of the image: its size, tile size and, when known, its tile
    tables (every plane of a planar file, like the image's in `TiffHeader`)."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    tile_offsets: Tiles | None = None
    tile_byte_counts: Tiles | None = None
    mask: MaskImage | None = None
    """The level's internal mask (NewSubfileType 5 of its size), when the image has one."""

    @property
    def has_tiles(self) -> bool:
        """Whether the level's tile tables are known."""
        return self.tile_offsets is not None and self.tile_byte_counts is not None

    @property
    def tiles_per_plane(self) -> int:
        """Number of tiles covering the level once."""
        return -(-self.width // self.tile_width) * -(-self.height // self.tile_height)

    def band_tiles(self, band_index: int, planar: bool) -> tuple[Tiles | None, Tiles | None]:
        """Tile offsets and byte counts of ``band_index`` (its own plane when ``planar``), or
        (None, None) when the level's tables are not known."""
        if not self.has_tiles:
            return None, None
        assert self.tile_offsets is not None and self.tile_byte_counts is not None
        if not planar:
            return self.tile_offsets, self.tile_byte_counts
        n = self.tiles_per_plane
        start = band_index * n
        return (self.tile_offsets[start:start + n], self.tile_byte_counts[start:start + n])

    def to_dict(self, band_index: int = 0, planar: bool = False,
                samples: int = 1) -> dict[str, Any]:
        """The level as an ``overviews`` struct of the metadata column (``schema.OVERVIEW_TYPE``),
        tile tables of ``band_index`` only (null when not known), its mask as that band of an
        image of ``samples`` samples reads it (null without one)."""
        offsets, counts = self.band_tiles(band_index, planar)
        mask = None
        if self.has_tiles and self.mask is not None:
            mask = self.mask.for_band(band_index, samples)
        return {
            "width": self.width,
            "height": self.height,
            "tile_width": self.tile_width,
            "tile_height": self.tile_height,
            "tile_offsets": None if offsets is None else list(offsets),
            "tile_byte_counts": None if counts is None else list(counts),
            "mask": mask,
        }


def decoding(values: dict[int, Any]) -> tuple[Any, ...]:
    """The decode parameters of an IFD's decoded ``values`` (`DECODE_TAGS`), defaults applied,
    in a form two IFDs can be compared by (the planar configuration of one sample per pixel
    is no difference: GDAL writes 2 on such an image and 1 on its overviews)."""
    samples = single_value(values, SAMPLES_PER_PIXEL, "SamplesPerPixel", 1)
    planar = single_value(values, PLANAR_CONFIGURATION, "PlanarConfiguration", 1)
    return (
        single_value(values, COMPRESSION, "Compression", 1),
        single_value(values, PREDICTOR, "Predictor", 1),
        samples,
        planar if samples > 1 else 1,
        frozenset(values.get(BITS_PER_SAMPLE, (1,))),
        frozenset(values.get(SAMPLE_FORMAT, (1,))),
        tuple(values.get(PHOTOMETRIC, ())),
        values.get(JPEG_TABLES),
        tuple(values.get(LERC_PARAMETERS, ())),
    )


@dataclass(frozen=True)
class ReducedImage:
    """What the walk read from one reduced-resolution IFD, before it is checked against the
    full-resolution image: the level (with its tile tables when read) and its `decoding`."""

    overview: Overview
    decoding: tuple[Any, ...]


class OverviewWalk:
    """Reads the IFDs that follow the image, one at a time, within one parse.

    The walk's tile budget (:data:`MAX_TILES` over all levels) bounds what a hostile chain of
    IFDs can make the parser fetch.
    """

    def __init__(self, reader: IfdReader) -> None:
        self.reader = reader
        self.budget = MAX_TILES
        self.masks: list[MaskImage] = []
        """The mask IFDs read so far (the image's own and its overviews'), in file order."""

    def read(self, ifd: Ifd) -> tuple[ReducedImage | None, bool]:
        """The reduced image ``ifd`` describes (None for a mask, which goes to `masks`, an
        untiled level, or while its bytes are pending), and whether the walk goes on: it
        stops at the first IFD that is neither a reduced image nor a mask (a new page)."""
        reader = self.reader
        vals = tag_values(reader, ifd, (NEW_SUBFILE_TYPE, *_SIZE_TAGS))
        if NEW_SUBFILE_TYPE in ifd.entries and NEW_SUBFILE_TYPE not in vals:
            return None, True  # bytes pending; the walk continues and NeedBytes is raised later
        kind = single_value(vals, NEW_SUBFILE_TYPE, "NewSubfileType", 0)
        if kind & SUBFILE_MASK:
            mask, taken = read_mask(reader, ifd, kind, self.budget)
            self.budget -= taken
            if mask is not None:
                self.masks.append(mask)
            return None, True
        if not kind & SUBFILE_REDUCED_IMAGE:
            return None, False
        sizes = [vals.get(t) for t in _SIZE_TAGS]
        if any(not v for v in sizes):
            return None, True  # untiled level (unusable by a tile reader) or bytes pending
        width, height, tile_width, tile_height = (int(v[0]) for v in sizes if v)
        overview = Overview(width, height, tile_width, tile_height)
        params = tag_values(reader, ifd, DECODE_TAGS)
        level = ReducedImage(overview, decoding(params))
        if min(width, height, tile_width, tile_height) <= 0:
            return level, True
        planes = single_value(params, SAMPLES_PER_PIXEL, "SamplesPerPixel", 1) \
            if single_value(params, PLANAR_CONFIGURATION, "PlanarConfiguration", 1) == 2 else 1
        expected = overview.tiles_per_plane * planes
        offsets, counts = ifd.entries.get(TILE_OFFSETS), ifd.entries.get(TILE_BYTE_COUNTS)
        if offsets is None or counts is None or offsets.count != expected \
                or counts.count != expected or expected > self.budget:
            return level, True
        self.budget -= expected
        tables = tag_values(reader, ifd, (TILE_OFFSETS, TILE_BYTE_COUNTS))
        if TILE_OFFSETS in tables and TILE_BYTE_COUNTS in tables:
            overview = replace(overview,
                               tile_offsets=tuple(int(v) for v in tables[TILE_OFFSETS]),
                               tile_byte_counts=tuple(int(v) for v in tables[TILE_BYTE_COUNTS]))
        return ReducedImage(overview, level.decoding), True


def _fits(table: Tiles | None) -> bool:
    return table is not None and (not table or (min(table) >= 0 and max(table) <= _INT64_MAX))


def usable_overviews(levels: Sequence[ReducedImage], image_values: dict[int, Any],
                     width: int, height: int, masked: bool = False,
                     masks: Sequence[MaskImage | None] = ()) -> tuple[Overview, ...]:
    """The levels, largest first, each with its tile tables only when a reader can use them
    with the image's metadata: its tiles decode like the image's (``image_values``, the
    decoded first IFD), it is no larger than the image (``width`` x ``height``), its table
    values fit the index's int64 columns and, for a ``masked`` image, its own mask
    (``masks``, per level in ``levels`` order) can be read."""
    image = decoding(image_values)
    out = []
    for k, level in enumerate(levels):
        overview = level.overview
        mask = masks[k] if k < len(masks) else None
        usable = (level.decoding == image and overview.width <= width
                  and overview.height <= height and _fits(overview.tile_offsets)
                  and _fits(overview.tile_byte_counts))
        if masked:
            usable = usable and mask is not None and mask.problem is None
            overview = replace(overview, mask=mask)
        if not usable:
            overview = replace(overview, tile_offsets=None, tile_byte_counts=None)
        out.append(overview)
    return tuple(sorted(out, key=lambda o: (o.width, o.height), reverse=True))
