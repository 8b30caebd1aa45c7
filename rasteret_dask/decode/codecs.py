"""Decode one TIFF tile's bytes into a (rows, columns, samples) array, as GDAL/libtiff would.

Every codec is an imagecodecs function, which releases the GIL, so tiles decode in parallel on
threads. Every codec decodes into a tile-sized output array allocated (or given) before it
runs: byte-stream codecs (LZW, deflate, PackBits, LZMA, ZSTD, none) decompress into its bytes;
image codecs (JPEG, WebP, LERC, JPEG 2000, JPEG XL) get it as ``out=``, so a stream declaring
dimensions other than the tile's fails before the codec allocates anything. That array is
bounded by ``max_tile_bytes`` (see :mod:`.limits`), and a sparse tile allocates nothing.

libtiff's behaviour followed here:

- the predictor applies to LZW, deflate, LZMA and ZSTD only; libtiff ignores it for others;
- a big-endian file's decoded samples are byte-swapped to native order (for LERC too: libtiff
  swaps before encoding), except for the floating-point predictor, whose output is native;
- JPEG: YCbCr tiles (photometric 6, 3 samples) are converted to RGB by the JPEG library
  (libjpeg-turbo, or GDAL's libjpeg 9 with ``spec.gdal_jpeg``: :mod:`.gdal_jpeg`); every other
  photometric is returned without colour conversion;
- LERC: invalid pixels of floating-point tiles are NaN; a uint8 alpha band stored as the LERC
  mask becomes 0/255;
- sub-byte samples (1, 2 or 4 bits; each row starts on a byte boundary, most significant bits
  first) are unpacked into uint8 values, as GDAL reads them (a 1-bit mask reads 0/1, whatever
  its photometric);
- a striped image's last strip holds only the rows left (libtiff writes it so): a tile whose
  stream holds exactly ``spec.short_rows`` rows is decoded into the top of the tile and the
  rows below it are filled (they lie below the image and are never read).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import imagecodecs
import numpy as np

from ..tiff.tags import compression_name
from .gdal_jpeg import gdal_ycbcr_jpeg
from .limits import check_decoded_size, max_tile_bytes
from .predictors import to_native_order, undo_predictor
from .spec import (
    COMPRESSION_ADOBE_DEFLATE,
    COMPRESSION_DEFLATE,
    COMPRESSION_JPEG,
    COMPRESSION_JPEG2000,
    COMPRESSION_JXL,
    COMPRESSION_JXL_DNG,
    COMPRESSION_LERC,
    COMPRESSION_LZMA,
    COMPRESSION_LZW,
    COMPRESSION_NONE,
    COMPRESSION_PACKBITS,
    COMPRESSION_WEBP,
    COMPRESSION_ZSTD,
    LERC_ADD_DEFLATE,
    LERC_ADD_NONE,
    LERC_ADD_ZSTD,
    PHOTOMETRIC_YCBCR,
    PREDICTOR_NONE,
    DecodeError,
    DecodeSpec,
    fill_value,
)

__all__ = ["DecodeError", "DecodeSpec", "DECODABLE_COMPRESSIONS", "decode_tile", "is_sparse"]

ByteDecoder = Callable[..., object]
ImageDecoder = Callable[[bytes | memoryview, DecodeSpec, np.ndarray], np.ndarray]


def _available(name: str) -> bool:
    codec = getattr(imagecodecs, name, None)
    return bool(getattr(codec, "available", False))


_deflate: ByteDecoder = (
    imagecodecs.deflate_decode if _available("DEFLATE") else imagecodecs.zlib_decode
)

# byte-stream codecs: decompress into a pre-sized buffer
_BYTE_CODECS: dict[int, tuple[str, ByteDecoder]] = {
    COMPRESSION_LZW: ("LZW", imagecodecs.lzw_decode),
    COMPRESSION_ADOBE_DEFLATE: ("deflate", _deflate),
    COMPRESSION_DEFLATE: ("deflate", _deflate),
    COMPRESSION_PACKBITS: ("PackBits", imagecodecs.packbits_decode),
    COMPRESSION_LZMA: ("LZMA", imagecodecs.lzma_decode),
    COMPRESSION_ZSTD: ("ZSTD", imagecodecs.zstd_decode),
}
_BYTE_CODEC_FLAGS = {
    COMPRESSION_LZW: "LZW",
    COMPRESSION_ADOBE_DEFLATE: "ZLIB",
    COMPRESSION_DEFLATE: "ZLIB",
    COMPRESSION_PACKBITS: "PACKBITS",
    COMPRESSION_LZMA: "LZMA",
    COMPRESSION_ZSTD: "ZSTD",
}
# codecs for which libtiff applies the predictor
_PREDICTED = frozenset(
    {
        COMPRESSION_LZW,
        COMPRESSION_ADOBE_DEFLATE,
        COMPRESSION_DEFLATE,
        COMPRESSION_LZMA,
        COMPRESSION_ZSTD,
    }
)


@lru_cache(maxsize=64)
def _dtypes(dtype: str) -> tuple[np.dtype, np.dtype]:
    """(file dtype, native-order dtype) of a spec's dtype string."""
    file_dtype = np.dtype(dtype)
    return file_dtype, file_dtype.newbyteorder("=")


def _codec_error(name: str, exc: BaseException) -> DecodeError:
    return DecodeError(f"{name} decoding failed: {exc}")


def _decompress(data: bytes | memoryview, compression: int, buffer: np.ndarray,
                spec: DecodeSpec) -> int:
    """Decompress a byte-stream codec's tile into ``buffer`` (its stored bytes: file byte
    order, packed rows for sub-byte samples); the rows decoded: the tile's, or the short last
    strip's (``spec.short_rows``)."""
    rows, short = spec.tile_height, spec.short_rows
    full, short_size = buffer.size, short * spec.row_bytes
    if compression == COMPRESSION_NONE:
        raw = np.frombuffer(data, np.uint8)
        if raw.size >= full:
            buffer[:] = raw[:full]
            return rows
        if short and raw.size == short_size:  # libtiff writes exactly the rows left
            buffer[:short_size] = raw[:short_size]
            return short
        expected = f"{full}" + (f" (or {short_size} for the last strip)" if short else "")
        raise DecodeError(f"uncompressed tile has {raw.size} bytes, expected {expected}")
    name, decoder = _BYTE_CODECS[compression]
    try:
        result = decoder(data, out=buffer)
    except MemoryError:
        raise
    except Exception as exc:
        raise _codec_error(name, exc) from exc
    size = len(result)  # type: ignore[arg-type]
    if size == full:
        return rows
    if short and size == short_size:
        return short
    expected = f"{full}" + (f" (or {short_size} for the last strip)" if short else "")
    raise DecodeError(f"{name} tile decoded to {size} bytes, expected {expected}")


def _unpack(packed: np.ndarray, rows: int, spec: DecodeSpec, out: np.ndarray) -> None:
    """Sub-byte samples of ``rows`` packed rows unpacked into ``out[:rows]`` (uint8)."""
    per_row = spec.tile_width * spec.samples
    try:
        values = imagecodecs.packints_decode(packed[:rows * spec.row_bytes], np.uint8,
                                             spec.bits_per_sample, runlen=per_row)
    except Exception as exc:
        raise DecodeError(f"cannot unpack {spec.bits_per_sample}-bit samples: {exc}") from exc
    out[:rows] = values.reshape(rows, spec.tile_width, spec.samples)


def _decode_bytes(data: bytes | memoryview, spec: DecodeSpec, file_dtype: np.dtype,
                  out: np.ndarray, wanted: int | None = None) -> int:
    """A byte-stream codec's tile decoded into ``out`` (predictor undone, native order, on
    the first ``wanted`` rows only when given); the rows decoded."""
    compression = spec.compression
    if spec.bits_per_sample is not None:
        if spec.predictor != PREDICTOR_NONE and compression in _PREDICTED:
            raise DecodeError(f"predictor {spec.predictor} with {spec.bits_per_sample}-bit "
                              "samples")
        packed = np.empty(spec.tile_height * spec.row_bytes, np.uint8)
        rows = _decompress(data, compression, packed, spec)
        _unpack(packed, rows, spec, out)
        return rows
    predictor = spec.predictor if compression in _PREDICTED else PREDICTOR_NONE
    rows = _decompress(data, compression, out.reshape(-1).view(np.uint8), spec)
    valid = out[:rows if wanted is None else min(rows, wanted)]
    tile = undo_predictor(to_native_order(valid, file_dtype, predictor), predictor)
    if tile is not valid:
        valid[...] = tile
    return rows


def _target(out: np.ndarray, spec: DecodeSpec) -> np.ndarray:
    """``out`` in the shape image codecs return: (rows, columns) for one sample."""
    return out.reshape(spec.tile_height, spec.tile_width) if spec.samples == 1 else out


def _jpeg(data: bytes | memoryview, spec: DecodeSpec, out: np.ndarray) -> np.ndarray:
    if spec.photometric == PHOTOMETRIC_YCBCR and spec.samples == 3:
        colorspace, out_colorspace = "YCbCr", "RGB"  # libtiff's JPEGCOLORMODE_RGB, as GDAL
    else:
        # libtiff suppresses colour handling: input colour space == output colour space
        colorspace = {1: "GRAYSCALE", 3: "RGB", 4: "CMYK"}.get(spec.samples)
        out_colorspace = colorspace
    return imagecodecs.jpeg8_decode(
        data, tables=spec.jpeg_tables, colorspace=colorspace, outcolorspace=out_colorspace,
        out=_target(out, spec),
    )


def _webp(data: bytes | memoryview, spec: DecodeSpec, out: np.ndarray) -> np.ndarray:
    return imagecodecs.webp_decode(data, hasalpha=spec.samples == 4, out=_target(out, spec))


def _jpeg2k(data: bytes | memoryview, spec: DecodeSpec, out: np.ndarray) -> np.ndarray:
    return imagecodecs.jpeg2k_decode(data, out=_target(out, spec))


def _jpegxl(data: bytes | memoryview, spec: DecodeSpec, out: np.ndarray) -> np.ndarray:
    return imagecodecs.jpegxl_decode(data, out=_target(out, spec))


def _lerc_blob(data: bytes | memoryview, spec: DecodeSpec) -> bytes | memoryview:
    """The LERC blob under the additional compression, inflated into at most the tile's size
    plus room for LERC's masks and headers (a deflate bomb fails instead of growing)."""
    params = spec.lerc_parameters or ()
    extra = params[1] if len(params) > 1 else LERC_ADD_NONE
    if extra == LERC_ADD_NONE:
        return data
    if extra not in (LERC_ADD_DEFLATE, LERC_ADD_ZSTD):
        raise DecodeError(f"unsupported LERC additional compression {extra}")
    bound = spec.nbytes + spec.nbytes // 4 + 65536
    decoder = imagecodecs.zlib_decode if extra == LERC_ADD_DEFLATE else imagecodecs.zstd_decode
    try:
        return decoder(data, out=bound)
    except MemoryError:
        raise
    except Exception as exc:
        raise DecodeError(f"LERC blob does not inflate within {bound} bytes (corrupt, or "
                          f"larger than a {spec.nbytes}-byte tile allows): {exc}") from exc


def _lerc_layouts(out: np.ndarray, spec: DecodeSpec) -> list[np.ndarray]:
    """The arrays a LERC blob of the tile may decode into, in the order tried: ``out`` (one
    band, or chunky samples), ``out``'s memory as (samples, rows, columns) (LERC "bands",
    libtiff's layout for float data with partial NaN), and for uint8 a separate array for all
    samples but the last, an alpha sample stored as the LERC validity mask."""
    rows, cols, samples = spec.shape
    if samples == 1:
        return [out]
    layouts = [out, out.reshape(samples, rows, cols)]
    if out.dtype == np.uint8:
        layouts.append(np.empty((rows, cols, samples - 1), np.uint8))
    return layouts


def _lerc(data: bytes | memoryview, spec: DecodeSpec, out: np.ndarray) -> np.ndarray:
    blob = _lerc_blob(data, spec)
    rows, cols, samples = spec.shape
    layouts = _lerc_layouts(out, spec)
    for k, target in enumerate(layouts):
        try:
            # imagecodecs checks the blob's dimensions against ``target`` before it allocates
            values, masks = imagecodecs.lerc_decode(blob, masks=True, out=target)
            break
        except ValueError:
            if k == len(layouts) - 1:
                raise
    if k == 0 and not _same_memory(values, out):
        out[...] = values.reshape(out.shape)
    elif k == 1:  # bands: (samples, rows, cols) in out's memory
        out[...] = np.moveaxis(values.reshape(samples, rows, cols).copy(), 0, -1)
        if masks is not None and masks.ndim == 3:
            masks = np.moveaxis(masks, 0, -1)
    elif k == 2:  # uint8 colour + alpha from the validity mask: 0 or 255
        out[:, :, :-1] = values.reshape(rows, cols, samples - 1)
        out[:, :, -1] = 255 if masks is None else masks.reshape(rows, cols) * np.uint8(255)
        return out
    if masks is not None and out.dtype.kind == "f":
        valid = masks if masks.ndim == 3 else masks.reshape(rows, cols, 1)
        np.copyto(out, np.nan, where=~np.broadcast_to(valid, out.shape))
    return out


_IMAGE_CODECS: dict[int, tuple[str, str, ImageDecoder]] = {
    COMPRESSION_JPEG: ("JPEG", "JPEG8", _jpeg),
    COMPRESSION_WEBP: ("WebP", "WEBP", _webp),
    COMPRESSION_LERC: ("LERC", "LERC", _lerc),
    COMPRESSION_JPEG2000: ("JPEG 2000", "JPEG2K", _jpeg2k),
    COMPRESSION_JXL: ("JPEG XL", "JPEGXL", _jpegxl),
    COMPRESSION_JXL_DNG: ("JPEG XL", "JPEGXL", _jpegxl),
}

DECODABLE_COMPRESSIONS: frozenset[int] = frozenset(
    {COMPRESSION_NONE}
    | {code for code, flag in _BYTE_CODEC_FLAGS.items() if _available(flag)}
    | {code for code, (_, flag, _) in _IMAGE_CODECS.items() if _available(flag)}
)
"""TIFF compression codes that :func:`decode_tile` can decode with this imagecodecs build."""


def _same_memory(tile: np.ndarray, out: np.ndarray) -> bool:
    """Whether ``tile`` is ``out``'s memory, laid out as ``out`` (a reshaped view of it)."""
    return (tile.__array_interface__["data"][0] == out.__array_interface__["data"][0]
            and tile.size == out.size and tile.flags.c_contiguous)


def _decode_image(
    data: bytes | memoryview, spec: DecodeSpec, native: np.dtype, out: np.ndarray
) -> int:
    """Decode an image codec's tile into ``out`` (the codec checks the stream's dimensions
    against ``out`` before it allocates anything); the rows decoded. A stream of a striped
    image's short last strip decodes into ``out[:spec.short_rows]``."""
    name, _, decoder = _IMAGE_CODECS[spec.compression]
    if spec.bits_per_sample is not None:
        raise DecodeError(f"{name} tiles cannot hold {spec.bits_per_sample}-bit samples")
    if spec.gdal_jpeg and spec.is_ycbcr_jpeg:
        return gdal_ycbcr_jpeg(data, spec, out)
    try:
        _image_into(data, spec, native, out, name, decoder)
        return spec.tile_height
    except DecodeError as exc:
        if not spec.short_rows:
            raise
        first = exc
    short = spec.with_rows(spec.short_rows)
    try:
        _image_into(data, short, native, out[:spec.short_rows], name, decoder)
    except DecodeError:
        raise first from None
    return spec.short_rows


def _image_into(data: bytes | memoryview, spec: DecodeSpec, native: np.dtype, out: np.ndarray,
                name: str, decoder: ImageDecoder) -> None:
    try:
        tile = decoder(data, spec, out)
    except (DecodeError, MemoryError):
        raise
    except Exception as exc:
        raise _codec_error(name, exc) from exc
    if tile is out:
        return
    if tile.ndim == 2:
        tile = tile[:, :, np.newaxis]
    if tile.shape != spec.shape:
        raise DecodeError(f"{name} tile decoded to shape {tile.shape}, expected {spec.shape}")
    if tile.dtype != native:
        raise DecodeError(f"{name} tile decoded to {tile.dtype}, expected {native}")
    if not _same_memory(tile, out):
        out[...] = tile


def _check_out(out: np.ndarray, spec: DecodeSpec, native: np.dtype) -> None:
    if out.shape != spec.shape or out.dtype != native or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous {native} array of shape {spec.shape}, "
            f"not {out.dtype}{out.shape}"
        )


def is_sparse(data: bytes | memoryview) -> bool:
    """Whether a tile's bytes are empty: a sparse tile (byte count 0, GDAL's SPARSE_OK), read
    as the nodata value (0 without one) without decoding anything."""
    return memoryview(data).nbytes == 0


def decode_tile(
    data: bytes | memoryview,
    spec: DecodeSpec,
    out: np.ndarray | None = None,
    *,
    max_bytes: int | str | None = None,
    rows: int | None = None,
) -> np.ndarray:
    """Decode one tile's bytes into a native-order array of shape (height, width, samples).

    Parameters
    ----------
    data
        The tile's bytes; empty for a sparse tile.
    spec
        The tile's decode parameters.
    out
        A C-contiguous array of the tile's shape and native dtype to decode into (then
        returned); without it a new array is allocated.
    max_bytes
        Largest tile this call allocates (see :func:`.limits.max_tile_bytes`: default from
        dask config ``rasteret_dask.max_tile_bytes``, else 256 MiB); only used without ``out``.
    rows
        Only the tile's first ``rows`` rows are wanted: a byte-stream codec's predictor and
        byte order are undone on them only (a small window of a large tile, as an overview
        smaller than its tile is); the rows below are then left unspecified.

    Returns
    -------
    numpy.ndarray
        The tile. A sparse tile fills ``out`` with the nodata value (0 without one), or without
        ``out`` is a read-only array broadcast from that value (no tile-sized allocation).

    Raises
    ------
    DecodeError
        On corrupt data, a stream whose dimensions differ from the tile's, or an unsupported
        compression/predictor; :class:`.limits.TileTooLargeError` (a DecodeError) when the tile
        would need more than ``max_bytes``, before anything is allocated.
    """
    file_dtype, native = _dtypes(spec.dtype)
    if out is not None:
        _check_out(out, spec, native)
    if is_sparse(data):
        value = fill_value(native, spec.nodata)
        if out is None:
            return np.broadcast_to(np.array(value, native), spec.shape)
        out.fill(value)
        return out
    compression = spec.compression
    if compression not in DECODABLE_COMPRESSIONS:
        name = compression_name(compression)
        raise DecodeError(f"unsupported TIFF compression {compression} ({name})")
    if out is None:
        check_decoded_size(spec, max_tile_bytes(max_bytes))
        out = np.empty(spec.shape, native)
    if compression == COMPRESSION_NONE or compression in _BYTE_CODECS:
        decoded = _decode_bytes(data, spec, file_dtype, out, rows)
    else:
        decoded = _decode_image(data, spec, native, out)
        to_native_order(out[:decoded], file_dtype, PREDICTOR_NONE)
    if decoded < spec.tile_height:
        out[decoded:] = fill_value(native, spec.nodata)
    return out
