"""YCbCr JPEG tiles decoded by GDAL's own JPEG decoder, as GDAL reads them from a GeoTIFF.

GDAL (rasterio's wheels bundle IJG libjpeg 9) upsamples a YCbCr tile's subsampled chroma in
the DCT domain, while libjpeg-turbo (imagecodecs) interpolates between chroma samples, so the
two give different RGB values near colour changes (measured in the README). This module hands
a tile to GDAL's JPEG driver through an in-memory file: the abbreviated tile stream is joined
to the file's JPEGTables into one JPEG, which GDAL decodes to RGB with the same library and
settings its GeoTIFF driver uses. The stream's dimensions are checked against the tile before
any pixel is decoded.

A tile has no georeferencing, which rasterio warns about on every in-memory open; the first
use of this decoder adds one warning filter for that (``NotGeoreferencedWarning`` raised
from ``rasterio.io``, i.e. datasets opened from memory), since ``warnings.catch_warnings`` is
not safe on the threads tiles decode on.
"""

from __future__ import annotations

import warnings

import numpy as np

from .spec import DecodeError, DecodeSpec

__all__ = ["gdal_ycbcr_jpeg"]

_filtered: list[bool] = []
_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"


def _joined(data: bytes | memoryview, tables: bytes | None) -> bytes:
    """One JPEG of an abbreviated tile stream and the JPEGTables it refers to."""
    stream = bytes(data)
    if not stream.startswith(_SOI):
        raise DecodeError("JPEG tile does not start with an SOI marker")
    if not tables:
        return stream
    if not (tables.startswith(_SOI) and tables.endswith(_EOI)):
        raise DecodeError("JPEGTables is not an SOI ... EOI table stream")
    return tables[:-2] + stream[2:]


def gdal_ycbcr_jpeg(data: bytes | memoryview, spec: DecodeSpec, out: np.ndarray) -> int:
    """Decode a YCbCr JPEG tile to RGB into ``out`` (rows, columns, 3) with GDAL's JPEG
    decoder; the rows decoded (the tile's, or a striped image's short last strip's).

    Raises
    ------
    DecodeError
        When the stream is not a JPEG GDAL can read, or its size is not the tile's.
    """
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.io import MemoryFile

    if not _filtered:
        warnings.filterwarnings("ignore", category=NotGeoreferencedWarning,
                                module=r"rasterio\.io")
        _filtered.append(True)
    stream = _joined(data, spec.jpeg_tables)
    try:
        with MemoryFile(stream) as memory, memory.open(driver="JPEG") as image:
            rows, cols, count = image.height, image.width, image.count
            allowed = {spec.tile_height} | ({spec.short_rows} if spec.short_rows else set())
            if cols != spec.tile_width or rows not in allowed or count != 3:
                raise DecodeError(f"JPEG tile is {cols} x {rows} x {count}, expected "
                                  f"{spec.tile_width} x {spec.tile_height} x 3")
            pixels = image.read()
    except RasterioIOError as exc:
        raise DecodeError(f"GDAL cannot decode the JPEG tile: {exc}") from exc
    if pixels.dtype != np.uint8:
        raise DecodeError(f"GDAL decoded the JPEG tile to {pixels.dtype}, expected uint8")
    out[:rows] = np.moveaxis(pixels, 0, -1)
    return rows
