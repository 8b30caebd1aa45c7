"""TIFF predictors (tag 317) undone in place on a decompressed tile, as libtiff does.

Horizontal differencing (2) stores each sample as its difference from the same sample of the
previous pixel in the row, as integers of the sample's size in the file's byte order, wrapping
on overflow. The floating-point predictor (3) splits each row's values into byte planes (most
significant first) and byte-differences them; its output does not depend on the file's byte
order. Both are undone with imagecodecs, which releases the GIL.
"""

from __future__ import annotations

import imagecodecs
import numpy as np

from .spec import (
    PREDICTOR_FLOATING_POINT,
    PREDICTOR_HORIZONTAL,
    PREDICTOR_NONE,
    DecodeError,
)

__all__ = ["undo_predictor", "to_native_order"]


def to_native_order(tile: np.ndarray, file_dtype: np.dtype, predictor: int) -> np.ndarray:
    """Byte-swap a native-typed tile filled with the file's bytes when the file's order differs.

    Floating-point predicted data is left alone: that predictor's output is native already.
    """
    if file_dtype.isnative or file_dtype.itemsize == 1 or predictor == PREDICTOR_FLOATING_POINT:
        return tile
    return tile.byteswap(inplace=True)


def undo_predictor(tile: np.ndarray, predictor: int) -> np.ndarray:
    """Undo ``predictor`` on a native-order (rows, columns, samples) tile, in place when possible."""
    if predictor == PREDICTOR_NONE:
        return tile
    if predictor == PREDICTOR_HORIZONTAL:
        # the differences are integers of the sample's width, whatever the sample format
        view = tile if tile.dtype.kind in "iu" else tile.view(f"u{tile.dtype.itemsize}")
        try:
            imagecodecs.delta_decode(view, axis=1, out=view)
        except Exception as exc:
            raise DecodeError(f"cannot undo the horizontal predictor: {exc}") from exc
        return tile
    if predictor == PREDICTOR_FLOATING_POINT:
        if tile.dtype.kind != "f":
            raise DecodeError(
                f"floating-point predictor (3) needs floating-point samples, not {tile.dtype}"
            )
        try:
            return imagecodecs.floatpred_decode(tile, axis=1)
        except Exception as exc:
            raise DecodeError(f"cannot undo the floating-point predictor: {exc}") from exc
    raise DecodeError(f"unsupported predictor {predictor}")
