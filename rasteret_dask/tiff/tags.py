"""TIFF constants: tag codes, field types, compression codes and the sample dtype table.

Facts from the TIFF 6.0 specification, the BigTIFF proposal, the GeoTIFF 1.1 standard (OGC
19-008r4) and GDAL's private tags. The decode layer reuses `SUPPORTED_COMPRESSIONS`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NEW_SUBFILE_TYPE",
    "IMAGE_WIDTH",
    "IMAGE_LENGTH",
    "BITS_PER_SAMPLE",
    "COMPRESSION",
    "PHOTOMETRIC",
    "STRIP_OFFSETS",
    "SAMPLES_PER_PIXEL",
    "ROWS_PER_STRIP",
    "STRIP_BYTE_COUNTS",
    "PLANAR_CONFIGURATION",
    "PREDICTOR",
    "TILE_WIDTH",
    "TILE_LENGTH",
    "TILE_OFFSETS",
    "TILE_BYTE_COUNTS",
    "EXTRA_SAMPLES",
    "SAMPLE_FORMAT",
    "JPEG_TABLES",
    "MODEL_PIXEL_SCALE",
    "MODEL_TIEPOINT",
    "MODEL_TRANSFORMATION",
    "GEO_KEY_DIRECTORY",
    "GEO_DOUBLE_PARAMS",
    "GEO_ASCII_PARAMS",
    "GDAL_METADATA",
    "GDAL_NODATA",
    "LERC_PARAMETERS",
    "SUBFILE_REDUCED_IMAGE",
    "SUBFILE_PAGE",
    "SUBFILE_MASK",
    "FIELD_TYPES",
    "INTEGER_TYPES",
    "FLOAT_TYPES",
    "ASCII",
    "UNDEFINED",
    "BYTE",
    "SUPPORTED_COMPRESSIONS",
    "SUB_BYTE_BITS",
    "compression_name",
    "sample_dtype",
]

# --- baseline and extension tags (TIFF 6.0) -------------------------------------------------
NEW_SUBFILE_TYPE = 254
IMAGE_WIDTH = 256
IMAGE_LENGTH = 257
BITS_PER_SAMPLE = 258
COMPRESSION = 259
PHOTOMETRIC = 262
STRIP_OFFSETS = 273
SAMPLES_PER_PIXEL = 277
ROWS_PER_STRIP = 278
STRIP_BYTE_COUNTS = 279
PLANAR_CONFIGURATION = 284
PREDICTOR = 317
TILE_WIDTH = 322
TILE_LENGTH = 323
TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325
EXTRA_SAMPLES = 338
SAMPLE_FORMAT = 339
JPEG_TABLES = 347

# --- GeoTIFF tags -----------------------------------------------------------------------------
MODEL_PIXEL_SCALE = 33550
MODEL_TIEPOINT = 33922
MODEL_TRANSFORMATION = 34264
GEO_KEY_DIRECTORY = 34735
GEO_DOUBLE_PARAMS = 34736
GEO_ASCII_PARAMS = 34737

# --- GDAL private tags and LERC -----------------------------------------------------------------
GDAL_METADATA = 42112
GDAL_NODATA = 42113
LERC_PARAMETERS = 50674

# --- NewSubfileType bits ------------------------------------------------------------------------
SUBFILE_REDUCED_IMAGE = 1
SUBFILE_PAGE = 2
SUBFILE_MASK = 4

# --- field types: code -> (name, struct format character, size in bytes) ------------------------
BYTE = 1
ASCII = 2
UNDEFINED = 7
FIELD_TYPES: dict[int, tuple[str, str, int]] = {
    1: ("BYTE", "B", 1),
    2: ("ASCII", "s", 1),
    3: ("SHORT", "H", 2),
    4: ("LONG", "I", 4),
    5: ("RATIONAL", "I", 8),  # two LONGs: numerator, denominator
    6: ("SBYTE", "b", 1),
    7: ("UNDEFINED", "s", 1),
    8: ("SSHORT", "h", 2),
    9: ("SLONG", "i", 4),
    10: ("SRATIONAL", "i", 8),  # two SLONGs
    11: ("FLOAT", "f", 4),
    12: ("DOUBLE", "d", 8),
    13: ("IFD", "I", 4),
    16: ("LONG8", "Q", 8),
    17: ("SLONG8", "q", 8),
    18: ("IFD8", "Q", 8),
}
INTEGER_TYPES = frozenset({1, 3, 4, 6, 8, 9, 13, 16, 17, 18})
FLOAT_TYPES = frozenset({5, 10, 11, 12})

# --- compression codes this package can decode (code -> name) ---------------------------------
SUPPORTED_COMPRESSIONS: dict[int, str] = {
    1: "none",
    5: "lzw",
    7: "jpeg",
    8: "deflate",
    32946: "deflate",
    32773: "packbits",
    34887: "lerc",
    34925: "lzma",
    50000: "zstd",
    50001: "webp",
    34712: "jpeg2000",
    50002: "jpegxl",
}

# Well-known codes we do not decode, named in error messages.
_OTHER_COMPRESSIONS: dict[int, str] = {
    2: "CCITT RLE",
    3: "CCITT Group 3 fax",
    4: "CCITT Group 4 fax",
    6: "old-style JPEG",
    32809: "ThunderScan",
    34676: "SGILOG",
    34677: "SGILOG24",
    34892: "lossy JPEG (DNG)",
    52546: "JPEG XL (DNG)",
}


def compression_name(code: int) -> str:
    """Human-readable name of a TIFF compression code, for messages and the decode layer."""
    if code in SUPPORTED_COMPRESSIONS:
        return SUPPORTED_COMPRESSIONS[code]
    return _OTHER_COMPRESSIONS.get(code, "unknown")


SUB_BYTE_BITS = (1, 2, 4)
"""BitsPerSample of unsigned sub-byte samples, read unpacked into uint8 (GDAL's NBITS)."""

_SAMPLE_KINDS = {1: "u", 2: "i", 3: "f"}
_VALID_BITS = {"u": (8, 16, 32, 64), "i": (8, 16, 32, 64), "f": (16, 32, 64)}
_FORMAT_NAMES = {
    1: "unsigned integer",
    2: "signed integer",
    3: "IEEE float",
    4: "void",
    5: "complex integer",
    6: "complex float",
}


def sample_dtype(bits: int, sample_format: int, *, big_endian: bool) -> str:
    """The dtype string of one sample: NumPy name ("uint16") for little-endian files, explicit
    big-endian string (">u2") for big-endian ones; single-byte types are always named.

    Raises ValueError for a combination the reader does not support (12-bit, complex); the
    header reads sub-byte samples (:data:`SUB_BYTE_BITS`) as uint8 itself.
    """
    kind = _SAMPLE_KINDS.get(sample_format)
    if kind is None:
        name = _FORMAT_NAMES.get(sample_format, "unknown")
        raise ValueError(f"unsupported SampleFormat {sample_format} ({name})")
    if bits not in _VALID_BITS[kind]:
        raise ValueError(
            f"unsupported BitsPerSample {bits} for SampleFormat {sample_format} "
            f"({_FORMAT_NAMES[sample_format]})"
        )
    dtype = np.dtype(f"<{kind}{bits // 8}")
    if big_endian and dtype.itemsize > 1:
        return dtype.newbyteorder(">").str
    return dtype.name
