"""GDAL internal masks (issue 15 item 1), read over local, HTTP and S3 as rasterio's masked reads
and GDAL's warper give them: a JPEG COG (YCbCr RGB and greyscale) whose masked area holds JPEG
noise, a deflate COG with a mask on every overview, a band with nodata and a mask, a striped
file with a striped mask, and an 8-bit mask. Masked pixels read as the band's nodata (0
without one); warped reads leave them out as ``rasterio.warp.reproject`` from the dataset's
band does."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import rasterio
import shapely
import tifffile
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.warp import reproject

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.testing.cogs import (
    ellipse_mask,
    natural_rgb,
    synthetic_pixels,
    write_masked_tiff,
)
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.tiff import SparseBuffer, TiffError, parse_tiff_header

from .test_read_helpers import build, output_window, pixel_box, pixel_circle, record_table, single

BUCKET = "masked"
RGB = {"R": 0, "G": 1, "B": 2}
GEO_TAGS = [(33550, 12, 3, (10.0, 10.0, 0.0)), (33922, 12, 6, (0, 0, 0, 500000.0, 5000000.0, 0)),
            (34735, 3, 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633))]


def _mask8(path, bits: int = 8):
    """A tiled GeoTIFF whose mask IFD GDAL reads but does not write itself: 8 bits (or other
    ``bits``), written with tifffile."""
    data = synthetic_pixels(300, 200, "uint16")[0]
    mask = ellipse_mask(300, 200)
    if bits != 8:
        mask = mask.astype(f"uint{bits}")
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, tile=(128, 128), compression="zlib", photometric="minisblack",
                 extratags=GEO_TAGS)
        tw.write(mask, tile=(128, 128), compression="zlib", photometric=4,
                 extratags=[(254, 4, 1, 4)])  # NewSubfileType 4: a mask
    return path


# name -> (writer, band -> band_index, ycbcr decoder)
FILES = {
    "jpeg_rgb.tif": (lambda p: write_masked_tiff(p, data=natural_rgb(700, 600),
                                                 compress="jpeg"), RGB, "gdal"),
    "jpeg_grey.tif": (lambda p: write_masked_tiff(p, width=600, height=500, dtype="uint8",
                                                  compress="jpeg", seed=3), {"B1": 0}, None),
    "deflate.tif": (lambda p: write_masked_tiff(p, width=900, height=700, dtype="uint16",
                                                seed=5), {"B1": 0}, None),
    "nodata.tif": (lambda p: write_masked_tiff(p, width=500, height=400, dtype="int16",
                                               nodata=-9999, overviews=False, seed=6),
                   {"B1": 0}, None),
    "strip.tif": (lambda p: write_masked_tiff(p, width=401, height=333, dtype="uint8",
                                              striped=True, seed=7), {"B1": 0}, None),
    "mask8.tif": (_mask8, {"B1": 0}, None),
}


@pytest.fixture(scope="module")
def masked_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("masked")
    for name, (writer, _, _) in FILES.items():
        writer(root / name)
    return root


@pytest.fixture(scope="module")
def server(masked_dir):
    with RangeServer(masked_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def s3(s3_server, masked_dir):
    s3_server.create_bucket(BUCKET)
    s3_server.upload_dir(masked_dir, BUCKET)
    return {"s3": s3_server.storage_options}


def _masked_expected(var, path, band_index: int, geometry=None) -> tuple[np.ndarray, np.ndarray]:
    """rasterio's masked read of the output's window filled with nodata (0 without), the
    geometry's outside too; and the window's mask (True = masked by the file's mask)."""
    with rasterio.open(path) as src:
        window = output_window(var, src.transform)
        data = src.read(band_index + 1, window=window, masked=True, boundless=True)
        masked = src.read_masks(band_index + 1, window=window, boundless=True) == 0
        fill = 0 if src.nodata is None else src.nodata
        transform = src.window_transform(window)
    assert np.array_equal(np.ma.getmaskarray(data), masked)  # masked reads are read_masks' 0s
    want = data.filled(fill)
    if geometry is not None:
        outside = geometry_mask([shapely.geometry.mapping(geometry)], want.shape, transform)
        want = np.where(outside, np.array(fill, want.dtype), want)
    return want, masked


def _shapes(path) -> list[shapely.Geometry]:
    with rasterio.open(path) as src:
        t, h, w = src.transform, src.height, src.width
    return [pixel_box(t, 30.4, 20.7, w - 40.2, h - 25.9),
            pixel_circle(t, w * 0.5, h * 0.45, min(h, w) * 0.4)]


@pytest.mark.parametrize("name", list(FILES))
def test_masked_pixels_read_as_nodata_locally_over_http_and_s3(masked_dir, server, s3, name):
    _, bands, decoder = FILES[name]
    path = masked_dir / name
    shapes = _shapes(path)
    with rasterio.open(path) as src:
        crs = src.crs
    for href, storage in ((str(path), None), (server.href(name), None),
                          (f"s3://{BUCKET}/{name}", s3)):
        collection = build([single(path, href=href, bands=bands)], storage_options=storage)
        metadata = collection.to_table()[S.metadata_column(next(iter(bands)))][0].as_py()
        assert metadata["mask"]["tile_offsets"] and metadata["mask"]["sample"] == 0
        with dask.config.set({"rasteret_dask.ycbcr_jpeg": decoder or "libjpeg-turbo"}):
            datasets = collection.get_xarray(shapes, list(bands), geometry_crs=crs,
                                             storage_options=storage)
            plans = collection.explain(shapes, list(bands), geometry_crs=crs)
        for ds, shape, plan in zip(datasets, shapes, plans, strict=True):
            values = ds.compute()
            assert plan["shape"] == (1, values.sizes["y"], values.sizes["x"])
            for band, index in bands.items():
                want, masked = _masked_expected(values, path, index, geometry=shape)
                got = values[band].values[0]
                assert masked.any() and (~masked).any()
                assert np.array_equal(got, want), f"{(got != want).sum()} pixels differ"


def test_a_jpeg_files_masked_area_is_nodata_not_jpeg_noise(masked_dir):
    path = masked_dir / "jpeg_grey.tif"
    with rasterio.open(path) as src:
        raw, masked = src.read(1), src.read_masks(1) == 0
        whole = shapely.box(*src.bounds)
    assert raw[masked].max() > 0  # the JPEG codec left values under the mask
    collection = build([single(path)])
    got = collection.get_xarray(whole, ["B1"], geometry_crs=32633)["B1"].values[0]
    assert got.shape == raw.shape
    assert (got[masked] == 0).all() and np.array_equal(got[~masked], raw[~masked])


def _gdal(path, geobox: GeoBox, resampling: str, overview_level: int | None = None,
          band: int = 1) -> np.ndarray:
    """GDAL's warp of the dataset's band (its mask honoured) onto ``geobox``."""
    with rasterio.open(path, overview_level=overview_level) as src:
        out = np.zeros(geobox.shape, src.dtypes[band - 1])
        reproject(rasterio.band(src, band), out, dst_crs=str(geobox.crs),
                  dst_transform=geobox.transform, dst_nodata=0,
                  resampling=Resampling[resampling])
    return out


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "average", "mode"])
def test_warped_masked_reads_equal_gdal(masked_dir, resampling):
    """One chunk inside the image (GDAL's warp of a region depends on the region: a chunk is
    compared with the same region), a third of a pixel off the file's grid, 1.9x coarser,
    and into EPSG:4326; the RGB file's mask is shared by its three bands."""
    for name, bands in (("deflate.tif", {"B1": 0}), ("jpeg_rgb.tif", RGB)):
        path = masked_dir / name
        with rasterio.open(path) as src:
            t, (h, w), crs = src.transform, src.shape, src.crs
        collection = build([single(path, bands=bands)])
        boxes = [GeoBox((h - 40, w - 50), t @ Affine.translation(20.33, 15.0), str(crs)),
                 GeoBox(((h - 60) // 2, (w - 60) // 2),
                        Affine(t.a * 1.9, 0, t.c + 20 * t.a, 0, t.e * 1.9, t.f + 15 * t.e),
                        str(crs))]
        x0, y0 = t @ (w * 0.2, h * 0.8)
        x1, y1 = t @ (w * 0.8, h * 0.2)
        bounds = rasterio.warp.transform_bounds(crs, 4326, x0, y0, x1, y1)
        boxes.append(GeoBox.from_bbox(bounds, "EPSG:4326", resolution=0.00015))
        with dask.config.set({"rasteret_dask.ycbcr_jpeg": "gdal"}):
            for box in boxes:
                ds = collection.get_xarray(None, list(bands), geobox=box, resampling=resampling,
                                           chunks={"x": 1024, "y": 1024})
                for band, index in bands.items():
                    got, want = ds[band].values[0], _gdal(path, box, resampling, band=index + 1)
                    assert np.array_equal(got, want), \
                        f"{name} {band}: {(got != want).sum()} pixels differ"


def test_a_coarser_read_uses_the_overviews_own_mask(masked_dir):
    path = masked_dir / "deflate.tif"
    with rasterio.open(path) as src:
        t, (h, w), crs = src.transform, src.shape, src.crs
    collection = build([single(path)])
    metadata = collection.to_table()[S.metadata_column("B1")][0].as_py()
    assert [o["mask"]["width"] for o in metadata["overviews"]] == [450, 225]
    # 2.5x coarser: odc-stac's rule reads the 2x overview, resampled by 1.25 with its mask
    box = GeoBox(((h - 40) // 3, (w - 40) // 3),
                 Affine(t.a * 2.5, 0, t.c + 20 * t.a, 0, t.e * 2.5, t.f + 20 * t.e), str(crs))
    plan = collection.explain(None, ["B1"], geobox=box, resampling="bilinear")[0]
    assert plan["overview_levels"] == {"B1": {1: 1}}
    ds = collection.get_xarray(None, ["B1"], geobox=box, resampling="bilinear",
                               chunks={"x": 1024, "y": 1024})
    got, want = ds["B1"].values[0], _gdal(path, box, "bilinear", overview_level=0)
    assert np.array_equal(got, want), f"{(got != want).sum()} pixels differ"
    assert (got == 0).any() and (got > 0).mean() > 0.5


def test_masked_points_read_as_nodata(masked_dir):
    path = masked_dir / "nodata.tif"
    with rasterio.open(path) as src:
        masked = src.read_masks(1) == 0
        values = src.read(1)
        t = src.transform
    rows, cols = np.nonzero(masked)
    inside = np.argwhere(~masked)
    picks = [(rows[0], cols[0]), (rows[len(rows) // 2], cols[len(rows) // 2]),
             tuple(inside[len(inside) // 2])]
    points = [shapely.Point(t @ (c + 0.5, r + 0.5)) for r, c in picks]
    collection = build([single(path)])
    table = collection.sample_points(points, ["B1"], geometry_crs=32633)
    got = dict(zip(table["point_index"].to_pylist(), table["B1"].to_pylist(), strict=True))
    assert got == {0: -9999, 1: -9999, 2: int(values[picks[2]])}


def test_an_unreadable_mask_fails_its_record_at_enrichment(tmp_path):
    path = _mask8(tmp_path / "mask16.tif", bits=16)
    buf = SparseBuffer()
    buf.add(0, path.read_bytes())
    with pytest.raises(TiffError, match=r"internal mask .* cannot be read: BitsPerSample \[16\]"):
        parse_tiff_header(buf).to_metadata(0)
    table = record_table([single(path, rid="m16")])
    report = rd.build_collection_from_table(table, name="m16").enrich(progress=False)
    assert report.failed == 1
    (message,) = report.errors
    for part in ("record 'm16'", "band 'B1'", str(path), "BitsPerSample [16]"):
        assert part in message, message


def test_a_large_read_planned_on_the_workers_applies_masks(masked_dir):
    """More than 64 chunks: planned per chunk on the workers (read/deferred.py), each chunk
    reading its mask tiles with its data tiles; on the file's own grid every chunk is a copy."""
    path = masked_dir / "deflate.tif"
    with rasterio.open(path) as src:
        t, crs = src.transform, src.crs
        want = src.read(1, window=((10, 690), (5, 885)), masked=True).filled(0)
    box = GeoBox((680, 880), t @ Affine.translation(5, 10), str(crs))
    collection = build([single(path)])
    (plan,) = collection.explain(None, ["B1"], geobox=box, chunks={"x": 64, "y": 64})
    assert plan["planned_on"] == "workers"
    ds = collection.get_xarray(None, ["B1"], geobox=box, chunks={"x": 64, "y": 64})
    got = ds["B1"].values[0]
    assert np.array_equal(got, want), f"{(got != want).sum()} pixels differ"
