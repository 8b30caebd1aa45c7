"""A GeoTIFF stack of an AOI time series, written chunk by chunk: every (time, band) is one
band of the file (time-major).

On local threads each chunk's task reads the chunk and writes it into its window of the file
(``dask.array.store`` into :class:`BandTarget`, one writer at a time, the graph bounded by
``store_graph.py``), so memory is a few chunks per thread. On a cluster the chunks are computed
on the workers and written by this process as they arrive. GDAL's block cache is capped so
finished blocks leave memory.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

__all__ = ["BandTarget", "check_rasterio", "write_geotiff", "GDAL_CACHE_MB"]

GDAL_CACHE_MB = 128
"""GDAL's block cache while writing (MB): dirty blocks beyond it are flushed to the file."""


def check_rasterio() -> None:
    """ImportError naming the extra to install when rasterio is missing."""
    try:
        import rasterio  # noqa: F401
    except ImportError as exc:
        raise ImportError("GeoTIFF output needs rasterio: pip install 'rasteret-dask[rasterio]'"
                          ) from exc


class BandTarget:
    """One (time, y, x) variable's ``dask.array.store`` target in an open GeoTIFF: time step
    ``t`` is band ``first + t * stride``; writes are serialised by ``lock``."""

    def __init__(self, dst: Any, first: int, stride: int, dtype: np.dtype,
                 lock: threading.Lock) -> None:
        self.dst = dst
        self.first = first
        self.stride = stride
        self.dtype = dtype
        self.lock = lock

    def __setitem__(self, region: tuple[slice, slice, slice], value: np.ndarray) -> None:
        from rasterio.windows import Window

        times, rows, cols = region
        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        with self.lock:
            for i, t in enumerate(range(times.start, times.stop)):
                self.dst.write(value[i].astype(self.dtype, copy=False),
                               self.first + t * self.stride, window=window)


def _written(stores: Any) -> None:
    """The end of a delayed write: every store task has run."""


def _lazy(data: Any) -> da.Array:
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data))


def write_geotiff(ds: xr.Dataset, path: Path, *, client: Any = None, progress: bool = False,
                  description: str = "read") -> None:
    """Write ``ds`` as one GeoTIFF band per (time, variable), time-major, chunk by chunk.

    Parameters
    ----------
    ds : xarray.Dataset
        (time, y, x) variables with a ``spatial_ref`` coordinate (``crs_wkt``,
        ``GeoTransform``); dask-backed or in memory.
    path : pathlib.Path
        The file to write (replaced).
    client : distributed.Client, optional
        Where to compute the chunks; default the active client, else local threads.
    progress : bool, default False
        Show progress: the tasks on local threads, the chunks written on a cluster.
    description : str, default "read"
        The bar's label.
    """
    check_rasterio()
    import rasterio
    from affine import Affine

    from ..cluster import active_client
    from ..runner import compute
    from .store_graph import bounded_write, in_flight_for

    client = active_client(client)
    variables = list(ds.data_vars)
    first = ds[variables[0]]
    attrs = ds["spatial_ref"].attrs
    transform = Affine.from_gdal(*(float(v) for v in attrs["GeoTransform"].split()))
    dtype = np.result_type(*[ds[v].dtype for v in variables])
    nodata = first.attrs.get("_FillValue", first.encoding.get("_FillValue"))
    steps = ds.sizes["time"]
    arrays = [_lazy(ds[v].transpose("time", "y", "x").data) for v in variables]
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), \
            rasterio.open(path, "w", driver="GTiff", width=ds.sizes["x"],
                          height=ds.sizes["y"], count=len(variables) * steps, dtype=dtype,
                          crs=attrs.get("crs_wkt"), transform=transform, nodata=nodata,
                          tiled=True, blockxsize=256, blockysize=256,
                          compress="deflate") as dst:
        band = 1
        for t in range(steps):
            stamp = str(np.datetime_as_string(ds["time"].values[t], unit="s"))
            record = str(ds["id"].values[t]) if "id" in ds.coords else ""
            for name in variables:
                dst.set_band_description(band, f"{name} {stamp} {record}".strip())
                band += 1
        lock = threading.Lock()
        targets = [BandTarget(dst, v + 1, len(variables), dtype, lock)
                   for v in range(len(variables))]
        if client is None:
            stored = da.store(arrays, targets, lock=False, compute=False)
            write = dask.delayed(_written)(stored)  # as xarray's delayed writes
            compute([bounded_write(write, arrays, in_flight_for(None))], None,
                    progress=progress, description=description)
        else:
            _write_from_cluster(client, arrays, targets, progress, description)


def _write_from_cluster(client: Any, arrays: list[da.Array], targets: list[BandTarget],
                        progress: bool, description: str) -> None:
    """Compute every chunk on the cluster (one graph: each fetch once) and write each here as
    it arrives, releasing it."""
    from distributed import as_completed

    from ..progress import unit_bar

    regions: list[tuple[BandTarget, tuple[slice, ...]]] = []
    blocks = []
    for array, target in zip(arrays, targets, strict=True):
        starts = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in array.chunks]
        for index, block in np.ndenumerate(array.to_delayed()):
            blocks.append(block)
            regions.append((target, tuple(slice(int(s[i]), int(s[i + 1]))
                                          for s, i in zip(starts, index, strict=True))))
    futures = client.compute(blocks)
    where = {future.key: region for future, region in zip(futures, regions, strict=True)}
    bar = unit_bar(len(blocks), description) if progress else contextlib.nullcontext()
    with bar:
        try:
            for future, value in as_completed(futures, with_results=True):
                target, region = where[future.key]
                target[region] = value
                future.release()
                if progress:
                    bar.update(1)
        except BaseException:
            client.cancel(futures)
            raise
