"""A GeoTIFF stack of an AOI time series, written window by window: every (time, band) is one
band of the file (time-major), each window one chunk of the dataset's grid.

The windows are the dataset's own chunks (so each chunk is read once), computed a batch at a
time (one chunk per thread and window) while the previous batch is written, in row-major
order so GDAL completes its blocks as it goes; GDAL's block cache is capped so finished blocks
leave memory. Memory: two batches of windows, each every (time, band) chunk of one window.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["Window", "check_rasterio", "windows", "write_geotiff", "GDAL_CACHE_MB"]

GDAL_CACHE_MB = 128
"""GDAL's block cache while writing (MB): dirty blocks beyond it are flushed to the file."""


@dataclass(frozen=True, slots=True)
class Window:
    """One window of the output: rows ``row:row + height``, columns ``col:col + width``."""

    row: int
    col: int
    height: int
    width: int


def check_rasterio() -> None:
    """ImportError naming the extra to install when rasterio is missing."""
    try:
        import rasterio  # noqa: F401
    except ImportError as exc:
        raise ImportError("GeoTIFF output needs rasterio: pip install 'rasteret-dask[rasterio]'"
                          ) from exc


def _edges(sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
    return list(zip(starts[:-1], sizes, strict=True))


def windows(ds: xr.Dataset, variables: list[str]) -> list[Window]:
    """The dataset's chunk grid over (y, x), row-major (one window for in-memory data): the
    first variable's, refined where another variable is chunked otherwise."""
    rows: set[int] = {0}
    cols: set[int] = {0}
    for name in variables:
        data = ds[name].variable
        if data.chunks is None:
            continue
        chunks = dict(zip(data.dims, data.chunks, strict=True))
        rows.update(start for start, _ in _edges(chunks["y"]))
        cols.update(start for start, _ in _edges(chunks["x"]))
    row_starts = sorted(rows) + [ds.sizes["y"]]
    col_starts = sorted(cols) + [ds.sizes["x"]]
    return [Window(r0, c0, r1 - r0, c1 - c0)
            for r0, r1 in zip(row_starts[:-1], row_starts[1:], strict=True)
            for c0, c1 in zip(col_starts[:-1], col_starts[1:], strict=True)]


def _batches(items: list[Window], size: int) -> Iterator[list[Window]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _threads(client: Any) -> int:
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    return max(1, os.cpu_count() or 1)


def write_geotiff(ds: xr.Dataset, path: Path, *, client: Any = None, progress: bool = False,
                  description: str = "read") -> None:
    """Write ``ds`` as one GeoTIFF band per (time, variable), time-major, window by window.

    Parameters
    ----------
    ds : xarray.Dataset
        (time, y, x) variables with a ``spatial_ref`` coordinate (``crs_wkt``,
        ``GeoTransform``); dask-backed or in memory.
    path : pathlib.Path
        The file to write (replaced).
    client : distributed.Client, optional
        Where to compute the windows; default the active client, else local threads.
    progress : bool, default False
        Show a bar of windows written.
    description : str, default "read"
        The bar's label.
    """
    check_rasterio()
    import rasterio
    from affine import Affine
    from rasterio.windows import Window as RioWindow

    from ..cluster import active_client
    from ..progress import unit_bar
    from ..runner import compute

    client = active_client(client)
    variables = list(ds.data_vars)
    first = ds[variables[0]]
    attrs = ds["spatial_ref"].attrs
    crs = attrs.get("crs_wkt")
    transform = Affine.from_gdal(*(float(v) for v in attrs["GeoTransform"].split()))
    dtype = np.result_type(*[ds[v].dtype for v in variables])
    nodata = first.attrs.get("_FillValue", first.encoding.get("_FillValue"))
    steps = ds.sizes["time"]
    count = len(variables) * steps
    stamps = [str(np.datetime_as_string(ds["time"].values[t], unit="s")) for t in range(steps)]
    records = ([str(v) for v in ds["id"].values] if "id" in ds.coords else [""] * steps)
    grid = windows(ds, variables)
    size = _threads(client)
    stack = ds[variables].drop_vars([c for c in ds.coords if c not in ds.dims])

    def compute_batch(batch: list[Window]) -> list[xr.Dataset]:
        parts = [stack.isel(y=slice(w.row, w.row + w.height), x=slice(w.col, w.col + w.width))
                 for w in batch]
        return compute(parts, client)

    bar = unit_bar(len(grid), description) if progress else contextlib.nullcontext()
    batches = list(_batches(grid, size))
    with bar, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), \
            rasterio.open(path, "w", driver="GTiff", width=ds.sizes["x"],
                          height=ds.sizes["y"], count=count, dtype=dtype, crs=crs,
                          transform=transform, nodata=nodata, tiled=True, blockxsize=256,
                          blockysize=256, compress="deflate") as dst, \
            ThreadPoolExecutor(1) as ahead:
        band = 1
        for t in range(steps):
            for name in variables:
                dst.set_band_description(band, f"{name} {stamps[t]} {records[t]}".strip())
                band += 1
        pending = ahead.submit(compute_batch, batches[0]) if batches else None
        for k, batch in enumerate(batches):
            assert pending is not None
            parts = pending.result()
            pending = ahead.submit(compute_batch, batches[k + 1]) \
                if k + 1 < len(batches) else None
            for window, part in zip(batch, parts, strict=True):
                where = RioWindow(window.col, window.row, window.width, window.height)
                band = 1
                for t in range(steps):
                    for name in variables:
                        dst.write(part[name].values[t].astype(dtype, copy=False), band,
                                  window=where)
                        band += 1
                if progress:
                    bar.update(1)
