"""GDAL internal masks: the mask IFDs of a TIFF (NewSubfileType 4, and 5 for an overview's).

GDAL writes a dataset's mask (``GDAL_TIFF_INTERNAL_MASK=YES``, ``dataset.write_mask()``, the
COG driver's ``-mask``) as an IFD of its own after the image: one sample per pixel (a mask for
every band, GDAL's per-dataset mask), 1 bit (8 in older files), PhotometricInterpretation 4,
deflate (or the image's own lossless codec), tiled like the image (or in strips for a striped
one); each overview gets a reduced mask of its size. A pixel whose mask sample is 0 is not
valid (what ``rasterio``'s ``read_masks()`` returns as 0 and ``read(masked=True)`` masks).

`read_mask` reads one mask IFD inside the overview walk (sans-I/O, missing bytes recorded in
the `IfdReader`); `MaskImage` keeps its size, layout, decode parameters and tile tables, and
says why a reader could not use it (`problem`). `pair_masks` finds the image's own mask and
each overview's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .buffer import TiffError
from .ifd import Ifd, IfdReader
from .tags import (
    BITS_PER_SAMPLE,
    COMPRESSION,
    IMAGE_LENGTH,
    IMAGE_WIDTH,
    PLANAR_CONFIGURATION,
    PREDICTOR,
    ROWS_PER_STRIP,
    SAMPLE_FORMAT,
    SAMPLES_PER_PIXEL,
    STRIP_BYTE_COUNTS,
    STRIP_OFFSETS,
    SUBFILE_REDUCED_IMAGE,
    TILE_BYTE_COUNTS,
    TILE_LENGTH,
    TILE_OFFSETS,
    TILE_WIDTH,
    compression_name,
)
from .values import single_value, tag_values

__all__ = ["MASK_COMPRESSIONS", "MaskImage", "read_mask", "pair_masks"]

MASK_COMPRESSIONS = frozenset({1, 5, 8, 32946, 32773, 34925, 50000})
"""Codecs a mask is read with: the lossless ones GDAL writes masks in (none, LZW, deflate,
PackBits, LZMA, Zstandard)."""

_LAYOUT_TAGS = (IMAGE_WIDTH, IMAGE_LENGTH, TILE_WIDTH, TILE_LENGTH, ROWS_PER_STRIP,
                COMPRESSION, PREDICTOR, BITS_PER_SAMPLE, SAMPLE_FORMAT, SAMPLES_PER_PIXEL,
                PLANAR_CONFIGURATION)
_INT64_MAX = (1 << 63) - 1

Tiles = tuple[int, ...]


@dataclass(frozen=True)
class MaskImage:
    """One mask IFD: size, layout (tiles, or strips as tiles of the full width), decode
    parameters and tile tables (every plane of a planar mask); ``problem`` says why it cannot
    be read (None when it can), ``reduced`` whether it is an overview's mask."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    striped: bool
    compression: int
    predictor: int
    bits_per_sample: int
    samples_per_pixel: int
    planar_configuration: int
    reduced: bool
    tile_offsets: Tiles | None = None
    tile_byte_counts: Tiles | None = None
    problem: str | None = None

    @property
    def tiles_per_plane(self) -> int:
        """Tiles (or strips) covering the mask once."""
        return -(-self.width // self.tile_width) * -(-self.height // self.tile_height)

    def for_band(self, band_index: int, image_samples: int) -> dict[str, Any]:
        """The mask as band ``band_index`` of an image of ``image_samples`` samples reads it:
        a ``mask`` struct of the metadata column (``schema.MASK_TYPE``).

        Raises
        ------
        TiffError
            When the mask cannot be read (`problem`), or holds neither one sample (a mask for
            every band) nor one per band of the image.
        """
        if self.problem is not None:
            raise TiffError(f"its internal mask (NewSubfileType {5 if self.reduced else 4}) "
                            f"cannot be read: {self.problem}")
        samples = self.samples_per_pixel
        if samples not in (1, image_samples):
            raise TiffError(f"its internal mask holds {samples} samples per pixel for an "
                            f"image of {image_samples}: neither one mask for every band nor "
                            "one per band")
        assert self.tile_offsets is not None and self.tile_byte_counts is not None
        offsets, counts, per_tile, sample = (self.tile_offsets, self.tile_byte_counts,
                                             samples, 0 if samples == 1 else band_index)
        if samples > 1 and self.planar_configuration == 2:
            n = self.tiles_per_plane
            offsets = offsets[band_index * n:(band_index + 1) * n]
            counts = counts[band_index * n:(band_index + 1) * n]
            per_tile, sample = 1, 0
        return {
            "width": self.width, "height": self.height, "tile_width": self.tile_width,
            "tile_height": self.tile_height, "compression": self.compression,
            "predictor": self.predictor, "bits_per_sample": self.bits_per_sample,
            "samples": per_tile, "sample": sample, "striped": self.striped,
            "tile_offsets": list(offsets), "tile_byte_counts": list(counts),
        }


def _problem(values: dict[int, Any]) -> str | None:
    """Why a mask of these tag values cannot be read (None when it can)."""
    code = single_value(values, COMPRESSION, "Compression", 1)
    if code not in MASK_COMPRESSIONS:
        return f"compression {code} ({compression_name(code)}) is not a mask codec read here"
    bits = set(values.get(BITS_PER_SAMPLE, (1,)))
    if bits not in ({1}, {8}):
        return f"BitsPerSample {sorted(bits)} (1 or 8 expected)"
    if set(values.get(SAMPLE_FORMAT, (1,))) != {1}:
        return f"SampleFormat {sorted(set(values[SAMPLE_FORMAT]))} (unsigned integers expected)"
    return None


def read_mask(reader: IfdReader, ifd: Ifd, kind: int, budget: int) -> tuple[MaskImage | None,
                                                                               int]:
    """The mask ``ifd`` describes (NewSubfileType ``kind``), with its tile tables when their
    entry counts fit its size and ``budget`` (tiles the walk may still read), and the tiles
    it took from the budget; None (ranges recorded) while its tags are pending."""
    values = tag_values(reader, ifd, _LAYOUT_TAGS)
    sizes = [values.get(t) for t in (IMAGE_WIDTH, IMAGE_LENGTH)]
    if any(not v for v in sizes):
        return None, 0
    width, height = (int(v[0]) for v in sizes if v)
    tiled = TILE_OFFSETS in ifd.entries
    if tiled:
        tile_width = single_value(values, TILE_WIDTH, "TileWidth", 0)
        tile_height = single_value(values, TILE_LENGTH, "TileLength", 0)
        tables = (TILE_OFFSETS, TILE_BYTE_COUNTS)
    else:
        rows = single_value(values, ROWS_PER_STRIP, "RowsPerStrip", (1 << 32) - 1)
        tile_width, tile_height = width, min(rows, height) if height > 0 else rows
        tables = (STRIP_OFFSETS, STRIP_BYTE_COUNTS)
    samples = single_value(values, SAMPLES_PER_PIXEL, "SamplesPerPixel", 1)
    planar = single_value(values, PLANAR_CONFIGURATION, "PlanarConfiguration", 1)
    bits = values.get(BITS_PER_SAMPLE, (1,))
    mask = MaskImage(width, height, tile_width, tile_height, not tiled,
                     single_value(values, COMPRESSION, "Compression", 1),
                     single_value(values, PREDICTOR, "Predictor", 1), int(bits[0]), samples,
                     planar, bool(kind & SUBFILE_REDUCED_IMAGE), problem=_problem(values))
    if min(width, height, tile_width, tile_height, samples) <= 0:
        return replace(mask, problem=f"bad size {width} x {height} with {tile_width} x "
                                     f"{tile_height} tiles"), 0
    expected = mask.tiles_per_plane * (samples if planar == 2 else 1)
    entries = [ifd.entries.get(t) for t in tables]
    if any(e is None or e.count != expected for e in entries) or expected > budget:
        return replace(mask, problem=f"its tile tables do not match its size ({expected} "
                                     "tiles)"), 0
    found = tag_values(reader, ifd, tables)
    if not all(t in found for t in tables):
        return mask, expected  # bytes pending: NeedBytes follows
    offsets, counts = (tuple(int(v) for v in found[t]) for t in tables)
    if any(v < 0 or v > _INT64_MAX for v in (*offsets, *counts)):
        return replace(mask, problem="tile tables outside int64"), expected
    return replace(mask, tile_offsets=offsets, tile_byte_counts=counts), expected


def pair_masks(masks: Sequence[MaskImage], width: int, height: int,
               levels: Sequence[tuple[int, int]]) -> tuple[MaskImage | None,
                                                            list[MaskImage | None]]:
    """The image's own mask (``width`` x ``height``, not reduced) and, per overview level
    (its (width, height)), the reduced mask of that size (None where there is none)."""
    own = next((m for m in masks if not m.reduced and (m.width, m.height) == (width, height)),
               None)
    reduced = {(m.width, m.height): m for m in reversed(masks) if m.reduced}
    return own, [reduced.get(size) for size in levels]
