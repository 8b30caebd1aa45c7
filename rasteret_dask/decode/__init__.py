"""Tile decoding: one TIFF tile's bytes -> a NumPy array, bit-exact with GDAL (imagecodecs)."""

from __future__ import annotations

from .codecs import DECODABLE_COMPRESSIONS, decode_tile, is_sparse
from .limits import (
    DEFAULT_MAX_TILE_BYTES,
    TileTooLargeError,
    max_tile_bytes,
    tile_size_problem,
)
from .spec import DecodeError, DecodeSpec

__all__ = [
    "DECODABLE_COMPRESSIONS",
    "DEFAULT_MAX_TILE_BYTES",
    "DecodeError",
    "DecodeSpec",
    "TileTooLargeError",
    "decode_tile",
    "is_sparse",
    "max_tile_bytes",
    "tile_size_problem",
]
