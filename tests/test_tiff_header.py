"""The sans-I/O TIFF header parser against GDAL (rasterio) and tifffile, over many COG flavours."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import tifffile
from affine import Affine

from rasteret_dask import schema
from rasteret_dask.testing.cogs import (
    S2_BLOCKSIZE,
    S2_SIZE,
    S2_TRANSFORM,
    write_cog,
    write_s2_like_cog,
    write_strip_tiff,
)
from rasteret_dask.tiff import (
    IFD_READAHEAD,
    SUPPORTED_COMPRESSIONS,
    NeedBytes,
    SparseBuffer,
    TiffError,
    merge_ranges,
    parse_tiff_header,
    read_tiff_header,
)

NAN = float("nan")


class FileReader:
    """A ``read_ranges`` callable over a local file that records every call."""

    def __init__(self, path: Path) -> None:
        self.data = Path(path).read_bytes()
        self.calls: list[list[tuple[int, int]]] = []

    def __call__(self, ranges):
        self.calls.append(list(ranges))
        return [self.data[a:b] for a, b in ranges]


FLAVOURS = {
    "none-uint8": dict(compress=None, dtype="uint8", width=300, height=400),
    "deflate-uint16": dict(width=520, height=330),
    "deflate-uint16-nodata0": dict(width=350, height=301, nodata=0),
    "lzw-int16-pred2": dict(compress="lzw", predictor=2, dtype="int16", width=333, height=444),
    "zstd-uint32": dict(compress="zstd", dtype="uint32", width=400, height=300),
    "deflate-int32-pred2": dict(dtype="int32", predictor=2, width=301, height=377, nodata=-1),
    "deflate-int8": dict(dtype="int8", width=310, height=290, nodata=-128),
    "float32-pred3-nan": dict(dtype="float32", predictor=3, width=345, height=456, nodata=NAN),
    "float64-pred3-zstd": dict(
        dtype="float64", predictor=3, compress="zstd", width=300, height=300, nodata=-9999.0
    ),
    "uint64": dict(dtype="uint64", compress="zstd", width=300, height=320),
    "int64-nodata": dict(dtype="int64", width=320, height=300, nodata=-1),
    "jpeg-gray": dict(compress="jpeg", dtype="uint8", width=500, height=300),
    "jpeg-rgb-cog": dict(compress="jpeg", dtype="uint8", count=3, width=400, height=380),
    "jpeg-ycbcr-gtiff": dict(
        compress="jpeg", dtype="uint8", count=3, photometric="YCBCR", width=400, height=330
    ),
    "chunky-4": dict(count=4, width=300, height=310),
    "rgba-alpha": dict(count=4, dtype="uint8", photometric="RGB", ALPHA="YES", width=300),
    "planar-4-lzw": dict(interleave="band", count=4, compress="lzw", width=300, height=500),
    "planar-1": dict(interleave="band", count=1, width=333, height=333),
    "bigtiff": dict(bigtiff=True, width=300, height=420),
    "bigtiff-planar-big-endian": dict(
        bigtiff=True, interleave="band", count=2, endianness="big", width=310, height=300
    ),
    "big-endian-uint16-pred2": dict(endianness="big", predictor=2, width=300, height=600),
    "big-endian-float32-nan": dict(
        endianness="big", dtype="float32", predictor=3, nodata=NAN, width=300, height=300
    ),
    "big-endian-uint8": dict(endianness="big", dtype="uint8", width=300, height=300),
    "tiles-512": dict(blocksize=512, width=600, height=550),
    "tiles-1024": dict(blocksize=1024, width=1100, height=500),
    "epsg4326": dict(crs="EPSG:4326", nodata=0, width=360, height=300),
    "no-overviews": dict(overviews=False, width=600, height=600),
    "lerc-float32": dict(compress="lerc", dtype="float32", width=300, height=300),
    "lerc-zstd": dict(compress="lerc_zstd", dtype="float32", MAX_Z_ERROR=0.01, width=300),
    "packbits": dict(compress="packbits", width=300, height=300),
    "lzma": dict(compress="lzma", width=300, height=300),
    "webp-rgb": dict(compress="webp", dtype="uint8", count=3, width=300, height=300),
}


def _reduced_pages(tif: tifffile.TiffFile) -> list[tifffile.TiffPage]:
    return [p for p in tif.pages[1:] if p.subfiletype & 1 and not p.subfiletype & 4]


def _same_nodata(ours: float | None, theirs: float | None) -> bool:
    if ours is None or theirs is None:
        return ours is theirs
    if math.isnan(theirs):
        return math.isnan(ours)
    return ours == theirs


@pytest.mark.parametrize("flavour", list(FLAVOURS), ids=list(FLAVOURS))
def test_header_matches_gdal_and_tifffile(flavour: str, tmp_path: Path) -> None:
    path = write_cog(tmp_path / f"{flavour}.tif", **FLAVOURS[flavour])
    reader = FileReader(path)
    header = read_tiff_header(reader)
    assert len(reader.calls) <= 2  # small files: the prefix holds everything (GTiff: + chain)
    meta = header.to_metadata()
    assert tuple(meta) == schema.METADATA_FIELDS
    pa.array([meta], type=schema.METADATA_TYPE)  # values fit the Arrow contract

    with rasterio.open(path) as src:
        assert (meta["image_width"], meta["image_height"]) == (src.width, src.height)
        assert src.block_shapes[0] == (meta["tile_height"], meta["tile_width"])
        ours = np.dtype(meta["dtype"])
        assert ours.newbyteorder("=") == np.dtype(src.dtypes[0])
        assert meta["samples_per_pixel"] == src.count
        assert Affine(*meta["transform"]).almost_equals(src.transform, precision=1e-9)
        assert meta["crs_epsg"] == src.crs.to_epsg()
        assert _same_nodata(meta["nodata"], src.nodata)
        assert len(meta["overviews"]) == len(src.overviews(1))

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        big_endian = tif.byteorder == ">"
        assert header.big_endian is big_endian
        assert header.bigtiff is tif.is_bigtiff
        if big_endian and ours.itemsize > 1:
            assert meta["dtype"].startswith(">")
        else:
            assert meta["dtype"] == ours.name
        assert list(header.tile_offsets) == list(page.dataoffsets)
        assert list(header.tile_byte_counts) == list(page.databytecounts)
        assert (meta["tile_width"], meta["tile_height"]) == (page.tilewidth, page.tilelength)
        assert meta["compression"] == int(page.compression)
        assert meta["compression"] in SUPPORTED_COMPRESSIONS
        assert meta["predictor"] == int(page.predictor)
        assert meta["planar_configuration"] == int(page.planarconfig)
        assert meta["photometric"] == int(page.photometric)
        assert meta["extra_samples"] == [int(v) for v in page.extrasamples]
        reduced = _reduced_pages(tif)
        assert [(o["height"], o["width"]) for o in meta["overviews"]] == [
            (p.imagelength, p.imagewidth) for p in reduced
        ]
        assert [(o["tile_height"], o["tile_width"]) for o in meta["overviews"]] == [
            (p.tilelength, p.tilewidth) for p in reduced
        ]
        assert meta["pixel_scale"] == list(page.tags["ModelPixelScaleTag"].value)
        assert meta["tiepoint"] == list(page.tags["ModelTiepointTag"].value)
        if meta["compression"] == 7:
            assert meta["jpeg_tables"] == page.jpegtables
        else:
            assert meta["jpeg_tables"] is None
        if meta["compression"] == 34887:
            assert meta["lerc_parameters"] == list(page.tags[50674].value)
        else:
            assert meta["lerc_parameters"] is None
        if header.planar_configuration == 2:
            n = len(page.dataoffsets) // header.samples_per_pixel
            for band in range(header.samples_per_pixel):
                band_meta = header.to_metadata(band)
                assert band_meta["tile_offsets"] == list(
                    page.dataoffsets[band * n : (band + 1) * n]
                )
                assert band_meta["tile_byte_counts"] == list(
                    page.databytecounts[band * n : (band + 1) * n]
                )
        else:
            for band in range(header.samples_per_pixel):
                assert header.to_metadata(band)["tile_offsets"] == list(page.dataoffsets)
    assert 0 < meta["header_bytes"] <= path.stat().st_size


def test_band_index_out_of_range(tmp_path: Path) -> None:
    path = write_cog(tmp_path / "planar.tif", interleave="band", count=2, width=300, height=300)
    header = read_tiff_header(FileReader(path))
    with pytest.raises(TiffError, match="band_index 2 out of range.*2 sample"):
        header.to_metadata(2)
    with pytest.raises(TiffError, match="out of range"):
        header.to_metadata(-1)


@pytest.fixture(scope="module")
def s2_cog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_s2_like_cog(tmp_path_factory.mktemp("s2") / "B04.tif")


def test_s2_like_cog_needs_one_read(s2_cog: Path) -> None:
    reader = FileReader(s2_cog)
    header = read_tiff_header(reader)
    assert reader.calls == [[(0, 65536)]]
    meta = header.to_metadata()
    assert (meta["image_width"], meta["image_height"]) == (S2_SIZE, S2_SIZE)
    assert (meta["tile_width"], meta["tile_height"]) == (S2_BLOCKSIZE, S2_BLOCKSIZE)
    assert (meta["dtype"], meta["compression"], meta["predictor"]) == ("uint16", 8, 2)
    assert meta["crs_epsg"] == 32633
    assert tuple(meta["transform"]) == S2_TRANSFORM
    assert len(meta["tile_offsets"]) == 11 * 11
    assert meta["header_bytes"] < 65536
    with rasterio.open(s2_cog) as src:
        assert len(meta["overviews"]) == len(src.overviews(1)) == 4
    with tifffile.TiffFile(s2_cog) as tif:
        assert list(header.tile_offsets) == list(tif.pages[0].dataoffsets)
        assert [(o["width"], o["height"]) for o in meta["overviews"]] == [
            (p.imagewidth, p.imagelength) for p in _reduced_pages(tif)
        ]


def _drive(
    data: bytes, prefix: int, readahead: int = IFD_READAHEAD
) -> tuple[object, list[list[tuple[int, int]]]]:
    """Drive the parser by hand, checking every NeedBytes asks only for bytes not held."""
    buf = SparseBuffer()
    buf.add(0, data[:prefix], requested=prefix)
    rounds: list[list[tuple[int, int]]] = []
    while True:
        try:
            return parse_tiff_header(buf, readahead=readahead), rounds
        except NeedBytes as need:
            ranges = list(need.ranges)
            assert ranges == merge_ranges(ranges)
            for start, end in ranges:
                assert buf.missing(start, end) == [(start, end)]  # nothing already held
                assert end <= len(data) or buf.eof is None
            rounds.append(ranges)
            for start, end in ranges:
                buf.add(start, data[start:end], requested=end - start)
            assert len(rounds) < 10


def test_tiny_prefix_few_rounds_exact_ranges(tmp_path: Path) -> None:
    path = write_cog(tmp_path / "cog.tif", width=600, height=600, blocksize=256)
    data = path.read_bytes()
    header, rounds = _drive(data, 16)
    assert 1 <= len(rounds) <= 3
    reader = FileReader(path)
    assert read_tiff_header(reader, prefix_size=16) == header
    assert reader.calls == [[(0, 16)], *rounds]
    assert header == read_tiff_header(FileReader(path))
    assert len(header.overviews) == 2
    # without read-ahead: only bytes known to be needed, never past the end, more rounds
    exact, exact_rounds = _drive(data, 16, readahead=0)
    assert exact == header and len(rounds) < len(exact_rounds) <= 6
    assert all(end <= header.header_bytes for r in exact_rounds for _, end in r)


def test_ifd_at_end_of_file(tmp_path: Path) -> None:
    # endianness= selects the GTiff driver, whose IFD the r+ update moves to the end
    path = write_cog(
        tmp_path / "gtiff.tif", width=400, height=300, endianness="little", overviews=False
    )
    with rasterio.open(path, "r+") as dst:  # libtiff rewrites the directory at the end
        dst.update_tags(NOTE="x" * 200)
        dst.nodata = 7
    with tifffile.TiffFile(path) as tif:
        ifd_offset = tif.pages[0].offset
        offsets = list(tif.pages[0].dataoffsets)
    size = path.stat().st_size
    assert ifd_offset > 4096
    reader = FileReader(path)
    header = read_tiff_header(reader, prefix_size=1024)
    assert len(reader.calls) == 2
    (second,) = reader.calls[1]
    assert second == (ifd_offset, ifd_offset + IFD_READAHEAD)  # entry count not yet known
    assert ifd_offset + IFD_READAHEAD > size  # the short answer told the parser where EOF is
    assert list(header.tile_offsets) == offsets
    assert header.nodata == 7.0
    assert header.header_bytes > ifd_offset


def test_gtiff_overviews_after_data(tmp_path: Path) -> None:
    path = write_cog(tmp_path / "ov.tif", interleave="band", count=1, width=1100, height=900)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[1].offset > tif.pages[0].dataoffsets[-1]  # not a COG layout
        sizes = [(p.imagewidth, p.imagelength) for p in _reduced_pages(tif)]
    header, rounds = _drive(path.read_bytes(), 512)
    assert [(o.width, o.height) for o in header.overviews] == sizes
    assert len(sizes) == 3 and len(rounds) <= 3


UTM = Affine(10, 0, 500000, 0, -10, 5000000)


def _gtiff(path: Path, size: int, transform: Affine):
    """A square uint8 tiled GTiff opened for writing with rasterio."""
    return rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
        tiled=True, blockxsize=256, blockysize=256, crs="EPSG:32633", transform=transform,
    )  # fmt: skip


def test_mask_ifds_are_not_overviews(tmp_path: Path) -> None:
    path = tmp_path / "mask.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), _gtiff(path, 600, UTM) as dst:
        dst.write(np.ones((1, 600, 600), "uint8"))
        dst.write_mask(np.full((600, 600), 255, "uint8"))
        dst.build_overviews([2, 4])
    with tifffile.TiffFile(path) as tif:
        assert sum(bool(p.subfiletype & 4) for p in tif.pages) == 3
    header = read_tiff_header(FileReader(path))
    assert [(o.width, o.height) for o in header.overviews] == [(300, 300), (150, 150)]
    # they are the image's and each overview's masks (tests/test_tiff_masks.py)
    assert header.mask is not None and [o.mask.width for o in header.overviews] == [300, 150]


@pytest.mark.parametrize("rotated", [False, True])
def test_pixel_is_point_shift(tmp_path: Path, rotated: bool) -> None:
    transform = Affine(10, 2, 500000, 1.5, -10, 5000000) if rotated else UTM
    path = tmp_path / "point.tif"
    with _gtiff(path, 300, transform) as dst:
        dst.update_tags(AREA_OR_POINT="Point")
        dst.write(np.ones((1, 300, 300), "uint8"))
    header = read_tiff_header(FileReader(path))
    assert header.geo_keys[1025] == 2
    with rasterio.open(path) as src:
        assert Affine(*header.transform).almost_equals(src.transform, precision=1e-9)
    if rotated:
        assert header.model_transformation is not None and header.tiepoint is None
    else:
        assert header.tiepoint[3:5] == (500005.0, 4999995.0)  # raw, unshifted point


def test_float16_tifffile(tmp_path: Path) -> None:
    data = np.linspace(0, 1, 300 * 280, dtype=np.float16).reshape(300, 280)
    for order, expected in (("<", "float16"), (">", ">f2")):
        path = tmp_path / f"f16{order == '>'}.tif"
        tifffile.imwrite(path, data, tile=(256, 256), byteorder=order, compression="zlib")
        header = read_tiff_header(FileReader(path))
        assert header.dtype == expected
        assert header.transform is None and header.crs_epsg is None
        assert header.to_metadata()["transform"] is None
        with tifffile.TiffFile(path) as tif:
            assert list(header.tile_offsets) == list(tif.pages[0].dataoffsets)


@pytest.mark.parametrize("options", [
    {},  # deflate, GDAL's rows per strip, a short last strip
    {"compress": None, "dtype": "int16", "rows_per_strip": 7},
    {"count": 3, "interleave": "band", "dtype": "float32", "rows_per_strip": 11},
    {"rows_per_strip": 5000},  # one strip holds the image
])
def test_strips_read_as_tiles_of_the_full_width(tmp_path: Path, options) -> None:
    """A striped image is a column of tiles: full width, RowsPerStrip rows (at most the
    image's), the strip tables as tile tables (per plane for planar files)."""
    path = write_strip_tiff(tmp_path / "strips.tif", width=301, height=203, **options)
    header = read_tiff_header(FileReader(path))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        rows = page.tags["RowsPerStrip"].value
        assert not page.is_tiled
        assert list(header.tile_offsets) == list(page.dataoffsets)
        assert list(header.tile_byte_counts) == list(page.databytecounts)
    assert header.striped and header.tile_width == 301
    assert header.tile_height == min(rows, 203)
    metadata = header.to_metadata(header.samples_per_pixel - 1)
    assert metadata["striped"] is True and metadata["tile_width"] == 301
    assert len(metadata["tile_offsets"]) == -(-203 // header.tile_height)


def test_an_image_without_tile_or_strip_offsets_is_refused(tmp_path: Path) -> None:
    path = write_strip_tiff(tmp_path / "strips.tif")
    with tifffile.TiffFile(path) as tif:
        entry_at = tif.pages[0].tags[273].offset  # StripOffsets entry: tag, type, ...
    raw = bytearray(path.read_bytes())
    raw[entry_at : entry_at + 2] = struct.pack("<H", 999)  # now an unknown private tag
    path.write_bytes(bytes(raw))
    with pytest.raises(TiffError, match="without TileOffsets or StripOffsets"):
        read_tiff_header(FileReader(path))


def test_garbage_rejected() -> None:
    junk = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    junk = b"XY" + junk
    with pytest.raises(TiffError, match="not a TIFF"):
        read_tiff_header(lambda ranges: [junk[a:b] for a, b in ranges])
    with pytest.raises(TiffError, match="not a TIFF"):
        read_tiff_header(lambda ranges: [b"II*"[a:b] for a, b in ranges])
    bad_magic = b"II\x07\x00" + bytes(100)
    with pytest.raises(TiffError, match="magic"):
        read_tiff_header(lambda ranges: [bad_magic[a:b] for a, b in ranges])


def test_truncated_file_rejected(tmp_path: Path) -> None:
    path = write_cog(tmp_path / "cog.tif", width=600, height=600)
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        ifd_offset = tif.pages[0].offset
        values_at = tif.pages[0].tags[324].valueoffset  # TileOffsets array, after the IFD
    for cut in (ifd_offset + 1, ifd_offset + 40, 100, values_at + 4):
        short = data[:cut]
        with pytest.raises(TiffError, match="truncated"):
            read_tiff_header(lambda ranges, s=short: [s[a:b] for a, b in ranges])
    buf = SparseBuffer()
    buf.add(0, data[: ifd_offset + 40], requested=65536)
    with pytest.raises(TiffError, match=r"truncated TIFF: IFD at offset \d+ ends at byte"):
        parse_tiff_header(buf)
    buf = SparseBuffer(eof=values_at + 4)
    buf.add(0, data[: values_at + 4])
    with pytest.raises(TiffError, match=rf"truncated TIFF: needs bytes \[{values_at}, "):
        parse_tiff_header(buf)


def _patch_tag(path: Path, tag: int, value: int) -> None:
    with tifffile.TiffFile(path) as tif:
        entry = tif.pages[0].tags[tag]
        at, order = entry.valueoffset, tif.byteorder
    raw = bytearray(path.read_bytes())
    raw[at : at + 2] = struct.pack(order + "H", value)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("code,name", [(12345, "unknown"), (6, "old-style JPEG")])
def test_unknown_compression_rejected(tmp_path: Path, code: int, name: str) -> None:
    path = write_cog(tmp_path / "cog.tif", width=300, height=300)
    _patch_tag(path, 259, code)
    with pytest.raises(TiffError, match=rf"unsupported compression {code} \({name}\)"):
        read_tiff_header(FileReader(path))


def test_bad_tag_type_rejected(tmp_path: Path) -> None:
    path = write_cog(tmp_path / "cog.tif", width=300, height=300)
    with tifffile.TiffFile(path) as tif:
        entry_at = tif.pages[0].tags[324].offset  # TileOffsets entry: tag, type, ...
    raw = bytearray(path.read_bytes())
    raw[entry_at + 2 : entry_at + 4] = struct.pack("<H", 2)  # ASCII
    path.write_bytes(bytes(raw))
    with pytest.raises(TiffError, match="tag 324 has field type ASCII"):
        read_tiff_header(FileReader(path))
    raw[entry_at + 2 : entry_at + 4] = struct.pack("<H", 99)
    path.write_bytes(bytes(raw))
    with pytest.raises(TiffError, match="tag 324 has unknown field type 99"):
        read_tiff_header(FileReader(path))


def test_unsupported_sample_type_rejected(tmp_path: Path) -> None:
    path = tmp_path / "complex.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.complex64), tile=(32, 32))
    with pytest.raises(TiffError, match="SampleFormat 6"):
        read_tiff_header(FileReader(path))


def test_sparse_buffer() -> None:
    buf = SparseBuffer()
    buf.add(10, b"abcde")
    buf.add(30, b"xyz")
    assert buf.read(11, 3) == b"bcd"
    with pytest.raises(NeedBytes) as info:
        buf.read(8, 30)
    assert info.value.ranges == ((8, 10), (15, 30), (33, 38))
    buf.add(15, b"0" * 15)  # touches both neighbours: one segment
    assert buf.segments == [(10, 33)]
    buf.add(12, b"ZZ")  # overwrite inside
    assert buf.read(10, 6) == b"abZZe0"
    buf.add(5, b"-" * 7)  # overlaps the start
    assert buf.segments == [(5, 33)] and buf.read(10, 3) == b"--Z"
    assert buf.missing(0, 40) == [(0, 5), (33, 40)]
    assert buf.eof is None
    buf.add(40, b"12", requested=10)
    assert buf.eof == 42
    with pytest.raises(TiffError, match="truncated"):
        buf.read(40, 5)
    assert merge_ranges([(5, 6), (0, 2), (2, 4), (3, 3)]) == [(0, 4), (5, 6)]


def test_read_tiff_header_round_limit(tmp_path: Path) -> None:
    path = write_cog(tmp_path / "cog.tif", width=600, height=600)
    with pytest.raises(TiffError, match="within 1 read rounds"):
        read_tiff_header(FileReader(path), prefix_size=8, max_rounds=1)


def test_overviews_gdal_adds_to_a_striped_file_are_tiled_and_cached(tmp_path: Path) -> None:
    path = write_strip_tiff(tmp_path / "strips.tif", width=700, height=500, dtype="uint16")
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4], rasterio.enums.Resampling.average)
    header = read_tiff_header(FileReader(path))
    assert header.striped and [o.width for o in header.overviews] == [350, 175]
    with tifffile.TiffFile(path) as tif:
        pages = _reduced_pages(tif)
        for overview, page in zip(header.overviews, pages, strict=True):
            assert page.is_tiled and overview.has_tiles
            assert list(overview.tile_offsets) == list(page.dataoffsets)
