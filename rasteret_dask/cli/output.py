"""Writers for ``rasteret-dask read``: an AOI time series to NetCDF, Zarr or a GeoTIFF stack."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["FORMATS", "output_format", "write_dataset"]

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


def _write_geotiff(ds: xr.Dataset, path: Path) -> None:
    try:
        import rasterio
    except ImportError as exc:
        raise ImportError("GeoTIFF output needs rasterio: pip install 'rasteret-dask[rasterio]'"
                          ) from exc
    from affine import Affine

    variables = list(ds.data_vars)
    first = ds[variables[0]]
    attrs = ds["spatial_ref"].attrs
    crs = attrs.get("crs_wkt")
    transform = Affine.from_gdal(*(float(v) for v in attrs["GeoTransform"].split()))
    dtype = np.result_type(*[ds[v].dtype for v in variables])
    nodata = first.attrs.get("_FillValue", first.encoding.get("_FillValue"))
    count = len(variables) * ds.sizes["time"]
    with rasterio.open(path, "w", driver="GTiff", width=ds.sizes["x"], height=ds.sizes["y"],
                       count=count, dtype=dtype, crs=crs, transform=transform, nodata=nodata,
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
        band = 1
        for t in range(ds.sizes["time"]):
            stamp = str(np.datetime_as_string(ds["time"].values[t], unit="s"))
            for name in variables:
                dst.write(ds[name].isel(time=t).values.astype(dtype), band)
                record = str(ds["id"].values[t]) if "id" in ds.coords else ""
                dst.set_band_description(band, f"{name} {stamp} {record}".strip())
                band += 1


def write_dataset(ds: xr.Dataset, path: str | os.PathLike, fmt: str) -> Path:
    """Compute and write ``ds``; GeoTIFF stacks every (time, band) as one band, time-major."""
    target = Path(path)
    if fmt == "zarr":
        with warnings.catch_warnings():  # Zarr 3 calls consolidated metadata an extension
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            ds.to_zarr(target, mode="w")
    elif fmt == "netcdf":
        try:
            import h5netcdf  # noqa: F401
            import h5py  # noqa: F401
        except ImportError as exc:
            raise ImportError("NetCDF output needs h5netcdf: pip install 'rasteret-dask[netcdf]'"
                              ) from exc
        _for_netcdf(ds).to_netcdf(target, engine="h5netcdf")
    elif fmt == "geotiff":
        _write_geotiff(ds.compute(), target)
    else:
        raise ValueError(f"unknown output format {fmt!r}: netcdf, zarr or geotiff")
    return target


def describe_output(ds: Any) -> str:
    """One line: variables, dims and size."""
    dims = " x ".join(f"{k}={v}" for k, v in ds.sizes.items())
    return f"{', '.join(ds.data_vars)} ({dims}, {ds.nbytes / 1e6:.1f} MB)"
