"""GeoTIFFs users have that are not plain EPSG COGs, read over HTTP and S3 as rasterio reads them:
custom CRSs rebuilt from GeoKeys (Albers, geostationary, Mars), striped files (deflate,
uncompressed, planar, YCbCr JPEG with its short last strip), 1-bit images; ``explain()`` and
``get_xarray`` agree on each; a query across celestial bodies is refused by name."""

from __future__ import annotations

import dask
import numpy as np
import pyarrow as pa
import pyproj
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.testing.cogs import natural_rgb, write_cog, write_strip_tiff
from rasteret_dask.testing.servers import RangeServer

from .test_read_helpers import (
    assert_matches,
    build,
    expected,
    pixel_box,
    pixel_circle,
    record_table,
    single,
)

rasterio = pytest.importorskip("rasterio")

BUCKET = "geotiffs"
RGB = {"R": 0, "G": 1, "B": 2}
ALBERS = ("+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=23 +lon_0=-96 +x_0=0 +y_0=0 +ellps=GRS80 "
          "+units=m +no_defs")
GEOS = "+proj=geos +h=35785831 +lon_0=-75 +sweep=x +ellps=GRS80 +units=m +no_defs"
MARS_EQC = "+proj=eqc +lat_ts=0 +lat_0=0 +lon_0=0 +x_0=0 +y_0=0 +R=3396190 +units=m +no_defs"
MARS_LONLAT = "+proj=longlat +R=3396190 +no_defs"


def _bits(width: int, height: int, period: int) -> np.ndarray:
    return (np.arange(width * height).reshape(1, height, width) % period < 3).astype(np.uint8)


# name -> (writer, band -> band_index, read options)
FILES = {
    "albers.tif": (lambda p: write_cog(p, width=700, height=600, crs=ALBERS, nodata=0,
                                       transform=(30, 0, -1000000, 0, -30, 2000000)),
                   {"B1": 0}, {}),
    "geos.tif": (lambda p: write_cog(p, width=500, height=400, crs=GEOS, dtype="int16",
                                     transform=(2000, 0, -1000000, 0, -2000, 1000000)),
                 {"B1": 0}, {}),
    "strip_deflate.tif": (lambda p: write_strip_tiff(p, width=701, height=577, dtype="uint16",
                                                     predictor=2), {"B1": 0}, {}),
    "strip_none.tif": (lambda p: write_strip_tiff(p, width=701, height=577, dtype="int16",
                                                  compress=None), {"B1": 0}, {}),
    "strip_planar.tif": (lambda p: write_strip_tiff(p, width=401, height=377, count=3,
                                                    interleave="band", dtype="float32",
                                                    rows_per_strip=5), RGB, {}),
    "strip_bit.tif": (lambda p: write_strip_tiff(p, data=_bits(333, 211, 7), NBITS=1),
                      {"B1": 0}, {}),
    "tiled_bit.tif": (lambda p: write_cog(p, data=_bits(333, 211, 5), NBITS=1, blocksize=128,
                                          overviews=False, photometric="MINISBLACK"),
                      {"B1": 0}, {}),
    "strip_ycbcr.tif": (lambda p: write_strip_tiff(p, data=natural_rgb(450, 333),
                                                   compress="jpeg", PHOTOMETRIC="YCBCR"),
                        RGB, {"ycbcr_jpeg": "gdal"}),
}


@pytest.fixture(scope="module")
def geotiff_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("geotiffs")
    for name, (writer, _, _) in FILES.items():
        writer(root / name)
    return root


@pytest.fixture(scope="module")
def server(geotiff_dir):
    with RangeServer(geotiff_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def s3(s3_server, geotiff_dir):
    s3_server.create_bucket(BUCKET)
    s3_server.upload_dir(geotiff_dir, BUCKET)
    return {"s3": s3_server.storage_options}


def _file(path):
    with rasterio.open(path) as src:
        return pyproj.CRS.from_wkt(src.crs.to_wkt()), src.transform, (src.height, src.width)


def _shapes(path) -> list[shapely.Geometry]:
    """A box from mid-tile across tile (strip) edges, and a circle, in the file's CRS."""
    _, t, (h, w) = _file(path)
    return [pixel_box(t, 70.4, 50.7, w - 90.2, h - 60.9),
            pixel_circle(t, w * 0.5, h * 0.45, min(h, w) * 0.35)]


@pytest.mark.parametrize("name", list(FILES))
def test_local_http_and_s3_reads_equal_rasterio(geotiff_dir, server, s3, name):
    _, bands, options = FILES[name]
    path = geotiff_dir / name
    crs, _, _ = _file(path)
    shapes = _shapes(path)
    decoder = options.get("ycbcr_jpeg")
    for href, storage in ((str(path), None), (server.href(name), None),
                          (f"s3://{BUCKET}/{name}", s3)):
        collection = build([single(path, href=href, bands=bands)], storage_options=storage)
        metadata = collection.to_table()[S.metadata_column(next(iter(bands)))][0].as_py()
        assert metadata["striped"] == name.startswith("strip")
        assert (metadata["bits_per_sample"] == 1) == name.endswith("bit.tif")
        assert (metadata["crs_wkt"] is not None) == (metadata["crs_epsg"] is None)
        with dask.config.set({"rasteret_dask.ycbcr_jpeg": decoder}):
            datasets = collection.get_xarray(shapes, list(bands), geometry_crs=crs,
                                             storage_options=storage)
            plans = collection.explain(shapes, list(bands), geometry_crs=crs)
        for ds, shape, plan in zip(datasets, shapes, plans, strict=True):
            values = ds.compute()
            assert pyproj.CRS.from_wkt(values.spatial_ref.attrs["crs_wkt"]) == crs
            assert plan["shape"] == (1, values.sizes["y"], values.sizes["x"])
            assert plan["crs"] == (f"EPSG:{metadata['crs_epsg']}" if metadata["crs_epsg"]
                                   else metadata["crs_wkt"])
            for band, index in bands.items():
                assert_matches(values[band].values[0], expected(values, path, index,
                                                                geometry=shape))


def test_ycbcr_jpeg_default_decoder_differs_within_the_measured_bound(geotiff_dir):
    path = geotiff_dir / "strip_ycbcr.tif"
    crs, _, _ = _file(path)
    box = _shapes(path)[0]
    collection = build([single(path, bands=RGB)])
    values = collection.get_xarray(box, list(RGB), geometry_crs=crs).compute()
    diffs = [np.abs(values[b].values[0].astype(int) - expected(values, path, i, geometry=box)
                    .astype(int)) for b, i in RGB.items()]
    worst = max(int(d.max()) for d in diffs)
    assert 0 < worst <= 60  # libjpeg-turbo's chroma upsampling is not GDAL's (README)
    with pytest.raises(ValueError, match="rasteret_dask.ycbcr_jpeg must be one of"), \
            dask.config.set({"rasteret_dask.ycbcr_jpeg": "libjpeg-9"}):
        collection.get_xarray(box, list(RGB), geometry_crs=crs)


def test_striped_reads_group_strips_into_chunks(geotiff_dir):
    path = geotiff_dir / "strip_deflate.tif"
    crs, t, (h, w) = _file(path)
    collection = build([single(path)])
    whole = shapely.box(*rasterio.open(path).bounds)
    plan = collection.explain(whole, ["B1"], geometry_crs=crs)[0]
    with rasterio.open(path) as src:
        strips = len(src.block_shapes) and -(-h // src.block_shapes[0][0])
    assert plan["tiles"] == strips  # every strip once
    assert plan["chunks"] == 1  # 701 x 577 pixels: one chunk, not one per strip
    ds = collection.get_xarray(whole, ["B1"], geometry_crs=crs, chunks=3).compute()
    assert_matches(ds["B1"].values[0], expected(ds, path, 0))


def _mars_collection(path) -> rd.Collection:
    """A record without a footprint: enrichment fills it from the header, in Mars's
    longitude/latitude."""
    table = pa.table({
        "id": ["mars"], "datetime": pa.array([np.datetime64("2024-05-01", "us")],
                                             pa.timestamp("us")),
        "geometry": pa.array([None], pa.binary()),
        "assets": pa.array([{"B1": {"href": str(path), "band_index": 0}}],
                           pa.struct([pa.field("B1", S.ASSET_TYPE)])),
    })
    report = rd.build_collection_from_table(table, name="mars").enrich(progress=False)
    assert report.failed == 0, report.errors
    return report.collection


def test_a_mars_record_reads_in_its_body_crs_and_refuses_an_earth_query(tmp_path):
    path = write_cog(tmp_path / "mars.tif", width=400, height=300, crs=MARS_EQC,
                     transform=(1000.0, 0.0, 100000.0, 0.0, -1000.0, 400000.0))
    collection = _mars_collection(path)
    footprint = shapely.from_wkb(collection.to_table()[S.GEOMETRY][0].as_py())
    mars_lonlat = pyproj.CRS(MARS_LONLAT)
    expected_box = shapely.box(*pyproj.Transformer.from_crs(
        MARS_EQC, mars_lonlat, always_xy=True).transform_bounds(100000, 100000, 500000,
                                                                400000))
    assert footprint.equals_exact(expected_box.normalize(), 1e-9) or \
        footprint.symmetric_difference(expected_box).area < 1e-9
    crs, t, _ = _file(path)
    box = shapely.box(*footprint.buffer(-0.5).bounds)  # Mars degrees
    ds = collection.get_xarray(box, ["B1"], geometry_crs=MARS_LONLAT).compute()
    native = pyproj.Transformer.from_crs(mars_lonlat, crs, always_xy=True)
    shape = shapely.transform(shapely.segmentize(box, 0.05),
                              lambda xy: np.column_stack(native.transform(xy[:, 0], xy[:, 1])))
    assert_matches(ds["B1"].values[0], expected(ds, path, 0, geometry=shape))
    for call in (collection.get_xarray, collection.explain):
        with pytest.raises(ValueError) as info:
            call(box, ["B1"], geometry_crs=4326)
        message = str(info.value)
        for part in ("record 'mars'", "band 'B1'", str(path), "EPSG:4326", "Earth", "Mars",
                     "do not mix"):
            assert part in message, message


def test_custom_crs_footprints_are_filled_from_headers(geotiff_dir):
    path = geotiff_dir / "albers.tif"
    table = pa.table({
        "id": ["a"], "datetime": pa.array([np.datetime64("2024-05-01", "us")],
                                          pa.timestamp("us")),
        "geometry": pa.array([None], pa.binary()),
        "assets": pa.array([{"B1": {"href": str(path), "band_index": 0}}],
                           pa.struct([pa.field("B1", S.ASSET_TYPE)])),
    })
    collection = rd.build_collection_from_table(table, name="albers").enrich(
        progress=False).collection
    footprint = shapely.from_wkb(collection.to_table()[S.GEOMETRY][0].as_py())
    with rasterio.open(path) as src:
        west, south, east, north = rasterio.warp.transform_bounds(src.crs, "EPSG:4326",
                                                                  *src.bounds)
    assert footprint.bounds == pytest.approx((west, south, east, north), abs=1e-3)
    crs, _, _ = _file(path)
    assert collection.explain(footprint.centroid.buffer(0.01), ["B1"])[0]["records"] == 1


def _refusals(collection: rd.Collection, geometry, **kwargs) -> list[str]:
    messages = []
    for call in (collection.get_xarray, collection.explain):
        with pytest.raises(ValueError) as info:
            call(geometry, ["B1"], **kwargs)
        messages.append(str(info.value))
    assert messages[0] == messages[1], messages  # explain and get_xarray refuse alike
    return messages[:1]


def test_records_without_georeferencing_are_refused_by_name(tmp_path):
    """Item 7: an error that named no record names record, band, href and cause. (Rotated
    and GCP-only records, refused here before, are read onto output grids since item 4:
    tests/test_read_rotated_gcp.py.)"""
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=120, height=90, count=1,
                       dtype="uint8") as dst:
        dst.write(np.ones((1, 90, 120), np.uint8))
    where = write_cog(tmp_path / "where.tif", width=120, height=90)
    table = record_table([single(where, href=str(plain), rid="plain")])
    collection = rd.build_collection_from_table(table, name="plain").enrich(
        progress=False).collection
    aoi = shapely.from_wkb(table["geometry"][0].as_py())
    (message,) = _refusals(collection, aoi)
    for part in ("record 'plain'", "band 'B1'", str(plain), "metadata lacks transform",
                 "not georeferenced"):
        assert part in message, message
