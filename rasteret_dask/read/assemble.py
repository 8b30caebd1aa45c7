"""Assembly: a read plan's dask arrays wrapped into an xarray Dataset with CRS and nodata."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pyproj
import xarray as xr

from ..io import RangeReader
from .failures import check_errors, new_read_errors
from .graph import band_array
from .plan import ReadPlan

__all__ = ["to_dataset", "spatial_ref"]


def _crs(crs: int | pyproj.CRS) -> pyproj.CRS:
    return crs if isinstance(crs, pyproj.CRS) else pyproj.CRS.from_epsg(int(crs))


def spatial_ref(crs: int | pyproj.CRS, transform) -> xr.DataArray:
    """A CF ``spatial_ref`` coordinate (grid mapping + crs_wkt + GeoTransform) for rioxarray
    and odc-geo, of an EPSG code or a pyproj CRS."""
    crs = _crs(crs)
    attrs = crs.to_cf()
    attrs["crs_wkt"] = crs.to_wkt()
    attrs["spatial_ref"] = attrs["crs_wkt"]
    attrs["GeoTransform"] = " ".join(
        str(v) for v in (transform.c, transform.a, transform.b, transform.f, transform.d, transform.e)
    )
    return xr.DataArray(np.int32(0), attrs=attrs)


def axis_attrs(crs: int | pyproj.CRS) -> dict[str, dict[str, str]]:
    """CF attributes of the ``x`` and ``y`` coordinates in a CRS (standard_name, long_name,
    units, axis), as pyproj states them."""
    out = {}
    for axis in _crs(crs).cs_to_cf():
        name = {"X": "x", "Y": "y"}.get(axis.get("axis", ""))
        if name is not None:
            out[name] = {k: str(v) for k, v in axis.items()}
    return out


def to_dataset(plan: ReadPlan, reader: RangeReader, *, errors: str = "raise") -> xr.Dataset:
    """One (time, y, x) variable per band, masked outside the geometry, lazily.

    ``attrs["skipped_records"]`` lists the plan's skipped records and ``attrs["read_errors"]``
    the tiles read as nodata (``errors="nodata"``; filled as chunks compute, see
    ``read.failures``; always empty with ``errors="raise"``, where a failed tile raises).
    """
    check_errors(errors)
    read_errors, failures = new_read_errors() if errors == "nodata" else ([], None)
    x, y = plan.grid.coords(plan.window)
    cf = axis_attrs(plan.grid.crs)
    coords = {
        "time": ("time", np.array(plan.times, dtype="datetime64[ns]"),
                 {"standard_name": "time", "long_name": "acquisition time"}),
        "y": ("y", y, cf.get("y", {})),
        "x": ("x", x, cf.get("x", {})),
        "id": ("time", np.array(plan.ids, dtype=object)),
        "spatial_ref": spatial_ref(plan.grid.crs, plan.transform),
    }
    if plan.cloud_cover is not None:
        coords["cloud_cover"] = ("time", np.array(
            [np.nan if c is None else c for c in plan.cloud_cover], dtype="float64"))
    variables = {}
    for band in plan.bands:
        data = band_array(plan, band, reader, failures)
        if plan.mask is not None:
            outside = da.from_array(plan.mask, chunks=(band.row_chunks, band.col_chunks))
            fill = np.array(band.chunks[next(iter(band.chunks))][1].fill, dtype=band.dtype)
            data = da.where(outside[np.newaxis], fill, data)
        attrs = {"grid_mapping": "spatial_ref"}
        encoding = {}
        if band.nodata is not None:
            attrs["nodata"] = np.array(band.nodata).astype(band.dtype).item()
            # the fill value is an encoding (what a writer marks missing), so a float result
            # of .where() or arithmetic does not carry a fill value its data no longer has
            encoding["_FillValue"] = attrs["nodata"]
        variables[band.band] = xr.DataArray(data, dims=("time", "y", "x"), attrs=attrs)
        variables[band.band].encoding.update(encoding)
    attrs = {"skipped_records": [str(r) for r in plan.skipped], "read_errors": read_errors}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
