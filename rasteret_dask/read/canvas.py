"""Chips on a query grid (pure): a read placed onto a fixed-size grid, and the first-valid
mosaic of several records (TorchGeo's merge rule: the first record in order wins a pixel
where its value is valid; rasterio.merge's ``"first"``).

A read stays on the records' pixel grid; the query grid must have the same pixel size, and
its origin is snapped to the records' pixels (nearest pixel edge), never resampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["QueryGrid", "place", "first_valid", "valid_mask"]


@dataclass(frozen=True)
class QueryGrid:
    """A chip's grid: its left and top edges, pixel size (positive) and shape (h, w)."""

    left: float
    top: float
    xres: float
    yres: float
    height: int
    width: int

    @classmethod
    def from_bounds(cls, xmin: float, ymin: float, xmax: float, ymax: float, xres: float,
                    yres: float) -> QueryGrid:
        """The grid of a (xmin, ymin, xmax, ymax) box at pixel size (xres, yres)."""
        xres, yres = abs(float(xres)), abs(float(yres))
        return cls(float(xmin), float(ymax), xres, yres, int(round((ymax - ymin) / yres)),
                   int(round((xmax - xmin) / xres)))

    def offset(self, x_centre: float, y_centre: float) -> tuple[int, int]:
        """(row, col) on this grid of the pixel whose centre is (``x_centre``, ``y_centre``)."""
        return (int(round((self.top - y_centre) / self.yres - 0.5)),
                int(round((x_centre - self.left) / self.xres - 0.5)))


def place(array: np.ndarray, row: int, col: int, grid: QueryGrid, fill: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """``array`` (..., h, w) placed at (``row``, ``col``) of ``grid``; the rest ``fill``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The (..., grid.height, grid.width) chip and where it holds read pixels (True).
    """
    lead = array.shape[:-2]
    out = np.full((*lead, grid.height, grid.width), fill, dtype=array.dtype)
    covered = np.zeros((grid.height, grid.width), dtype=bool)
    h, w = array.shape[-2:]
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + h, grid.height), min(col + w, grid.width)
    if r1 > r0 and c1 > c0:
        out[..., r0:r1, c0:c1] = array[..., r0 - row:r1 - row, c0 - col:c1 - col]
        covered[r0:r1, c0:c1] = True
    return out, covered


def valid_mask(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """Where ``values`` are values: not NaN and not ``nodata``."""
    valid = ~np.isnan(values) if values.dtype.kind == "f" else np.ones(values.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= values != nodata
    return valid


def first_valid(stack: np.ndarray, valid: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Mosaic of a (time, band, y, x) stack: per pixel and band, the first time whose value
    is valid (``valid``, same shape); ``fill`` (per band) where none is."""
    out = np.broadcast_to(np.asarray(fill, dtype=stack.dtype)[:, None, None],
                          stack.shape[1:]).copy()
    done = np.zeros(stack.shape[1:], dtype=bool)
    for t in range(stack.shape[0]):
        take = valid[t] & ~done
        out[take] = stack[t][take]
        done |= take
    return out
