"""Warped reads against GDAL on the same files: pastes bit-exact, resampling equal to
``rasterio.warp.reproject`` of the file, polygon masks, failures as nodata, explain(), Zarr."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from rasterio.warp import reproject

import rasteret_dask as rd
from rasteret_dask.testing.cogs import write_cog

from .test_read_helpers import build, file_info, pixel_box, single


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("read-warped")
    return {
        "a": write_cog(root / "a.tif", width=900, height=700, blocksize=256, dtype="uint16",
                       predictor=2, nodata=0, seed=7, overviews=False),
        "b": write_cog(root / "b.tif", width=900, height=700, blocksize=256, dtype="uint16",
                       predictor=2, nodata=0, seed=8, overviews=False),
    }


def gdal(path, geobox: GeoBox, resampling: str) -> np.ndarray:
    """GDAL's warp of the whole file onto ``geobox`` (the oracle)."""
    out = np.zeros(geobox.shape, "uint16")
    with rasterio.open(path) as src:
        reproject(rasterio.band(src, 1), out, src_nodata=0, dst_crs=str(geobox.crs),
                  dst_transform=geobox.transform, dst_nodata=0,
                  resampling=Resampling[resampling])
    return out


def test_a_geobox_on_the_records_grid_is_pasted_bit_exact(files):
    epsg, t, (h, w) = file_info(files["a"])
    collection = build([single(files["a"])])
    # starts mid-tile: 300 x 500 pixels from (row 101, col 203) of the file's grid
    box = GeoBox((300, 500), t @ Affine.translation(203, 101), f"EPSG:{epsg}")
    ds = collection.get_xarray(None, ["B1"], geobox=box, groupby="time",
                               chunks={"x": 128, "y": 128})
    assert ds["B1"].chunks[1:] == ((128, 128, 44), (128, 128, 128, 116))
    with rasterio.open(files["a"]) as src:
        want = src.read(1, window=((101, 401), (203, 703)))
    assert np.array_equal(ds["B1"].values[0], want)
    assert ds.odc.geobox == box


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "average", "mode",
                                        "max"])
def test_resampled_reads_equal_gdal(files, resampling):
    epsg, t, (h, w) = file_info(files["a"])
    collection = build([single(files["a"])])
    # 2.5x coarser, shifted by a third of a pixel, in the same CRS; and into EPSG:4326
    same = GeoBox((200, 300), Affine(t.a * 2.5, 0, t.c + 40 * t.a + t.a / 3, 0, t.e * 2.5,
                                     t.f + 30 * t.e), f"EPSG:{epsg}")
    lonlat = same.to_crs(4326)
    for box in (same, lonlat):
        # one chunk: GDAL approximates the transform between the ends of each warped
        # scanline (0.125 pixel), so only a warp of the same region is comparable pixel for
        # pixel (odc-stac's chunked reads are matched in test_read_grid_oracle.py)
        ds = collection.get_xarray(None, ["B1"], geobox=box, resampling=resampling,
                                   chunks={"x": 512, "y": 512})
        assert ds.attrs["read_errors"] == []
        got, want = ds["B1"].values[0], gdal(files["a"], box, resampling)
        assert got.shape == want.shape
        assert np.array_equal(got, want), f"{(got != want).sum()} pixels differ"


def test_polygon_mask_on_an_output_grid(files):
    epsg, t, (h, w) = file_info(files["a"])
    collection = build([single(files["a"])])
    aoi = shapely.Point(t @ (450, 350)).buffer(200 * abs(t.a))
    ds = collection.get_xarray(aoi, ["B1"], geometry_crs=epsg, resolution=abs(t.a) * 2)
    values = ds["B1"].values[0]
    x, y = np.meshgrid(ds.x.values, ds.y.values)
    inside = shapely.contains_xy(aoi, x, y)
    assert (values[~inside] == 0).all() and (values[inside] > 0).mean() > 0.99
    # pixel edges on multiples of the resolution
    step = abs(t.a) * 2
    assert np.allclose(((ds.x.values - step / 2) / step) % 1, 0, atol=1e-6)


def test_fusion_first_valid_and_errors_as_nodata(files, tmp_path):
    epsg, t, (h, w) = file_info(files["a"])
    gone = write_cog(tmp_path / "gone.tif", width=900, height=700, blocksize=256,
                     dtype="uint16", nodata=0, seed=9, overviews=False)
    collection = build([single(files["a"], rid="a", when="2024-05-01T10:00:00"),
                        single(files["b"], rid="b", when="2024-05-01T10:00:05"),
                        single(gone, rid="c", when="2024-05-02T10:00:00")])
    box = GeoBox((100, 120), t @ Affine.translation(5, 3), f"EPSG:{epsg}")
    ds = collection.get_xarray(None, ["B1"], geobox=box, groupby="solar_day")
    assert list(ds["id"].values) == ["a,b", "c"]
    first = ds["B1"].values[0]
    with rasterio.open(files["a"]) as a, rasterio.open(files["b"]) as b:
        wa = a.read(1, window=((3, 103), (5, 125)))
        wb = b.read(1, window=((3, 103), (5, 125)))
    # a's 16 x 16 nodata corner is filled from b: the first valid value wins
    assert np.array_equal(first, np.where(wa == 0, wb, wa))
    gone.unlink()
    with pytest.raises(OSError, match=r"record 'c', band 'B1', href .*gone.tif"):
        collection.get_xarray(None, ["B1"], geobox=box, groupby="solar_day").compute()
    ds = collection.get_xarray(None, ["B1"], geobox=box, groupby="solar_day", errors="nodata")
    assert (ds["B1"].values[1] == 0).all()
    assert any("gone.tif" in e for e in ds.attrs["read_errors"])


def test_explain_and_errors(files):
    epsg, t, (h, w) = file_info(files["a"])
    collection = build([single(files["a"])])
    aoi = pixel_box(t, 100, 100, 600, 500)
    (info,) = collection.explain(aoi, ["B1"], geometry_crs=epsg, crs=3857, resolution=30,
                                 resampling="bilinear", chunks={"x": 256, "y": 256})
    assert info["grid"]["crs"] == "EPSG:3857" and info["grid"]["resolution"] == (30.0, 30.0)
    assert info["grid"]["resampling"] == "bilinear"
    assert info["overview_levels"] == {"B1": {0: 1}}
    assert info["records_per_chunk"]["max"] == 1 and info["tiles"] > 0
    far = GeoBox((10, 10), Affine(10, 0, 0, 0, -10, 100), "EPSG:3857")
    with pytest.raises(ValueError, match=r"geobox=.* misses every record"):
        collection.get_xarray(None, ["B1"], geobox=far)
    with pytest.raises(ValueError, match="resampling='nope'"):
        collection.get_xarray(aoi, ["B1"], geometry_crs=epsg, resampling="nope")
    with pytest.raises(ValueError, match="resolution=-1"):
        collection.explain(aoi, ["B1"], geometry_crs=epsg, resolution=-1)
    with pytest.raises(ValueError, match="geometries=None"):
        collection.get_xarray(None, ["B1"])


def test_zarr_takes_warped_chunks_as_they_are(files, tmp_path):
    epsg, t, (h, w) = file_info(files["a"])
    collection = build([single(files["a"])])
    aoi = pixel_box(t, 103.4, 77.2, 611.9, 533.3)  # mid-tile on every side
    ds = collection.get_xarray(aoi, ["B1"], geometry_crs=epsg, resolution=abs(t.a),
                               groupby="time", chunks={"x": 200, "y": 200})
    ds.to_zarr(tmp_path / "out.zarr")
    back = xr.open_zarr(tmp_path / "out.zarr", mask_and_scale=False)
    assert np.array_equal(back["B1"].values, ds["B1"].values)


def test_a_custom_crs_onto_an_epsg_grid(tmp_path):
    """A record whose CRS has no EPSG code (rebuilt from its GeoKeys) is warped like any."""
    albers = ("+proj=aea +lat_0=40 +lon_0=10 +lat_1=30 +lat_2=50 +x_0=0 +y_0=0 +ellps=GRS80 "
              "+units=m +no_defs")
    path = write_cog(tmp_path / "albers.tif", width=600, height=500, blocksize=256,
                     dtype="uint16", nodata=0, seed=12, crs=albers, overviews=False,
                     transform=(30.0, 0.0, 100000.0, 0.0, -30.0, 600000.0))
    collection = build([single(path)])
    assert collection.to_table()["B1_metadata"][0]["crs_epsg"].as_py() is None
    with rasterio.open(path) as src:
        box = GeoBox.from_bbox(src.bounds, src.crs.to_wkt(), resolution=30).to_crs(
            3035, resolution=60)
    ds = collection.get_xarray(None, ["B1"], geobox=box, resampling="bilinear",
                               chunks={"x": 1024, "y": 1024})
    got, want = ds["B1"].values[0], gdal(path, box, "bilinear")
    # warped onto the part of the grid the image reaches (odc-stac's region), GDAL's
    # approximated transform ends its scanlines elsewhere than a warp of the whole grid
    assert (got == want).mean() > 0.99 and np.abs(got.astype(int) - want).max() <= 1
    assert (want > 0).mean() > 0.5


def test_properties_on_the_time_axis(files):
    import pyarrow as pa

    from .test_read_helpers import record_table

    records = [single(files["a"], rid="a", when="2024-05-01T10:00:00"),
               single(files["b"], rid="b", when="2024-05-02T10:00:00")]
    table = record_table(records)
    table = table.append_column("platform", pa.array(["sentinel-2a", "sentinel-2b"]))
    table = table.append_column("eo:cloud_cover", pa.array([12.5, 40.0]))
    collection = rd.build_collection_from_table(table, name="props").enrich(
        progress=False).collection
    epsg, t, _ = file_info(files["a"])
    aoi = pixel_box(t, 100, 100, 300, 300)
    native = collection.get_xarray(aoi, ["B1"], geometry_crs=epsg, properties=True)
    assert list(native["platform"].values) == ["sentinel-2a", "sentinel-2b"]
    assert native["platform"].dims == ("time",)
    grouped = collection.get_xarray(aoi, ["B1"], geometry_crs=epsg, groupby=lambda r: 0,
                                    properties=["platform"])
    assert list(grouped["platform"].values) == ["sentinel-2a"]  # the group's first record
    with pytest.raises(ValueError, match="no column 'nope'"):
        collection.get_xarray(aoi, ["B1"], geometry_crs=epsg, properties=["nope"])
