"""Lazy reads of many COG flavours from local paths are bit-exact against rasterio.

Every case writes one small file (sizes are never tile multiples), indexes and enriches it, and
reads three geometries in one call: a box that starts mid-tile and crosses tile edges, a box
that crosses the image's right and bottom edges, and a circle (masked outside). Each output is
compared with rasterio's read of the window given by the output's coordinates.
"""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import rasterio

from rasteret_dask.testing.cogs import write_cog

from .test_read_helpers import (
    assert_matches,
    build,
    expected,
    file_info,
    output_window,
    pixel_box,
    pixel_circle,
    regular_chunks,
    single,
)

UTM = "EPSG:32633"
NAN = float("nan")
RGB = {"R": 0, "G": 1, "B": 2}
FOUR = {"B1": 0, "B2": 1, "B3": 2, "B4": 3}
# TIFF Compression tag values, to be sure each case wrote the codec it names
CODES = {None: 1, "deflate": 8, "lzw": 5, "zstd": 50000, "packbits": 32773, "lzma": 34925,
         "jpeg": 7, "webp": 50001, "lerc": 34887, "lerc_deflate": 34887, "lerc_zstd": 34887}


def case(name: str, *, read: dict | None = None, **cog) -> pytest.param:
    """A flavour: ``cog`` goes to write_cog; ``read`` holds bands, tolerance, chunks, all_touched."""
    cog.setdefault("width", 700)
    cog.setdefault("height", 600)
    cog.setdefault("blocksize", 256)
    return pytest.param(cog, read or {}, id=name)


FLAVOURS = [
    # compression x predictor x dtype
    case("none-uint8-b128", compress=None, dtype="uint8", blocksize=128, width=330, height=301),
    case("none-float64-nodata", compress=None, dtype="float64", nodata=-1e30),
    case("deflate-p2-uint16-nodata0", dtype="uint16", predictor=2, nodata=0),
    case("deflate-p1-int8-nodata", dtype="int8", nodata=-128, blocksize=128, width=390, height=290),
    case("deflate-p3-float64", dtype="float64", predictor=3),
    case("deflate-p2-uint32-b512-chunks2", dtype="uint32", predictor=2, blocksize=512,
         width=900, height=700, read={"chunks": 2}),
    case("lzw-p2-int16-nodata", compress="lzw", dtype="int16", predictor=2, nodata=-9999),
    case("lzw-p2-uint8", compress="lzw", dtype="uint8", predictor=2, blocksize=128,
         width=450, height=333),
    case("lzw-p3-float32-nan", compress="lzw", dtype="float32", predictor=3, nodata=NAN),
    case("zstd-p2-int32-b512", compress="zstd", dtype="int32", predictor=2, blocksize=512,
         width=800, height=650),
    case("zstd-p3-float32-b128", compress="zstd", dtype="float32", predictor=3, blocksize=128,
         width=420, height=350, nodata=-9999.0),
    case("zstd-p1-uint16-chunks2", compress="zstd", dtype="uint16", blocksize=128,
         width=530, height=470, read={"chunks": 2}),
    case("packbits-int32", compress="packbits", dtype="int32", nodata=-2147483648),
    case("packbits-uint8", compress="packbits", dtype="uint8", blocksize=128, width=300,
         height=310),
    # this GDAL writes LZMA without a predictor whatever PREDICTOR says
    case("lzma-uint16", compress="lzma", dtype="uint16", width=600, height=520),
    case("lzma-float64-nan", compress="lzma", dtype="float64", nodata=NAN, blocksize=128,
         width=340, height=300),
    case("jpeg-uint8", compress="jpeg", dtype="uint8", read={"tolerance": 1}),
    case("jpeg-planar-3-uint8", compress="jpeg", dtype="uint8", count=3, interleave="band",
         blocksize=128, width=300, height=270, read={"tolerance": 1, "bands": RGB}),
    # YCbCr JPEG: libjpeg and libjpeg-turbo differ on colour variation, so a uniform colour
    case("jpeg-ycbcr-uniform", compress="jpeg", dtype="uint8",
         data=np.broadcast_to(np.array([200, 60, 120], np.uint8)[:, None, None],
                              (3, 300, 410)), read={"tolerance": 1, "bands": RGB}),
    case("webp-rgb-lossless", compress="webp", dtype="uint8", count=3, QUALITY=100,
         read={"bands": RGB}),
    case("webp-rgba-lossless", compress="webp", dtype="uint8", count=4, QUALITY=100,
         blocksize=128, width=290, height=260, read={"bands": FOUR}),
    case("lerc-float32", compress="lerc", dtype="float32"),
    case("lerc-deflate-uint16", compress="lerc_deflate", dtype="uint16", blocksize=128,
         width=400, height=390),
    case("lerc-zstd-float64-nan", compress="lerc_zstd", dtype="float64", nodata=NAN),
    # samples and interleave
    case("chunky-4-uint16-deflate-p2", dtype="uint16", count=4, predictor=2, nodata=0,
         read={"bands": FOUR}),
    case("chunky-4-float32-zstd-p3", compress="zstd", dtype="float32", count=4, predictor=3,
         blocksize=128, width=310, height=290, read={"bands": FOUR}),
    case("planar-4-int16-zstd-p2", compress="zstd", dtype="int16", count=4, predictor=2,
         interleave="band", nodata=-1, read={"bands": FOUR}),
    case("planar-3-uint8-lzw", compress="lzw", dtype="uint8", count=3, interleave="band",
         blocksize=128, width=333, height=299, read={"bands": RGB}),
    # byte order
    case("bigendian-uint16-deflate-p2", dtype="uint16", predictor=2, endianness="big",
         nodata=0),
    case("bigendian-float32-lzw-p3", compress="lzw", dtype="float32", predictor=3,
         endianness="big", nodata=NAN, blocksize=128, width=350, height=330),
    case("bigendian-int32-none", compress=None, dtype="int32", endianness="big"),
    case("bigendian-int8-p2", dtype="int8", predictor=2, endianness="big", blocksize=128,
         width=300, height=333),
    case("bigendian-uint32-zstd-p2", compress="zstd", dtype="uint32", predictor=2,
         endianness="big", nodata=4294967295),
    case("bigendian-float32-lerc", compress="lerc", dtype="float32", endianness="big"),
    case("bigendian-float64-zstd-planar-2", compress="zstd", dtype="float64", count=2,
         endianness="big", interleave="band", read={"bands": {"A": 0, "B": 1}}),
    # grids and container
    case("epsg4326-float32-deflate-p3", dtype="float32", predictor=3, crs="EPSG:4326",
         nodata=NAN),
    case("epsg4326-uint8-b128", dtype="uint8", crs="EPSG:4326", blocksize=128, width=310,
         height=305),
    case("utm32n-int16", dtype="int16", predictor=2, crs="EPSG:32632",
         transform=(20.0, 0.0, 399960.0, 0.0, -20.0, 5100000.0)),
    case("bigtiff-uint16", dtype="uint16", predictor=2, bigtiff=True, crs=UTM),
    # more than one fetch group (48 tiles each) per read
    case("many-tiles-uint16-b128", dtype="uint16", predictor=2, blocksize=128, width=1300,
         height=1150, nodata=0),
]


def geometries(transform, height: int, width: int, blocksize: int) -> list:
    """A mid-tile box crossing tile edges, a box past the image edge, and a circle."""
    col0, row0 = blocksize // 2 + 3.3, blocksize // 3 + 0.6
    inner = pixel_box(transform, col0, row0, min(col0 + blocksize + 77.5, width - 5.5),
                      min(row0 + blocksize + 41.2, height - 3.1))
    edge = pixel_box(transform, width - blocksize // 2 - 7.4, height - 40.2, width + 50.5,
                     height + 30.5)
    circle = pixel_circle(transform, width * 0.45, height * 0.55, min(width, height) * 0.3)
    return [inner, edge, circle]


@pytest.mark.parametrize(("cog", "read"), FLAVOURS)
def test_flavour_is_bit_exact_against_rasterio(tmp_path, cog, read):
    if "data" in cog:
        cog = {k: v for k, v in cog.items() if k not in ("width", "height")}
    path = write_cog(tmp_path / "f.tif", seed=7, **cog)
    bands = read.get("bands", {"B1": 0})
    collection = build([single(path, bands=bands)])
    md = collection.to_table()[f"{next(iter(bands))}_metadata"][0].as_py()
    assert md["compression"] == CODES[cog.get("compress", "deflate")]
    assert md["predictor"] == cog.get("predictor", 1)
    assert md["planar_configuration"] == (2 if cog.get("interleave") == "band" else 1)
    big = cog.get("endianness") == "big" and np.dtype(md["dtype"]).itemsize > 1
    assert md["dtype"].startswith(">") == big
    epsg, transform, (height, width) = file_info(path)
    if "data" in cog:
        assert md["photometric"] == 6  # YCbCr
    shapes = geometries(transform, height, width, cog["blocksize"])
    datasets = collection.get_xarray(shapes, list(bands), geometry_crs=epsg,
                                     chunks=read.get("chunks"))
    assert isinstance(datasets, list) and len(datasets) == 3
    for k, (ds, shape) in enumerate(zip(datasets, shapes)):
        assert ds.sizes["time"] == 1 and list(ds["id"].values) == ["r0"]
        window = output_window(ds, transform)
        geo = [float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split()]
        with rasterio.open(path) as src:
            assert geo == list(src.window_transform(window).to_gdal())
        assert pyproj.CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"]).to_epsg() == epsg
        if k == 1:  # the box past the image edge stops at the image edge
            assert window.col_off + window.width == width
            assert window.row_off + window.height == height
        for band, index in bands.items():
            var = ds[band]
            step = cog["blocksize"] * (read.get("chunks") or 1)
            assert regular_chunks(var, step, step)
            got = var.values[0]
            want = expected(ds, path, index, geometry=shape)
            assert_matches(got, want, read.get("tolerance", 0))
            if cog.get("nodata") is not None:
                assert np.array_equal(var.attrs["nodata"], cog["nodata"], equal_nan=True)
            else:
                assert "nodata" not in var.attrs
