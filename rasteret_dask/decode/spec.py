"""Decode parameters of one band's tiles, and the error raised when a tile cannot be decoded.

A :class:`DecodeSpec` travels inside every Dask read task, so it holds only a few scalars (and
the JPEG tables of JPEG files) and pickles to a short tuple.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask.config
import numpy as np

if TYPE_CHECKING:  # a pure value of the tiff layer, read by attribute (no runtime import)
    from ..tiff.cog_metadata import CogMetadata

__all__ = [
    "DecodeError",
    "DecodeSpec",
    "fill_value",
    "YCBCR_JPEG_KEY",
    "YCBCR_JPEG_DECODERS",
    "ycbcr_jpeg_decoder",
    "COMPRESSION_NONE",
    "COMPRESSION_LZW",
    "COMPRESSION_OJPEG",
    "COMPRESSION_JPEG",
    "COMPRESSION_ADOBE_DEFLATE",
    "COMPRESSION_DEFLATE",
    "COMPRESSION_PACKBITS",
    "COMPRESSION_JPEG2000",
    "COMPRESSION_LERC",
    "COMPRESSION_LZMA",
    "COMPRESSION_ZSTD",
    "COMPRESSION_WEBP",
    "COMPRESSION_JXL",
    "COMPRESSION_JXL_DNG",
    "PREDICTOR_NONE",
    "PREDICTOR_HORIZONTAL",
    "PREDICTOR_FLOATING_POINT",
    "PHOTOMETRIC_YCBCR",
    "LERC_ADD_NONE",
    "LERC_ADD_DEFLATE",
    "LERC_ADD_ZSTD",
]

# TIFF Compression tag (259) values. Defined here because the decode layer sits below tiff/
# in the layer stack and must not import it.
COMPRESSION_NONE = 1
COMPRESSION_LZW = 5
COMPRESSION_OJPEG = 6
COMPRESSION_JPEG = 7
COMPRESSION_ADOBE_DEFLATE = 8
COMPRESSION_DEFLATE = 32946
COMPRESSION_PACKBITS = 32773
COMPRESSION_JPEG2000 = 34712
COMPRESSION_LERC = 34887
COMPRESSION_LZMA = 34925
COMPRESSION_ZSTD = 50000
COMPRESSION_WEBP = 50001
COMPRESSION_JXL = 50002
COMPRESSION_JXL_DNG = 52546

# TIFF Predictor tag (317) values.
PREDICTOR_NONE = 1
PREDICTOR_HORIZONTAL = 2
PREDICTOR_FLOATING_POINT = 3

PHOTOMETRIC_YCBCR = 6

# Second value of the LercParameters tag (50674): compression applied over the LERC blob.
LERC_ADD_NONE = 0
LERC_ADD_DEFLATE = 1
LERC_ADD_ZSTD = 2


YCBCR_JPEG_KEY = "rasteret_dask.ycbcr_jpeg"
"""Dask config key choosing the decoder of YCbCr JPEG tiles (see :func:`ycbcr_jpeg_decoder`)."""
YCBCR_JPEG_DECODERS = ("libjpeg-turbo", "gdal")


class DecodeError(ValueError):
    """A tile's bytes cannot be decoded: corrupt data or an unsupported parameter combination."""


def ycbcr_jpeg_decoder(value: str | None = None) -> str:
    """The decoder of YCbCr JPEG tiles: ``value``, else dask config
    ``rasteret_dask.ycbcr_jpeg``, else ``"libjpeg-turbo"``.

    ``"libjpeg-turbo"`` is imagecodecs' decoder (fast; its chroma upsampling differs from
    GDAL's near colour changes); ``"gdal"`` is GDAL's own JPEG decoder through rasterio (IJG
    libjpeg 9, as rasterio and GDAL read the file: equal values, several times slower: about
    1.3 ms instead of 0.2-0.3 ms for a 256 x 256 tile on an idle core).
    Read when a read is planned; the choice travels in each tile's :class:`DecodeSpec`.

    Raises
    ------
    ValueError
        For another value.
    """
    if value is None:
        value = dask.config.get(YCBCR_JPEG_KEY, default=None) or YCBCR_JPEG_DECODERS[0]
    if value not in YCBCR_JPEG_DECODERS:
        raise ValueError(f"{YCBCR_JPEG_KEY} must be one of {YCBCR_JPEG_DECODERS}, "
                         f"not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class DecodeSpec:
    """How to decode the tiles of one band of one TIFF image (small, immutable, picklable).

    ``samples`` is the number of samples stored in each tile: ``samples_per_pixel`` for a
    chunky (pixel-interleaved) file and 1 for a planar one. ``dtype`` is a NumPy dtype string
    in the file's byte order (``"uint16"`` or ``">u2"``). ``bits_per_sample`` is set for
    sub-byte samples (1, 2 or 4 bits, each row starting on a byte boundary, unpacked into
    ``uint8``). ``short_rows`` is the row count of a striped image's last strip when it holds
    fewer rows than ``tile_height`` (0 otherwise): a tile that decodes to exactly that many
    rows is accepted, the rows below it filled with the fill value. ``gdal_jpeg`` decodes
    YCbCr JPEG tiles with GDAL's JPEG decoder (:func:`ycbcr_jpeg_decoder`).
    """

    compression: int
    predictor: int
    dtype: str
    tile_width: int
    tile_height: int
    samples: int
    photometric: int
    jpeg_tables: bytes | None = None
    lerc_parameters: tuple[int, ...] | None = None
    nodata: float | None = None
    bits_per_sample: int | None = None
    short_rows: int = 0
    gdal_jpeg: bool = False

    def __post_init__(self) -> None:
        try:
            dtype = np.dtype(self.dtype)
        except TypeError as exc:
            raise DecodeError(f"invalid dtype {self.dtype!r}") from exc
        if dtype.kind not in "uif" or dtype.itemsize not in (1, 2, 4, 8):
            raise DecodeError(f"unsupported sample dtype {self.dtype!r}")
        if self.tile_width <= 0 or self.tile_height <= 0:
            raise DecodeError(f"invalid tile size {self.tile_width} x {self.tile_height}")
        if self.samples <= 0:
            raise DecodeError(f"invalid samples per tile {self.samples}")
        if self.bits_per_sample is not None and (
                self.bits_per_sample not in (1, 2, 4) or dtype != np.uint8):
            raise DecodeError(f"unsupported sub-byte samples: {self.bits_per_sample} bits "
                              f"into {self.dtype}")
        if not 0 <= self.short_rows < self.tile_height:
            raise DecodeError(f"invalid last strip of {self.short_rows} rows for "
                              f"{self.tile_height}-row strips")

    def __reduce__(self) -> tuple[type[DecodeSpec], tuple[Any, ...]]:
        # a plain tuple of field values: the shortest pickle a dataclass can have
        return (
            DecodeSpec,
            (
                self.compression,
                self.predictor,
                self.dtype,
                self.tile_width,
                self.tile_height,
                self.samples,
                self.photometric,
                self.jpeg_tables,
                self.lerc_parameters,
                self.nodata,
                self.bits_per_sample,
                self.short_rows,
                self.gdal_jpeg,
            ),
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of a decoded tile: (tile_height, tile_width, samples)."""
        return (self.tile_height, self.tile_width, self.samples)

    @property
    def nbytes(self) -> int:
        """Size in bytes of a decoded tile, as its header declares it."""
        return self.tile_height * self.tile_width * self.samples * np.dtype(self.dtype).itemsize

    @property
    def row_bytes(self) -> int:
        """Bytes of one stored row of a tile: packed to whole bytes for sub-byte samples."""
        if self.bits_per_sample is None:
            return self.tile_width * self.samples * np.dtype(self.dtype).itemsize
        return -(-self.tile_width * self.samples * self.bits_per_sample // 8)

    def with_rows(self, rows: int) -> DecodeSpec:
        """The spec of a tile of ``rows`` rows (a striped image's short last strip)."""
        return DecodeSpec(self.compression, self.predictor, self.dtype, self.tile_width, rows,
                          self.samples, self.photometric, self.jpeg_tables,
                          self.lerc_parameters, self.nodata, self.bits_per_sample, 0,
                          self.gdal_jpeg)

    @property
    def is_ycbcr_jpeg(self) -> bool:
        """Whether the tiles are YCbCr JPEG (converted to RGB when decoded)."""
        return (self.compression == COMPRESSION_JPEG and self.photometric == PHOTOMETRIC_YCBCR
                and self.samples == 3)

    @classmethod
    def from_metadata(cls, md: CogMetadata, ycbcr_jpeg: str | None = None) -> DecodeSpec:
        """The spec of a band's tiles from its typed COG metadata.

        Parameters
        ----------
        md
            The record's :class:`~rasteret_dask.tiff.cog_metadata.CogMetadata`; a planar file
            decodes one sample per tile.
        ycbcr_jpeg
            The decoder of YCbCr JPEG tiles (default: :func:`ycbcr_jpeg_decoder`'s).

        Raises
        ------
        DecodeError
            When the dtype, tile size or sample count cannot be decoded.
        """
        ycbcr = (md.compression == COMPRESSION_JPEG and md.photometric == PHOTOMETRIC_YCBCR
                 and md.samples_per_tile == 3)
        return cls(
            compression=md.compression,
            predictor=md.predictor,
            dtype=str(md.dtype),
            tile_width=md.tile_width,
            tile_height=md.tile_height,
            samples=md.samples_per_tile,
            photometric=md.photometric,
            jpeg_tables=md.jpeg_tables,
            lerc_parameters=md.lerc_parameters,
            nodata=md.nodata,
            bits_per_sample=md.bits_per_sample,
            short_rows=md.last_strip_rows,
            gdal_jpeg=ycbcr and ycbcr_jpeg_decoder(ycbcr_jpeg) == "gdal",
        )


def fill_value(dtype: np.dtype, nodata: float | None) -> int | float:
    """The value GDAL writes into a missing (sparse) tile: nodata cast like GDALCopyWords."""
    if nodata is None:
        return 0
    if dtype.kind == "f":
        if math.isnan(nodata) or math.isinf(nodata):
            return nodata
        limit = float(np.finfo(dtype).max)
        return min(max(nodata, -limit), limit)
    if math.isnan(nodata):
        return 0
    info = np.iinfo(dtype)
    if nodata <= info.min:
        return int(info.min)
    if nodata >= info.max:
        return int(info.max)
    # GDAL rounds half away from zero when converting a double to an integer type
    return int(math.floor(nodata + 0.5)) if nodata >= 0 else int(math.ceil(nodata - 0.5))
