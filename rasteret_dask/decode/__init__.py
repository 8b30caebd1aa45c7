"""Tile decoding: one TIFF tile's bytes -> a NumPy array, bit-exact with GDAL (imagecodecs)."""

from __future__ import annotations

from .codecs import DECODABLE_COMPRESSIONS, decode_tile
from .spec import DecodeError, DecodeSpec

__all__ = ["DECODABLE_COMPRESSIONS", "DecodeError", "DecodeSpec", "decode_tile"]
