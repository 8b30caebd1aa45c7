"""Two monthly composite stores compared band by band where both are defined (``scale_bench``
parts b and d): ours (dims month, y, x) against ours or against odc-stac's
``groupby("time.month").median()`` (dims month, y, x; months as numbers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr


def _band(store: xr.Dataset, band: str) -> xr.DataArray:
    array = store[band]
    other = [d for d in array.dims if d not in ("y", "x")]
    array = array.transpose(*other, "y", "x").drop_vars([d for d in other if d in array.coords])
    return array.assign_coords(y=np.round(array["y"].values, 6), x=np.round(array["x"].values, 6))


def compare_stores(ours: Path, theirs: Path, bands: tuple[str, ...], *, odc: bool) -> str:
    """One line: per band, the pixels both define and how many of them are equal (and the
    largest difference); identical stores say so."""
    a, b = xr.open_zarr(ours), xr.open_zarr(theirs)
    parts = []
    for band in bands:
        if band not in a or band not in b:
            parts.append(f"{band}: missing in {'ours' if band not in a else 'the other'}")
            continue
        mine, other = _band(a, band), _band(b, band)
        if mine.shape[:-2] != other.shape[:-2]:
            parts.append(f"{band}: {mine.shape[:-2]} vs {other.shape[:-2]} time steps")
            continue
        mine, other = xr.align(mine, other, join="inner")
        x, y = mine.values.astype(np.float64), other.values.astype(np.float64)
        if x.shape != y.shape:
            parts.append(f"{band}: shapes {x.shape} vs {y.shape}")
            continue
        if not odc and np.array_equal(x, y, equal_nan=True) and mine.shape == a[band].shape:
            parts.append(f"{band}: identical {' x '.join(map(str, x.shape))}")
            continue
        both = np.isfinite(x) & np.isfinite(y)
        only = (np.isfinite(x) ^ np.isfinite(y)).mean()
        equal = (x[both] == y[both]).mean() if both.any() else float("nan")
        worst = np.abs(x[both] - y[both]).max() if both.any() else float("nan")
        parts.append(f"{band}: {100 * both.mean():.1f}% of {x.size:,} pixels defined in both, "
                     f"{100 * equal:.2f}% of them equal (max |diff| {worst:g}); "
                     f"{100 * only:.2f}% defined in one only")
    return "; ".join(parts)
