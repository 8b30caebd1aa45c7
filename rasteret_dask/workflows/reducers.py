"""What a composite computes per calendar month (pure numpy, no I/O): the reducers, the
quality mask that drops pixels before reducing, and NDVI of the reduced bands.

Reducers: ``"median"`` (default), ``"mean"``, ``"min"``, ``"max"`` (NaN-ignoring, float32),
``"count"`` (valid observations, uint16, 0 where none) and percentiles written ``"p<q>"``
(``"p90"``, ``"p2.5"``; numpy's linear interpolation between observations, float32). A
quality mask names a band (read on the same grid with nearest resampling) and the values of it
whose pixels are dropped (e.g. Sentinel-2 SCL classes 3, 8, 9, 10: cloud shadow, clouds,
cirrus).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["Reducer", "QualityMask", "REDUCERS", "parse_reducer", "parse_mask", "observations",
           "ndvi_block"]

REDUCERS = ("median", "mean", "min", "max", "count")
"""The named reducers; percentiles are written ``"p<q>"`` with 0 <= q <= 100."""

_PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Reducer:
    """A per-month reduction of a pixel's valid observations.

    ``name`` is one of :data:`REDUCERS` or ``"percentile"`` (then ``q`` is the percentile).
    """

    name: str
    q: float | None = None

    @property
    def label(self) -> str:
        """How the reducer is written: ``"median"``, ``"p90"``, ``"p2.5"``."""
        if self.q is None:
            return self.name
        return f"p{self.q:g}"

    @property
    def is_count(self) -> bool:
        """Whether the reducer counts observations (uint16) rather than reducing values."""
        return self.name == "count"

    @property
    def dtype(self) -> np.dtype:
        """The stored dtype: uint16 for ``count``, float32 otherwise."""
        return np.dtype(np.uint16 if self.is_count else np.float32)

    @property
    def fill(self) -> Any:
        """The value of pixels without any observation (and outside the AOI): 0 or NaN."""
        return self.dtype.type(0) if self.is_count else np.float32(np.nan)

    def describe(self, band: str) -> str:
        """A ``long_name`` for the variable of ``band``."""
        if self.is_count:
            return f"monthly count of valid observations of {band}"
        what = f"{self.q:g}th percentile" if self.q is not None else self.name
        return f"monthly {what} of {band}"

    def reduce(self, stack: np.ndarray) -> np.ndarray:
        """(observations, y, x) float32 with NaN where invalid -> (y, x) of :attr:`dtype`.

        Pixels without an observation get :attr:`fill` (no warning).
        """
        if self.is_count:
            return np.count_nonzero(~np.isnan(stack), axis=0).astype(np.uint16)
        out = np.full(stack.shape[1:], np.nan, np.float32)
        seen = (~np.isnan(stack)).any(axis=0)  # a NaN-only pixel stays NaN, without a warning
        if not seen.any():
            return out
        values = stack if seen.all() else stack[:, seen]
        if self.name == "median":
            reduced = _nanmedian(values)
        elif self.name == "mean":
            reduced = np.nanmean(values, axis=0)
        elif self.name == "min":
            reduced = np.nanmin(values, axis=0)
        elif self.name == "max":
            reduced = np.nanmax(values, axis=0)
        else:
            reduced = np.nanpercentile(values, self.q, axis=0)
        if seen.all():
            return reduced.astype(np.float32)
        out[seen] = reduced
        return out


def _nanmedian(values: np.ndarray) -> np.ndarray:
    """``np.nanmedian(values, axis=0)`` of float32 observations with at least one valid value
    per pixel, the same numbers (the mean of the two middle values in float32) from one sort
    along the observations (NaN sort last) instead of a masked array: several times faster."""
    ordered = np.sort(values, axis=0)
    valid = np.count_nonzero(~np.isnan(values), axis=0)
    low = np.take_along_axis(ordered, ((valid - 1) // 2)[np.newaxis], axis=0)[0]
    high = np.take_along_axis(ordered, (valid // 2)[np.newaxis], axis=0)[0]
    return (low + high) / values.dtype.type(2)


def parse_reducer(value: Any) -> Reducer:
    """``reducer=`` as a :class:`Reducer`.

    Parameters
    ----------
    value : str or Reducer
        ``"median"``, ``"mean"``, ``"min"``, ``"max"``, ``"count"`` or ``"p<q>"``
        (a percentile, 0 <= q <= 100, e.g. ``"p90"``); case-insensitive.

    Raises
    ------
    ValueError
        Naming the value, for anything else.
    """
    if isinstance(value, Reducer):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in REDUCERS:
        return Reducer(text)
    match = _PERCENTILE.fullmatch(text) if text is not None else None
    if match is not None and 0.0 <= float(match.group(1)) <= 100.0:
        return Reducer("percentile", float(match.group(1)))
    raise ValueError(f"reducer={value!r} is not a reducer; use one of "
                     f"{', '.join(map(repr, REDUCERS))} or a percentile 'p<q>' with "
                     "0 <= q <= 100 (e.g. 'p90')")


@dataclass(frozen=True)
class QualityMask:
    """Drop the pixels whose ``band`` value is one of ``drop`` before reducing."""

    band: str
    drop: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{"band": ..., "drop": [...]}`` (the form ``mask=`` also accepts)."""
        return {"band": self.band, "drop": list(self.drop)}

    def dropped(self, quality: np.ndarray) -> np.ndarray:
        """Boolean array: True where ``quality`` holds a value to drop."""
        return np.isin(quality, np.asarray(self.drop))


def parse_mask(value: Any) -> QualityMask | None:
    """``mask=`` as a :class:`QualityMask` (None: no mask).

    Parameters
    ----------
    value : None, QualityMask or mapping
        ``{"band": "SCL", "drop": [3, 8, 9, 10]}``: the quality band (as the index or the
        data source names it) and the integer values whose pixels are dropped.

    Raises
    ------
    ValueError
        Naming the value: not a mapping of exactly ``band`` and ``drop``, a band that is not a
        non-empty string, an empty ``drop``, or values that are not integers.
    """
    if value is None:
        return None
    if isinstance(value, QualityMask):
        band, drop = value.band, value.drop
    elif isinstance(value, Mapping):
        if set(value) != {"band", "drop"}:
            raise ValueError(f"mask={value!r} must have exactly the keys 'band' and 'drop', "
                             "e.g. {'band': 'SCL', 'drop': [3, 8, 9, 10]}")
        band, drop = value["band"], value["drop"]
    else:
        raise ValueError(f"mask={value!r} is not a quality mask; pass "
                         "{'band': 'SCL', 'drop': [3, 8, 9, 10]} or a QualityMask")
    if not isinstance(band, str) or not band:
        raise ValueError(f"mask={value!r}: 'band' must be a band name, got {band!r}")
    if isinstance(drop, str | bytes) or not isinstance(drop, Sequence | np.ndarray):
        raise ValueError(f"mask={value!r}: 'drop' must be a list of integer values")
    values = list(drop)
    if not values:
        raise ValueError(f"mask={value!r}: 'drop' is empty; name the {band} values to drop")
    bad = [v for v in values if isinstance(v, bool) or not _integral(v)]
    if bad:
        raise ValueError(f"mask={value!r}: 'drop' values must be integers, got {bad!r}")
    return QualityMask(band, tuple(sorted({int(v) for v in values})))


def _integral(value: Any) -> bool:
    if isinstance(value, Integral | np.integer):
        return True
    return isinstance(value, Real) and float(value).is_integer()


def observations(raw: np.ndarray, nodata: Any, dropped: np.ndarray | None = None) -> np.ndarray:
    """Raw pixels as float32 observations: NaN where ``nodata`` (or NaN already) and where
    ``dropped`` (the quality mask) is True."""
    values = raw.astype(np.float32)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        values[raw == np.asarray(nodata).astype(raw.dtype)] = np.nan
    if dropped is not None:
        values[dropped] = np.nan
    return values


def ndvi_block(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """(nir - red) / (nir + red) in float32 (NaN where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((nir - red) / (nir + red)).astype(np.float32)
