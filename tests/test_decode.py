"""decode/: every tile of small GDAL-written TIFFs decodes exactly as rasterio reads it.

Files are written with rasterio (GTiff TILED=YES or COG, 300 x 200 pixels in 128 x 128 blocks,
so edge tiles are padded), each tile's raw bytes are cut from the file with tifffile's offsets,
decoded with ``decode_tile`` and compared with ``rasterio``'s read of that tile's window.
"""

from __future__ import annotations

import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from affine import Affine

from rasteret_dask.decode import DECODABLE_COMPRESSIONS, DecodeError, DecodeSpec, decode_tile
from rasteret_dask.decode.spec import fill_value
from rasteret_dask.tiff import SUPPORTED_COMPRESSIONS, read_tiff_header
from rasteret_dask.tiff.cog_metadata import CogMetadata, MetadataError

rasterio = pytest.importorskip("rasterio")
tifffile = pytest.importorskip("tifffile")

from rasterio.errors import NotGeoreferencedWarning  # noqa: E402
from rasterio.windows import Window  # noqa: E402

WIDTH, HEIGHT, BLOCK = 300, 200, 128
INT_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"]


def random_bands(dtype: str, count: int, seed: int = 0, shape=(HEIGHT, WIDTH)) -> np.ndarray:
    """Full-range random samples (exercises predictor wrap-around), shape (count, rows, cols)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.standard_normal((count, *shape)) * 1000).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, (count, *shape), dtype=dt, endpoint=True)


def smooth_bands(count: int) -> np.ndarray:
    """Smooth uint8 gradients (JPEG-friendly), shape (count, HEIGHT, WIDTH)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(float)
    bands = [127 + 100 * np.sin(xx / 23.0 + k) * np.cos(yy / 31.0 - k / 2) for k in range(count)]
    return np.clip(np.stack(bands), 0, 255).astype("uint8")


def write(path: Path, data: np.ndarray, driver: str = "GTiff", **options) -> Path:
    """Write ``data`` (bands, rows, cols) as a tiled GeoTIFF with 128 x 128 blocks."""
    profile = {
        "driver": driver,
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype,
        "transform": Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
    }
    if driver == "COG":
        profile["blocksize"] = BLOCK
    else:
        profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
    profile.update(options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
    return path


def metadata_of(page, byteorder: str) -> CogMetadata:
    """The typed metadata of a tifffile page's first plane (its decode fields as tifffile
    reads them; an identity transform)."""
    dtype = np.dtype(page.dtype)
    lerc = page.tags.get("LercParameters")
    tiles = -(-page.imagelength // page.tilelength) * -(-page.imagewidth // page.tilewidth)
    return CogMetadata.from_struct({
        "image_width": page.imagewidth,
        "image_height": page.imagelength,
        "transform": [1.0, 0.0, 0.0, 0.0, -1.0, 0.0],
        "tile_offsets": list(page.dataoffsets[:tiles]),
        "tile_byte_counts": list(page.databytecounts[:tiles]),
        "compression": int(page.compression),
        "predictor": int(page.predictor),
        "dtype": dtype.name if byteorder == "<" else dtype.newbyteorder(">").str,
        "tile_width": page.tilewidth,
        "tile_height": page.tilelength,
        "samples_per_pixel": page.samplesperpixel,
        "planar_configuration": int(page.planarconfig),
        "photometric": int(page.photometric),
        "jpeg_tables": page.jpegtables,
        "lerc_parameters": list(lerc.value) if lerc is not None else None,
        "nodata": page.nodata if page.nodata != 0 or "GDAL_NODATA" in page.tags else None,
    })


def tiles_of(path: Path):
    """(spec, [(plane, row_off, col_off, bytes), ...]) of the full-resolution image."""
    raw = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        spec = DecodeSpec.from_metadata(metadata_of(page, tif.byteorder))
        across = -(-page.imagewidth // page.tilewidth)
        down = -(-page.imagelength // page.tilelength)
        tiles = []
        for index, (offset, count) in enumerate(
            zip(page.dataoffsets, page.databytecounts, strict=True)
        ):
            plane, rest = divmod(index, across * down)
            row, col = divmod(rest, across)
            tiles.append(
                (plane, row * page.tilelength, col * page.tilewidth, raw[offset : offset + count])
            )
    return spec, tiles


def check_file(path: Path, tolerance: int = 0) -> DecodeSpec:
    """Decode every tile of ``path`` and compare its valid part with rasterio's read."""
    spec, tiles = tiles_of(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = rasterio.open(path)
    with src:
        for plane, row_off, col_off, data in tiles:
            tile = decode_tile(data, spec)
            assert tile.shape == spec.shape
            assert tile.dtype == np.dtype(spec.dtype).newbyteorder("=")
            assert tile.dtype.isnative
            rows = min(spec.tile_height, src.height - row_off)
            cols = min(spec.tile_width, src.width - col_off)
            window = Window(col_off, row_off, cols, rows)
            bands = [plane + 1] if spec.samples == 1 and src.count > 1 else None
            expected = src.read(bands, window=window).transpose(1, 2, 0)
            got = tile[:rows, :cols]
            if tolerance:
                diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
                assert diff.max() <= tolerance, (plane, row_off, col_off, diff.max())
            else:
                np.testing.assert_array_equal(got.astype(expected.dtype), expected)
    return spec


@pytest.mark.parametrize("compress", ["none", "deflate", "lzw", "zstd", "packbits", "lzma"])
@pytest.mark.parametrize("dtype,count", [("uint8", 1), ("uint16", 3), ("float32", 2)])
def test_lossless_codecs(tmp_path, compress, dtype, count):
    path = write(tmp_path / "a.tif", random_bands(dtype, count), compress=compress)
    spec = check_file(path)
    assert spec.samples == count


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("count", [1, 4])
def test_horizontal_predictor(tmp_path, dtype, count):
    path = write(tmp_path / "p2.tif", random_bands(dtype, count), compress="deflate", predictor=2)
    assert check_file(path).predictor == 2


@pytest.mark.parametrize("order", ["<", ">"])
def test_the_first_rows_of_a_tile_alone(tmp_path, order):
    options = {} if order == "<" else {"endianness": "big"}
    path = write(tmp_path / "rows.tif", random_bands("uint16", 1), compress="deflate",
                 predictor=2, **options)
    spec, tiles = tiles_of(path)
    for _, _, _, data in tiles:
        whole = decode_tile(data, spec).copy()
        for rows in (1, 37, BLOCK):
            got = decode_tile(data, spec, np.empty_like(whole), rows=rows)
            np.testing.assert_array_equal(got[:rows], whole[:rows])


@pytest.mark.parametrize("compress", ["lzw", "zstd", "lzma"])
def test_horizontal_predictor_other_codecs(tmp_path, compress):
    path = write(tmp_path / "p2.tif", random_bands("int16", 3), compress=compress, predictor=2)
    check_file(path)


def test_horizontal_predictor_on_floats(tmp_path):
    # libtiff differences float samples as same-width unsigned integers
    path = write(tmp_path / "p2f.tif", random_bands("float32", 2), compress="zstd", predictor=2)
    assert check_file(path).predictor == 2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("count", [1, 3])
def test_floating_point_predictor(tmp_path, dtype, count):
    data = random_bands(dtype, count)
    data[:, 10:20, 5:50] = np.nan
    path = write(tmp_path / "p3.tif", data, compress="deflate", predictor=3)
    assert check_file(path).predictor == 3


def test_float16_floating_point_predictor(tmp_path):
    # GDAL 3.10 cannot write float16; tifffile writes it and GDAL reads it as float32
    data = random_bands("float16", 1)[0] / 100
    path = tmp_path / "f16.tif"
    tifffile.imwrite(path, data, tile=(BLOCK, BLOCK), compression="zlib", predictor=3)
    spec = check_file(path)
    assert spec.dtype == "float16" and spec.predictor == 3


def test_planar_multiband(tmp_path):
    path = write(
        tmp_path / "planar.tif",
        random_bands("uint16", 3),
        compress="deflate",
        predictor=2,
        interleave="band",
    )
    spec, tiles = tiles_of(path)
    assert spec.samples == 1 and {plane for plane, *_ in tiles} == {0, 1, 2}
    check_file(path)


@pytest.mark.parametrize(
    "dtype,options",
    [
        ("uint16", {"compress": "none"}),
        ("int32", {"compress": "deflate"}),
        ("uint16", {"compress": "lzw", "predictor": 2}),
        ("int64", {"compress": "zstd", "predictor": 2}),
        ("float32", {"compress": "deflate", "predictor": 2}),
        ("float32", {"compress": "deflate", "predictor": 3}),
        ("float64", {"compress": "packbits"}),
        ("uint16", {"compress": "lerc", "max_z_error": 0}),
    ],
)
@pytest.mark.parametrize("count", [1, 3])
def test_big_endian(tmp_path, dtype, options, count):
    path = write(tmp_path / "be.tif", random_bands(dtype, count), endianness="BIG", **options)
    spec = check_file(path)
    assert np.dtype(spec.dtype).byteorder == ">"


def test_big_endian_planar_predictor(tmp_path):
    path = write(
        tmp_path / "bep.tif",
        random_bands("int32", 2),
        endianness="BIG",
        compress="deflate",
        predictor=2,
        interleave="band",
    )
    check_file(path)


@pytest.mark.parametrize("nodata", [65535, None])
def test_sparse_tile_decodes_to_nodata(tmp_path, nodata):
    fill = 0 if nodata is None else nodata
    data = random_bands("uint16", 1) % 1000 + 1
    data[:, :, BLOCK : 2 * BLOCK] = fill
    options = {"nodata": nodata} if nodata is not None else {}
    path = write(tmp_path / "sparse.tif", data, compress="deflate", sparse_ok=True, **options)
    spec, tiles = tiles_of(path)
    empty = [t for t in tiles if len(t[3]) == 0]
    assert len(empty) == 2
    for *_, data_bytes in empty:
        tile = decode_tile(data_bytes, spec)
        assert tile.shape == spec.shape and (tile == fill).all()
    check_file(path)


def test_sparse_float_nan_nodata(tmp_path):
    data = random_bands("float32", 1)
    data[:, :BLOCK, :BLOCK] = np.nan
    path = write(tmp_path / "sparse.tif", data, compress="zstd", sparse_ok=True, nodata=np.nan)
    spec, tiles = tiles_of(path)
    assert len(tiles[0][3]) == 0
    assert np.isnan(decode_tile(b"", spec)).all()
    check_file(path)


def test_fill_value_casts_like_gdal():
    assert fill_value(np.dtype("uint8"), None) == 0
    assert fill_value(np.dtype("uint8"), 300.0) == 255
    assert fill_value(np.dtype("int16"), -2.5) == -3
    assert fill_value(np.dtype("int16"), 2.5) == 3
    assert fill_value(np.dtype("uint16"), float("nan")) == 0
    assert fill_value(np.dtype("float32"), 1e300) == float(np.finfo("float32").max)
    assert np.isnan(fill_value(np.dtype("float64"), float("nan")))


@pytest.mark.parametrize("count", [3, 4])
def test_webp_lossless(tmp_path, count):
    options = {"photometric": "RGB", "alpha": "YES"} if count == 4 else {}
    data = random_bands("uint8", count) // 16 * 16
    if count == 4:
        data[3] = 255
        data[3, :40, :70] = 0
    path = write(
        tmp_path / "webp.tif", data, compress="webp", webp_lossless=True, quality=100, **options
    )
    assert check_file(path).compression == 50001


def test_webp_lossy(tmp_path):
    path = write(tmp_path / "webpl.tif", smooth_bands(3), compress="webp", quality=75)
    check_file(path, tolerance=1)


def test_jpeg_single_band(tmp_path):
    path = write(tmp_path / "j1.tif", smooth_bands(1), compress="jpeg", jpeg_quality=80)
    spec = check_file(path, tolerance=1)
    assert spec.jpeg_tables and spec.compression == 7


def test_jpeg_rgb_no_colour_conversion(tmp_path):
    path = write(tmp_path / "jrgb.tif", smooth_bands(3), compress="jpeg", photometric="RGB")
    assert check_file(path, tolerance=1).photometric == 2


def test_jpeg_planar(tmp_path):
    path = write(tmp_path / "jp.tif", smooth_bands(3), compress="jpeg", interleave="band")
    check_file(path, tolerance=1)


def test_jpeg_ycbcr_to_rgb_constant_chroma(tmp_path):
    """YCbCr tiles (2x2 subsampled chroma) decode to RGB; exact when chroma is uniform."""
    luma = smooth_bands(1)[0].astype(int) // 2 + 40
    data = np.stack([luma + 30, luma, luma + 60]).astype("uint8")  # constant Cb, Cr
    path = write(tmp_path / "jycc.tif", data, compress="jpeg", photometric="YCBCR")
    spec = check_file(path, tolerance=1)
    assert spec.photometric == 6 and spec.samples == 3


def test_jpeg_ycbcr_to_rgb_varying_chroma(tmp_path):
    """Varying chroma: close to rasterio, not exact.

    imagecodecs' libjpeg-turbo upsamples chroma with the triangle ("fancy") filter, as
    libjpeg 6b and libjpeg-turbo builds of GDAL do; the IJG libjpeg 9 bundled in rasterio's
    wheels upsamples it in the DCT domain instead, which differs by a few levels where chroma
    changes.
    """
    path = write(tmp_path / "jycc.tif", smooth_bands(3), compress="jpeg", photometric="YCBCR")
    spec, tiles = tiles_of(path)
    with rasterio.open(path) as src:
        expected = src.read(window=Window(0, 0, BLOCK, BLOCK)).transpose(1, 2, 0)
    diff = np.abs(decode_tile(tiles[0][3], spec).astype(int) - expected)
    assert diff.mean() < 0.5 and diff.max() <= 8


def test_jpeg_cog(tmp_path):
    path = write(tmp_path / "jcog.tif", smooth_bands(1), driver="COG", compress="jpeg")
    check_file(path, tolerance=1)


@pytest.mark.parametrize("compress", ["lerc", "lerc_deflate", "lerc_zstd"])
@pytest.mark.parametrize("dtype,count", [("uint16", 1), ("int8", 3), ("float32", 3)])
def test_lerc_lossless(tmp_path, compress, dtype, count):
    path = write(
        tmp_path / "lerc.tif", random_bands(dtype, count), compress=compress, max_z_error=0
    )
    spec = check_file(path)
    expected = {"lerc": 0, "lerc_deflate": 1, "lerc_zstd": 2}[compress]
    assert spec.lerc_parameters is not None and spec.lerc_parameters[1] == expected


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lerc_float_nan_masks(tmp_path, partial, dtype):
    data = random_bands(dtype, 3)
    data[:, 5:40, 7:60] = np.nan  # every sample of these pixels: one mask
    if partial:
        data[1, 150:160, 200:290] = np.nan  # one sample only: one mask per band
    path = write(tmp_path / "lercnan.tif", data, compress="lerc_zstd", max_z_error=0)
    check_file(path)


def test_lerc_uint8_alpha_mask(tmp_path):
    data = random_bands("uint8", 4)
    data[3] = 255
    data[3, 20:90, 30:200] = 0
    path = write(tmp_path / "lerca.tif", data, compress="lerc", photometric="RGB", alpha="YES")
    check_file(path)


@pytest.mark.parametrize("compress", ["deflate", "lerc_deflate", "webp"])
def test_cog_driver(tmp_path, compress):
    data = random_bands("uint8", 3) // 8 * 8
    options = {"predictor": 2} if compress == "deflate" else {}
    if compress == "webp":
        options = {"quality": 100}
    path = write(tmp_path / "cog.tif", data, driver="COG", compress=compress, **options)
    check_file(path)


def test_packbits_predictor_is_ignored_like_libtiff(tmp_path):
    data = random_bands("uint16", 1)[0] % 50
    path = tmp_path / "pbp.tif"
    tifffile.imwrite(path, data, tile=(BLOCK, BLOCK), compression="packbits", predictor=True)
    spec = check_file(path)
    assert spec.predictor == 2 and spec.compression == 32773


@pytest.mark.parametrize(
    "compression,encode",
    [
        (34712, lambda a: imagecodecs.jpeg2k_encode(a, level=0, reversible=True)),
        (50002, lambda a: imagecodecs.jpegxl_encode(a, lossless=True)),
    ],
)
@pytest.mark.parametrize("dtype,samples", [("uint8", 3), ("uint16", 1)])
def test_jpeg2000_and_jpegxl_tiles(compression, encode, dtype, samples):
    # GDAL cannot write these in GTiff here: round-trip imagecodecs-encoded tiles instead
    if compression not in DECODABLE_COMPRESSIONS:
        pytest.fail(f"imagecodecs lacks compression {compression}")
    tile = random_bands(dtype, 1, shape=(64, 64 * samples))[0].reshape(64, 64, samples)
    tile = tile // 4 if dtype == "uint16" else tile
    spec = DecodeSpec(compression, 1, dtype, 64, 64, samples, 2 if samples == 3 else 1)
    source = tile if samples > 1 else tile[:, :, 0]
    np.testing.assert_array_equal(decode_tile(encode(source), spec), tile)


def test_from_metadata_planar_and_defaults():
    md = {
        "compression": 8,
        "predictor": None,
        "dtype": ">u2",
        "tile_width": 256,
        "tile_height": 512,
        "samples_per_pixel": 4,
        "planar_configuration": 2,
        "photometric": None,
        "jpeg_tables": None,
        "lerc_parameters": [4, 1],
        "nodata": -9999,
        "image_width": 1000,
        "image_height": 600,
        "transform": [10.0, 0.0, 0.0, 0.0, -10.0, 0.0],
        "tile_offsets": list(range(8, 16)),  # the record's plane: 2 x 4 tiles
        "tile_byte_counts": [1] * 8,
    }
    spec = DecodeSpec.from_metadata(CogMetadata.from_struct(md))
    assert spec == DecodeSpec(8, 1, ">u2", 256, 512, 1, 1, None, (4, 1), -9999.0)
    assert spec.shape == (512, 256, 1)
    chunky = CogMetadata.from_struct({**md, "planar_configuration": 1})
    assert DecodeSpec.from_metadata(chunky).samples == 4
    with pytest.raises(MetadataError, match="lacks tile_width"):
        CogMetadata.from_struct({**md, "tile_width": None})
    with pytest.raises(DecodeError, match="unsupported sample dtype"):
        DecodeSpec.from_metadata(CogMetadata.from_struct({**md, "dtype": "complex64"}))


def test_spec_pickles_small():
    spec = DecodeSpec(50000, 2, "uint16", 512, 512, 3, 2, None, (4, 2), 0.0)
    dumped = pickle.dumps(spec)
    assert len(dumped) < 400
    assert pickle.loads(dumped) == spec
    with pytest.raises(AttributeError):
        spec.predictor = 1  # type: ignore[misc]


def test_invalid_spec_raises():
    with pytest.raises(DecodeError):
        DecodeSpec(1, 1, "complex64", 16, 16, 1, 1)
    with pytest.raises(DecodeError):
        DecodeSpec(1, 1, "uint8", 0, 16, 1, 1)
    with pytest.raises(DecodeError):
        DecodeSpec(1, 1, "not-a-dtype", 16, 16, 1, 1)
    with pytest.raises(DecodeError):
        DecodeSpec(1, 1, "uint8", 16, 16, 0, 1)


@pytest.mark.parametrize("compression", [5, 7, 8, 32773, 32946, 34887, 34925, 50000, 50001])
def test_corrupt_bytes_raise_decode_error(compression):
    spec = DecodeSpec(compression, 1, "uint8", 64, 64, 1, 1, lerc_parameters=(4, 0))
    with pytest.raises(DecodeError):
        decode_tile(b"\x00\x01garbage" * 7, spec)


def test_truncated_and_unsupported_raise_decode_error(tmp_path):
    spec = DecodeSpec(1, 1, "uint16", 64, 64, 1, 1)
    with pytest.raises(DecodeError, match="expected 8192"):
        decode_tile(b"\x00" * 100, spec)
    with pytest.raises(DecodeError, match="compression 6 .old-style JPEG"):
        decode_tile(b"\x00" * 100, DecodeSpec(6, 1, "uint8", 16, 16, 1, 1))
    path = write(tmp_path / "t.tif", random_bands("uint16", 1), compress="zstd", predictor=2)
    spec, tiles = tiles_of(path)
    with pytest.raises(DecodeError):
        decode_tile(tiles[0][3][: len(tiles[0][3]) // 2], spec)
    with pytest.raises(DecodeError, match="predictor 7"):
        decode_tile(tiles[0][3], DecodeSpec(50000, 7, "uint16", 128, 128, 1, 1))
    with pytest.raises(DecodeError, match="floating-point"):
        decode_tile(tiles[0][3], DecodeSpec(50000, 3, "uint16", 128, 128, 1, 1))


def test_wrong_size_or_type_raise_decode_error():
    small = np.arange(100, dtype=np.uint8)
    with pytest.raises(DecodeError, match="decoded to 100 bytes"):
        decode_tile(
            imagecodecs.zlib_encode(small.tobytes()), DecodeSpec(8, 1, "uint8", 16, 16, 1, 1)
        )
    webp = imagecodecs.webp_encode(np.zeros((32, 32, 3), np.uint8), lossless=True)
    with pytest.raises(DecodeError, match="shape"):
        decode_tile(webp, DecodeSpec(50001, 1, "uint8", 64, 64, 3, 2))
    lerc = imagecodecs.lerc_encode(np.zeros((16, 16), np.uint16), level=0.0)
    with pytest.raises(DecodeError, match="float32"):
        decode_tile(lerc, DecodeSpec(34887, 1, "float32", 16, 16, 1, 1, None, (4, 0)))
    with pytest.raises(DecodeError, match="additional compression"):
        decode_tile(lerc, DecodeSpec(34887, 1, "uint16", 16, 16, 1, 1, None, (4, 9)))


def test_memoryview_input_and_threads(tmp_path):
    path = write(tmp_path / "mt.tif", random_bands("int16", 2), compress="deflate", predictor=2)
    spec, tiles = tiles_of(path)
    serial = [decode_tile(memoryview(t[3]), spec) for t in tiles]
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(lambda t: decode_tile(t[3], spec), tiles))
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "dtype,count,options",
    [
        ("uint16", 1, {"compress": "deflate", "predictor": 2}),
        ("int32", 2, {"compress": "lzw", "predictor": 2, "endianness": "BIG"}),
        ("float32", 1, {"compress": "zstd", "predictor": 3}),
        ("uint8", 3, {"compress": "webp", "webp_lossless": True}),
    ],
)
def test_decode_into_out(tmp_path, dtype, count, options):
    """``out=`` receives exactly the tile ``decode_tile`` would allocate, and is returned."""
    path = write(tmp_path / "out.tif", random_bands(dtype, count), **options)
    spec, tiles = tiles_of(path)
    out = np.full(spec.shape, 7, np.dtype(spec.dtype).newbyteorder("="))
    for tile in tiles:
        got = decode_tile(tile[3], spec, out)
        assert got is out
        np.testing.assert_array_equal(out, decode_tile(tile[3], spec))
    sparse = decode_tile(b"", spec, out)
    assert sparse is out and not out.any()
    with pytest.raises(ValueError, match="out must be"):
        decode_tile(tiles[0][3], spec, np.empty((2, 2, 1), out.dtype))
    with pytest.raises(ValueError, match="out must be"):
        decode_tile(tiles[0][3], spec, np.empty(spec.shape, np.float64))


def test_every_header_compression_is_decodable():
    assert set(SUPPORTED_COMPRESSIONS) <= DECODABLE_COMPRESSIONS


@pytest.mark.parametrize(
    "dtype,count,options",
    [
        ("int32", 2, {"endianness": "BIG", "predictor": 2, "interleave": "band"}),
        ("float32", 3, {"compress": "lerc_zstd", "max_z_error": 0}),
        ("uint16", 1, {"sparse_ok": True, "nodata": 0, "predictor": 2}),
    ],
)
def test_spec_from_tiff_layer_metadata(tmp_path, dtype, count, options):
    """The tiff layer's ``{band}_metadata`` drives the decoder to rasterio's pixels."""
    data = random_bands(dtype, count)
    if options.get("sparse_ok"):
        data[:, :BLOCK, :BLOCK] = 0
    options = {"compress": "deflate", **options}
    path = write(tmp_path / "hdr.tif", data, **options)
    raw = path.read_bytes()
    header = read_tiff_header(lambda ranges: [raw[a:b] for a, b in ranges])
    with rasterio.open(path) as src:
        for band in range(count if options.get("interleave") == "band" else 1):
            md = header.to_metadata(band)
            spec = DecodeSpec.from_metadata(CogMetadata.from_struct(md))
            across = -(-md["image_width"] // spec.tile_width)
            for index, (offset, size) in enumerate(
                zip(md["tile_offsets"], md["tile_byte_counts"], strict=True)
            ):
                row, col = divmod(index, across)
                tile = decode_tile(raw[offset : offset + size], spec)
                rows = min(BLOCK, HEIGHT - row * BLOCK)
                cols = min(BLOCK, WIDTH - col * BLOCK)
                window = Window(col * BLOCK, row * BLOCK, cols, rows)
                bands = [band + 1] if spec.samples == 1 else None
                expected = src.read(bands, window=window).transpose(1, 2, 0)
                np.testing.assert_array_equal(tile[:rows, :cols], expected)


def test_jpeg_ycbcr_with_gdals_decoder_equals_rasterio(tmp_path):
    """The GDAL decoder (dask config ``rasteret_dask.ycbcr_jpeg = "gdal"``) gives rasterio's
    values where libjpeg-turbo's chroma upsampling does not."""
    path = write(tmp_path / "jycc.tif", smooth_bands(3), compress="jpeg", photometric="YCBCR")
    header = read_tiff_header(lambda ranges: [path.read_bytes()[a:b] for a, b in ranges])
    md = CogMetadata.from_struct(header.to_metadata())
    spec = DecodeSpec.from_metadata(md, "gdal")
    assert spec.gdal_jpeg and not DecodeSpec.from_metadata(md).gdal_jpeg
    assert pickle.loads(pickle.dumps(spec)) == spec
    data = path.read_bytes()
    with rasterio.open(path) as src:
        for row in range(md.tiles_down):
            for col in range(md.tiles_across):
                start, end = md.tile_range(md.tile_index(row, col))
                window = Window(col * BLOCK, row * BLOCK, BLOCK, BLOCK)
                want = src.read(window=window, boundless=True).transpose(1, 2, 0)
                got = decode_tile(data[start:end], spec)
                h, w = min(BLOCK, HEIGHT - row * BLOCK), min(BLOCK, WIDTH - col * BLOCK)
                assert np.array_equal(got[:h, :w], want[:h, :w])
    with pytest.raises(DecodeError, match="JPEG tile is 16 x 8 x 3, expected 128 x 128"):
        tile = imagecodecs.jpeg8_encode(np.zeros((8, 16, 3), np.uint8), colorspace="YCbCr")
        decode_tile(tile, replace(spec, jpeg_tables=None))
    with pytest.raises(ValueError, match="must be one of"):
        DecodeSpec.from_metadata(md, "libjpeg-9")


def _strip_tiles(path: Path):
    """(spec, [(strip bytes, rows it holds)]) of a striped single-band file."""
    data = path.read_bytes()
    header = read_tiff_header(lambda ranges: [data[a:b] for a, b in ranges])
    md = CogMetadata.from_struct(header.to_metadata())
    spec = DecodeSpec.from_metadata(md)
    strips = []
    for k in range(md.tiles_down):
        start, end = md.tile_range(k)
        strips.append((data[start:end], min(md.tile_height, md.image_height - k * md.tile_height)))
    return spec, strips


@pytest.mark.parametrize("compress", [None, "deflate", "lzw", "packbits", "zstd"])
def test_a_short_last_strip_decodes_into_the_top_of_the_tile(tmp_path, compress):
    from rasteret_dask.testing.cogs import write_strip_tiff

    path = write_strip_tiff(tmp_path / "s.tif", width=123, height=47, dtype="uint16",
                            compress=compress, rows_per_strip=10)
    spec, strips = _strip_tiles(path)
    assert (spec.tile_width, spec.tile_height, spec.short_rows) == (123, 10, 7)
    with rasterio.open(path) as src:
        want = src.read(1)
    got = np.concatenate([decode_tile(d, spec)[:rows, :, 0] for d, rows in strips])
    assert np.array_equal(got, want)
    assert (decode_tile(strips[-1][0], spec)[7:] == 0).all()  # below the image: filled
    if compress is None:  # a full strip cut short is not taken for the last one
        with pytest.raises(DecodeError, match="expected 2460 .or 1722 for the last strip"):
            decode_tile(strips[0][0][:2000], spec)


@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("compress", [None, "deflate", "packbits"])
def test_sub_byte_samples_unpack_like_gdal(tmp_path, nbits, compress):
    """NBITS=1/2/4 files (rows padded to whole bytes) read as rasterio gives them: uint8."""
    from rasteret_dask.testing.cogs import write_strip_tiff

    values = (np.arange(37 * 29).reshape(1, 29, 37) * 7 % (1 << nbits)).astype(np.uint8)
    path = write_strip_tiff(tmp_path / "b.tif", data=values, compress=compress,
                            rows_per_strip=8, NBITS=nbits)
    spec, strips = _strip_tiles(path)
    assert spec.bits_per_sample == nbits and spec.row_bytes == -(-37 * nbits // 8)
    got = np.concatenate([decode_tile(d, spec)[:rows, :, 0] for d, rows in strips])
    with rasterio.open(path) as src:
        assert np.array_equal(got, src.read(1))
    with pytest.raises(DecodeError, match="predictor 2 with"):
        decode_tile(strips[0][0], replace(spec, predictor=2, compression=8))
    with pytest.raises(DecodeError, match="cannot hold 1-bit samples"):
        decode_tile(b"\xff\xd8", replace(spec, compression=7, bits_per_sample=1))
