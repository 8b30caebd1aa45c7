"""Writers for ``rasteret-dask read``: an AOI time series to NetCDF, Zarr or a GeoTIFF stack,
streamed chunk by chunk.

Nothing is loaded whole: Zarr and NetCDF are written by computing xarray's delayed write
(``to_zarr``/``to_netcdf(compute=False)``, rewritten by ``store_graph.py``: each store task
fused with the chunk it stores, a bounded number of fetch groups in flight) through
:func:`rasteret_dask.runner.compute`, so each chunk is read, written and released (memory: a
few chunks per thread and a fetch group per thread, whatever the area); a
GeoTIFF is written chunk by chunk into its windows (``geotiff.py``). Shared band buffers
(``read/buffers.py``) are off while writing. A write that fails after it started names the incomplete output it left.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import xarray as xr

from ..read import SHARED_BUFFERS_KEY
from .store_graph import bounded_write, in_flight_for, older_objects_frozen

__all__ = ["FORMATS", "output_format", "write_dataset", "describe_output", "zarr_ready"]

FORMATS = {".nc": "netcdf", ".nc4": "netcdf", ".zarr": "zarr", ".tif": "geotiff",
           ".tiff": "geotiff"}


def output_format(path: str | os.PathLike, explicit: str | None = None) -> str:
    """The format named explicitly, else by the file extension (ValueError when unknown)."""
    if explicit:
        return explicit
    suffix = Path(str(path).rstrip("/")).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the output format of {path!s}: use .nc, .zarr or .tif "
                         "(or --format)")
    return FORMATS[suffix]


def _for_netcdf(ds: xr.Dataset) -> xr.Dataset:
    """NetCDF has no object dtypes: per-time string coordinates become fixed-width strings."""
    out = ds.copy()
    for name, coord in ds.coords.items():
        if coord.dtype == object:
            out[name] = coord.astype(str)
    return out


def _regular_sizes(sizes: tuple[int, ...]) -> bool:
    """Zarr's rule for dask chunks along one axis: all equal but the last, which is no larger."""
    return len(sizes) < 2 or (len(set(sizes[:-1])) == 1 and sizes[-1] <= sizes[0])


def zarr_ready(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with every variable whose dask chunks Zarr refuses along a dimension (irregular)
    rechunked there to its largest chunk size; unchanged when they are regular, as every
    ``get_xarray`` result's are (native chunks run regularly from the window's origin, warped
    ones from the grid's): a guard for datasets whose chunks came from elsewhere. Each new
    chunk is built from the (at most two per axis) old chunks it overlaps, so memory stays
    bounded by a few chunks."""
    out = ds
    for name, variable in ds.variables.items():
        if variable.chunks is None:
            continue
        changes = {dim: max(sizes) for dim, sizes in zip(variable.dims, variable.chunks)
                   if not _regular_sizes(tuple(sizes))}
        if changes:
            if out is ds:
                out = ds.copy()
            out[name] = variable.chunk(changes)
    return out


@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    with warnings.catch_warnings():  # Zarr 3 calls consolidated metadata an extension
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        yield


def _need_h5netcdf() -> None:
    try:
        import h5netcdf  # noqa: F401
        import h5py  # noqa: F401
    except ImportError as exc:
        raise ImportError("NetCDF output needs h5netcdf: pip install 'rasteret-dask[netcdf]'"
                          ) from exc


def _left_behind(exc: Exception, target: Path) -> Exception:
    """``exc`` (same type) whose message says where the incomplete output is, or ``exc``."""
    note = (f"{str(exc).strip() or type(exc).__name__} (the output at {target} is incomplete: "
            "delete it, or write it again once the cause is fixed)")
    try:
        return type(exc)(note)
    except Exception:  # an exception type whose constructor takes other arguments
        return exc


def write_dataset(ds: xr.Dataset, path: str | os.PathLike, fmt: str, *, client: Any = None,
                  progress: bool = False, description: str = "read") -> Path:
    """Write ``ds`` chunk by chunk; GeoTIFF stacks every (time, band) as one band, time-major.

    Parameters
    ----------
    ds : xarray.Dataset
        What to write: dask-backed (``get_xarray``; computed as it is written, never whole)
        or in memory.
    path : str or os.PathLike
        The output file or store; replaced when it exists.
    fmt : {"zarr", "netcdf", "geotiff"}
        The output format (:func:`output_format`).
    client : distributed.Client, optional
        Where to compute; default the active ``distributed`` client, else local threads.
    progress : bool, default False
        Show progress (``rasteret_dask.runner.compute``; a bar of windows for GeoTIFF).
    description : str, default "read"
        The progress bar's label.

    Returns
    -------
    pathlib.Path
        The output written.

    Raises
    ------
    ValueError
        An unknown format.
    ImportError
        The format's writer is not installed (h5netcdf, rasterio).
    Exception
        The computation's or writer's error, of its own type; when part of the output was
        written, its message says where that incomplete output is.
    """
    from ..cluster import active_client
    from ..runner import compute

    target = Path(path)
    if fmt not in ("zarr", "netcdf", "geotiff"):
        raise ValueError(f"unknown output format {fmt!r}: netcdf, zarr or geotiff")
    if fmt == "netcdf":
        _need_h5netcdf()
    if fmt == "geotiff":
        from .geotiff import check_rasterio

        check_rasterio()
    try:
        with dask.config.set({SHARED_BUFFERS_KEY: False}), _quiet_zarr(), older_objects_frozen():
            if fmt in ("zarr", "netcdf"):
                if fmt == "zarr":
                    ds = zarr_ready(ds)
                    write = ds.to_zarr(target, mode="w", compute=False)
                else:
                    ds = _for_netcdf(ds)
                    write = ds.to_netcdf(target, engine="h5netcdf", compute=False)
                sources = [v.data for v in ds.variables.values() if v.chunks is not None]
                client = active_client(client)
                write = bounded_write(write, sources, in_flight_for(client))
                compute([write], client, progress=progress, description=description)
            else:
                from .geotiff import write_geotiff

                write_geotiff(ds, target, client=client, progress=progress,
                              description=description)
    except Exception as exc:
        if os.path.lexists(target):
            raise _left_behind(exc, target) from exc
        raise
    return target


def describe_output(ds: Any) -> str:
    """One line: variables, dims and size."""
    dims = " x ".join(f"{k}={v}" for k, v in ds.sizes.items())
    return f"{', '.join(ds.data_vars)} ({dims}, {ds.nbytes / 1e6:.1f} MB)"
