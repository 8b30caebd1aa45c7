"""Decoded tag values of one IFD, by tag code: which tags are read as what, and their defaults.

Shared by the first-IFD parse (`header`) and the overview walk (`overviews`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .buffer import TiffError
from .ifd import Ifd, IfdReader
from .tags import (
    BITS_PER_SAMPLE,
    COMPRESSION,
    EXTRA_SAMPLES,
    GDAL_NODATA,
    GEO_ASCII_PARAMS,
    GEO_DOUBLE_PARAMS,
    GEO_KEY_DIRECTORY,
    IMAGE_LENGTH,
    IMAGE_WIDTH,
    JPEG_TABLES,
    LERC_PARAMETERS,
    MODEL_PIXEL_SCALE,
    MODEL_TIEPOINT,
    MODEL_TRANSFORMATION,
    NEW_SUBFILE_TYPE,
    PHOTOMETRIC,
    PLANAR_CONFIGURATION,
    PREDICTOR,
    ROWS_PER_STRIP,
    SAMPLE_FORMAT,
    SAMPLES_PER_PIXEL,
    STRIP_BYTE_COUNTS,
    STRIP_OFFSETS,
    TILE_BYTE_COUNTS,
    TILE_LENGTH,
    TILE_OFFSETS,
    TILE_WIDTH,
)

__all__ = ["INT_TAGS", "FLOAT_TAGS", "TEXT_TAGS", "BLOB_TAGS", "tag_values", "single_value"]

INT_TAGS = (
    IMAGE_WIDTH, IMAGE_LENGTH, TILE_WIDTH, TILE_LENGTH, BITS_PER_SAMPLE, COMPRESSION,
    PHOTOMETRIC, SAMPLES_PER_PIXEL, PLANAR_CONFIGURATION, PREDICTOR, SAMPLE_FORMAT,
    EXTRA_SAMPLES, TILE_OFFSETS, TILE_BYTE_COUNTS, GEO_KEY_DIRECTORY, LERC_PARAMETERS,
    NEW_SUBFILE_TYPE, STRIP_OFFSETS, STRIP_BYTE_COUNTS, ROWS_PER_STRIP,
)  # fmt: skip
FLOAT_TAGS = (MODEL_PIXEL_SCALE, MODEL_TIEPOINT, MODEL_TRANSFORMATION, GEO_DOUBLE_PARAMS)
TEXT_TAGS = (GDAL_NODATA, GEO_ASCII_PARAMS)
BLOB_TAGS = (JPEG_TABLES,)


def tag_values(reader: IfdReader, ifd: Ifd, tags: Sequence[int]) -> dict[int, Any]:
    """Decoded values of the ``tags`` present in ``ifd`` (missing bytes recorded in
    ``reader``, not raised): a tuple of numbers, a text (ASCII tags) or bytes (blob tags)."""
    out: dict[int, Any] = {}
    for tag in tags:
        entry = ifd.entries.get(tag)
        if entry is None:
            continue
        if tag in TEXT_TAGS:
            value: Any = reader.text(entry)
        elif tag in BLOB_TAGS:
            value = reader.blob(entry)
        else:
            value = reader.numbers(entry, integer=tag in INT_TAGS)
        if value is not None:
            out[tag] = value
    return out


def single_value(values: dict[int, Any], tag: int, name: str, default: int | None = None) -> int:
    """A one-valued integer tag, its default when absent, TiffError when required."""
    vals = values.get(tag)
    if vals:
        return int(vals[0])
    if default is None:
        raise TiffError(f"missing required tag {name} ({tag})")
    return default
