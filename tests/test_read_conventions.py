"""Output conventions of get_xarray: CF attributes of the axes, provenance attributes, the fill
value as an encoding (so derived float results do not claim it), and NetCDF/Zarr round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from rasteret_dask.testing.cogs import write_cog

from .test_read_helpers import build, file_info, pixel_box, single


@pytest.fixture(scope="module")
def read(tmp_path_factory):
    root = tmp_path_factory.mktemp("conventions")
    path = write_cog(root / "u16.tif", width=300, height=260, blocksize=128, dtype="uint16",
                     predictor=2, nodata=0, seed=7)
    collection = build([single(path)])
    epsg, t, _ = file_info(path)
    return collection, pixel_box(t, 10, 12, 200, 150), epsg


def test_axes_carry_cf_attributes_and_the_dataset_says_what_made_it(read):
    collection, box, epsg = read
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg)
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
    assert ds["y"].attrs["standard_name"] == "projection_y_coordinate"
    assert ds["x"].attrs["units"] == ds["y"].attrs["units"] == "metre"
    assert ds["time"].attrs["standard_name"] == "time"
    assert ds.attrs["source"].startswith("rasteret_dask ")
    assert ds.attrs["collection"] == "read-tests" and ds.attrs["bands"] == "B1"
    assert json.loads(ds.attrs["query"])["geometry_crs"] == str(epsg)


def test_fill_value_is_an_encoding_and_derived_floats_do_not_claim_it(read, tmp_path):
    collection, box, epsg = read
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg)
    band = ds["B1"]
    assert band.attrs["nodata"] == 0 and "_FillValue" not in band.attrs
    assert band.encoding["_FillValue"] == 0
    derived = band.where(band > 100) / 2.0
    assert "_FillValue" not in derived.attrs and "_FillValue" not in derived.encoding
    out = tmp_path / "derived.nc"
    derived.to_dataset(name="half").to_netcdf(out, engine="h5netcdf")
    back = xr.open_dataset(out, engine="h5netcdf")
    # NaN stays NaN; no valid value became missing because of a stale fill value of 0
    np.testing.assert_array_equal(np.isnan(back["half"].values), np.isnan(derived.values))
    raw = tmp_path / "raw.nc"
    ds.to_netcdf(raw, engine="h5netcdf")
    again = xr.open_dataset(raw, engine="h5netcdf", mask_and_scale=False)
    assert again["B1"].attrs["_FillValue"] == 0
    np.testing.assert_array_equal(again["B1"].values, ds["B1"].values)
    assert again.attrs["collection"] == "read-tests" and again.attrs["bands"] == "B1"
    zarr = tmp_path / "raw.zarr"
    ds.to_zarr(zarr, mode="w", consolidated=False)
    stored = xr.open_zarr(zarr, consolidated=False, mask_and_scale=False)
    np.testing.assert_array_equal(stored["B1"].values, ds["B1"].values)
