"""Decode one TIFF tile's bytes into a (rows, columns, samples) array, as GDAL/libtiff would.

Every codec is an imagecodecs function, which releases the GIL, so tiles decode in parallel on
threads. Byte-stream codecs (LZW, deflate, PackBits, LZMA, ZSTD, none) decompress straight into
the output array; image codecs (JPEG, WebP, LERC, JPEG 2000, JPEG XL) return arrays that are
checked against the tile's shape and dtype.

libtiff's behaviour followed here:

- the predictor applies to LZW, deflate, LZMA and ZSTD only; libtiff ignores it for others;
- a big-endian file's decoded samples are byte-swapped to native order (for LERC too: libtiff
  swaps before encoding), except for the floating-point predictor, whose output is native;
- JPEG: YCbCr tiles (photometric 6, 3 samples) are converted to RGB by the JPEG library; every
  other photometric is returned without colour conversion;
- LERC: invalid pixels of floating-point tiles are NaN; a uint8 alpha band stored as the LERC
  mask becomes 0/255.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import imagecodecs
import numpy as np

from ..tiff.tags import compression_name
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

__all__ = ["DecodeError", "DecodeSpec", "DECODABLE_COMPRESSIONS", "decode_tile"]

ByteDecoder = Callable[..., object]
ImageDecoder = Callable[[bytes | memoryview, DecodeSpec, np.dtype], np.ndarray]


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


def _decompress(
    data: bytes | memoryview,
    compression: int,
    spec: DecodeSpec,
    native: np.dtype,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decompress a byte-stream codec's tile into ``out`` or a new native-typed array (file
    byte order)."""
    tile = np.empty(spec.shape, native) if out is None else out
    buffer = tile.reshape(-1).view(np.uint8)
    if compression == COMPRESSION_NONE:
        raw = np.frombuffer(data, np.uint8)
        if raw.size < buffer.size:
            raise DecodeError(f"uncompressed tile has {raw.size} bytes, expected {buffer.size}")
        buffer[:] = raw[: buffer.size]
        return tile
    name, decoder = _BYTE_CODECS[compression]
    try:
        result = decoder(data, out=buffer)
    except MemoryError:
        raise
    except Exception as exc:
        raise _codec_error(name, exc) from exc
    size = len(result)  # type: ignore[arg-type]
    if size != buffer.size:
        raise DecodeError(f"{name} tile decoded to {size} bytes, expected {buffer.size}")
    return tile


def _jpeg(data: bytes | memoryview, spec: DecodeSpec, native: np.dtype) -> np.ndarray:
    if spec.photometric == PHOTOMETRIC_YCBCR and spec.samples == 3:
        colorspace, out_colorspace = "YCbCr", "RGB"  # libtiff's JPEGCOLORMODE_RGB, as GDAL
    else:
        # libtiff suppresses colour handling: input colour space == output colour space
        colorspace = {1: "GRAYSCALE", 3: "RGB", 4: "CMYK"}.get(spec.samples)
        out_colorspace = colorspace
    return imagecodecs.jpeg8_decode(
        data, tables=spec.jpeg_tables, colorspace=colorspace, outcolorspace=out_colorspace
    )


def _webp(data: bytes | memoryview, spec: DecodeSpec, native: np.dtype) -> np.ndarray:
    return imagecodecs.webp_decode(data, hasalpha=spec.samples == 4)


def _jpeg2k(data: bytes | memoryview, spec: DecodeSpec, native: np.dtype) -> np.ndarray:
    return imagecodecs.jpeg2k_decode(data)


def _jpegxl(data: bytes | memoryview, spec: DecodeSpec, native: np.dtype) -> np.ndarray:
    return imagecodecs.jpegxl_decode(data)


def _lerc_blob(data: bytes | memoryview, spec: DecodeSpec) -> bytes | memoryview:
    params = spec.lerc_parameters or ()
    extra = params[1] if len(params) > 1 else LERC_ADD_NONE
    if extra == LERC_ADD_NONE:
        return data
    if extra == LERC_ADD_DEFLATE:
        return imagecodecs.zlib_decode(data)
    if extra == LERC_ADD_ZSTD:
        return imagecodecs.zstd_decode(data)
    raise DecodeError(f"unsupported LERC additional compression {extra}")


def _lerc(data: bytes | memoryview, spec: DecodeSpec, native: np.dtype) -> np.ndarray:
    values, masks = imagecodecs.lerc_decode(_lerc_blob(data, spec), masks=True)
    rows, cols, samples = spec.shape
    if samples > 1 and values.shape == (samples, rows, cols) and values.shape != spec.shape:
        # LERC "bands" (one mask per band): libtiff's layout for float data with partial NaN
        values = np.moveaxis(values, 0, -1)
        masks = None if masks is None else np.moveaxis(masks, 0, -1)
    elif values.ndim == 2:
        values = values[:, :, np.newaxis]
    if native == np.uint8 and samples > 1 and values.shape == (rows, cols, samples - 1):
        # the last (alpha) sample was stored as the LERC validity mask: 0 or 255
        alpha = np.full((rows, cols, 1), 255, np.uint8)
        if masks is not None:
            alpha[:, :, 0] = masks.reshape(rows, cols).astype(np.uint8) * np.uint8(255)
        return np.concatenate([values, alpha], axis=2)
    if masks is not None and native.kind == "f" and values.shape == spec.shape:
        valid = masks if masks.ndim == 3 else masks.reshape(rows, cols, 1)
        values = np.array(values, order="C")
        np.copyto(values, np.nan, where=~np.broadcast_to(valid, values.shape))
    return values


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


def _decode_image(data: bytes | memoryview, spec: DecodeSpec, native: np.dtype) -> np.ndarray:
    name, _, decoder = _IMAGE_CODECS[spec.compression]
    try:
        tile = decoder(data, spec, native)
    except (DecodeError, MemoryError):
        raise
    except Exception as exc:
        raise _codec_error(name, exc) from exc
    if tile.ndim == 2:
        tile = tile[:, :, np.newaxis]
    if tile.shape != spec.shape:
        raise DecodeError(f"{name} tile decoded to shape {tile.shape}, expected {spec.shape}")
    if tile.dtype != native:
        raise DecodeError(f"{name} tile decoded to {tile.dtype}, expected {native}")
    if not tile.flags.writeable or not tile.flags.c_contiguous:
        tile = np.array(tile, order="C")
    return tile


def _check_out(out: np.ndarray, spec: DecodeSpec, native: np.dtype) -> None:
    if out.shape != spec.shape or out.dtype != native or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous {native} array of shape {spec.shape}, "
            f"not {out.dtype}{out.shape}"
        )


def decode_tile(
    data: bytes | memoryview, spec: DecodeSpec, out: np.ndarray | None = None
) -> np.ndarray:
    """Decode one tile's bytes into a native-order array of shape (height, width, samples).

    With ``out`` (C-contiguous, that shape and dtype) the tile is decoded into it and ``out``
    is returned. Empty ``data`` (a sparse tile) yields a tile filled with the nodata value
    (0 without one). Raises :class:`DecodeError` on corrupt data or an unsupported
    compression/predictor.
    """
    file_dtype, native = _dtypes(spec.dtype)
    if out is not None:
        _check_out(out, spec, native)
    if memoryview(data).nbytes == 0:
        if out is None:
            return np.full(spec.shape, fill_value(native, spec.nodata), native)
        out.fill(fill_value(native, spec.nodata))
        return out
    compression = spec.compression
    if compression not in DECODABLE_COMPRESSIONS:
        name = compression_name(compression)
        raise DecodeError(f"unsupported TIFF compression {compression} ({name})")
    if compression == COMPRESSION_NONE or compression in _BYTE_CODECS:
        predictor = spec.predictor if compression in _PREDICTED else PREDICTOR_NONE
        tile = _decompress(data, compression, spec, native, out)
        tile = to_native_order(tile, file_dtype, predictor)
        tile = undo_predictor(tile, predictor)
    else:
        tile = _decode_image(data, spec, native)
        tile = to_native_order(tile, file_dtype, PREDICTOR_NONE)
    if out is not None and tile is not out:
        out[...] = tile
        return out
    return tile
