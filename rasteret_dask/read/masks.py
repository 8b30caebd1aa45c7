"""GDAL internal masks in a read plan (pure): the mask tiles under a chunk or source window.

A record whose image has an internal mask (:class:`~rasteret_dask.tiff.cog_metadata.MaskLevel`,
one per level) reads, with the data tiles of each chunk, the mask tiles covering the same
pixels, in the same fetch group. When decoded, a pixel whose mask sample is 0 is not valid:
it reads as the chunk's fill (the band's nodata, else 0) on the records' own grid, and is left
out of pasting and resampling on an output grid (:mod:`.warp`), as GDAL's warper leaves it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..decode import DecodeSpec, limits
from ..plan.tiles import axis_tiles
from ..tiff.cog_metadata import MaskLevel
from .tile_reads import TileRead

__all__ = ["MaskRead", "MASK_PHOTOMETRIC", "mask_spec", "plan_mask"]

MASK_PHOTOMETRIC = 4
"""PhotometricInterpretation of a transparency mask."""

Register = Callable[[int, int, int], int]
"""(mask tile, first byte, byte count) -> the tile's payload index in its fetch group."""


@dataclass(frozen=True, slots=True)
class MaskRead:
    """The mask of one chunk (or source window): its tiles' decode parameters, the sample of
    the band, where each tile goes, and why a tile cannot be read (``error``: over the size
    limit; the chunk's pixels are then not valid)."""

    spec: DecodeSpec
    sample: int
    tiles: tuple[TileRead, ...]
    error: str | None = None


def mask_spec(mask: MaskLevel) -> DecodeSpec:
    """How the mask's tiles decode: unsigned 8-bit samples (1-bit ones unpacked to 0/1)."""
    return DecodeSpec(compression=mask.compression, predictor=mask.predictor, dtype="uint8",
                      tile_width=mask.tile_width, tile_height=mask.tile_height,
                      samples=mask.samples, photometric=MASK_PHOTOMETRIC,
                      bits_per_sample=1 if mask.bits_per_sample == 1 else None,
                      short_rows=mask.last_strip_rows)


def plan_mask(mask: MaskLevel | None, rows: tuple[int, int], cols: tuple[int, int],
              register: Register, limit: int) -> MaskRead | None:
    """The mask tiles under image rows [``rows``) and columns [``cols``) of the level the
    mask belongs to (the region may reach outside the image; placements are relative to its
    start), each registered in the caller's fetch group; None without a mask.

    Parameters
    ----------
    mask
        The level's mask (None: the record has none).
    rows, cols
        The region in the level's pixels.
    register
        Adds a mask tile's byte range to the fetch group (once per tile) and returns its
        payload index.
    limit
        Largest tile read (:func:`rasteret_dask.decode.limits.max_tile_bytes`).
    """
    if mask is None:
        return None
    spec = mask_spec(mask)
    reads = []
    for tile_row, s0, s1, d0, d1 in axis_tiles(rows[0], rows[1], mask.tile_height, mask.height):
        for tile_col, s2, s3, d2, d3 in axis_tiles(cols[0], cols[1], mask.tile_width,
                                                   mask.width):
            tile = tile_row * mask.tiles_across + tile_col
            count = mask.tile_byte_counts[tile]
            problem = limits.tile_size_problem(spec, count, limit, tile)
            if problem is not None:
                return MaskRead(spec, mask.sample, (), f"mask {problem}")
            index = register(tile, mask.tile_offsets[tile], count)
            reads.append(TileRead(index, (s0, s1, s2, s3), (d0, d1, d2, d3)))
    return MaskRead(spec, mask.sample, tuple(reads))
