"""A band's view of GDAL's internal mask of one level, as the index stores it (pure).

``schema.MASK_TYPE`` structs of a ``{band}_metadata`` value (the image's ``mask`` and each
overview's) become checked, frozen :class:`MaskLevel` values; the read layer plans and decodes
their tiles (``read.masks``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MaskLevel", "MetadataError", "mask_level"]


class MetadataError(ValueError):
    """A ``{band}_metadata`` struct that is null, incomplete or inconsistent."""


@dataclass(frozen=True, slots=True)
class MaskLevel:
    """GDAL's internal mask of one level of the image, as a band reads it (``schema.MASK_TYPE``):
    its tile (or strip) grid, decode parameters, the tiles of the band's plane and the band's
    sample within a decoded mask tile. Mask value 0 = the pixel is not valid."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    compression: int
    predictor: int
    bits_per_sample: int
    samples: int
    sample: int
    striped: bool
    tile_offsets: tuple[int, ...]
    tile_byte_counts: tuple[int, ...]

    @property
    def tiles_across(self) -> int:
        """Tiles in a row of the mask's tile grid."""
        return -(-self.width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        """Tiles in a column of the mask's tile grid."""
        return -(-self.height // self.tile_height)

    @property
    def last_strip_rows(self) -> int:
        """Rows of a striped mask's last strip when it holds fewer than the others, else 0."""
        return self.height % self.tile_height if self.striped else 0


_MASK_INTS = ("width", "height", "tile_width", "tile_height", "compression", "predictor",
              "bits_per_sample", "samples", "sample")


def mask_level(struct: Mapping[str, Any] | None, where: str, prefix: str,
          ints: Callable[[Any], tuple[int, ...]]) -> MaskLevel | None:
    """One ``mask`` struct (``schema.MASK_TYPE``) as a checked `MaskLevel`; None for null."""
    if struct is None:
        return None
    values = [struct.get(k) for k in _MASK_INTS]
    offsets, counts = struct.get("tile_offsets"), struct.get("tile_byte_counts")
    if any(v is None for v in values) or offsets is None or counts is None:
        raise MetadataError(f"{prefix}the mask of {where} lacks a field")
    value = MaskLevel(*(int(v) for v in values), bool(struct.get("striped")), ints(offsets),
                      ints(counts))
    if min(value.width, value.height, value.tile_width, value.tile_height,
           value.samples) <= 0 or not 0 <= value.sample < value.samples \
            or value.bits_per_sample not in (1, 8):
        raise MetadataError(f"{prefix}the mask of {where} has a bad layout: {value.width} x "
                            f"{value.height}, {value.tile_width} x {value.tile_height} tiles, "
                            f"sample {value.sample} of {value.samples}, "
                            f"{value.bits_per_sample} bits")
    expected = value.tiles_across * value.tiles_down
    if len(value.tile_offsets) != expected or len(value.tile_byte_counts) != expected:
        raise MetadataError(f"{prefix}the mask of {where} has {len(value.tile_offsets)} tile "
                            f"offsets and {len(value.tile_byte_counts)} byte counts for "
                            f"{expected} tiles")
    return value
