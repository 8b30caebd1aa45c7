"""Overview tile tables: read in the header's IFD walk, checked, stored, and loaded from old
indexes that lack them."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import rasterio
import tifffile
from affine import Affine

from rasteret_dask import schema as S
from rasteret_dask.index.normalize import conform_metadata_array
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.tiff import SparseBuffer, read_tiff_header
from rasteret_dask.tiff.buffer import NeedBytes
from rasteret_dask.tiff.cog_metadata import CogMetadata, MetadataError, OverviewLevel
from rasteret_dask.tiff.ifd import IfdReader, read_file_header
from rasteret_dask.tiff.levels import overview_factors
from rasteret_dask.tiff.overviews import Overview, OverviewWalk, ReducedImage, usable_overviews


class FileReader:
    """A ``read_ranges`` callable over a local file that records every call."""

    def __init__(self, path: Path) -> None:
        self.data = Path(path).read_bytes()
        self.calls: list[list[tuple[int, int]]] = []

    def __call__(self, ranges):
        self.calls.append(list(ranges))
        return [self.data[a:b] for a, b in ranges]


def _reduced_pages(path: Path) -> list[tuple[int, int, list[int], list[int]]]:
    """(width, height, offsets, byte counts) of each reduced, non-mask page, per tifffile."""
    with tifffile.TiffFile(path) as tif:
        return [(p.imagewidth, p.imagelength, list(p.dataoffsets), list(p.databytecounts))
                for p in tif.pages if p.subfiletype & 1 and not p.subfiletype & 4]


@pytest.mark.parametrize("options", [
    dict(predictor=2, width=1100, height=700),
    dict(compress="jpeg", dtype="uint8", width=900, height=600),
    dict(compress="jpeg", dtype="uint8", count=3, width=700, height=650),
    dict(compress="zstd", dtype="float32", predictor=3, bigtiff=True, width=800, height=520),
], ids=["deflate-pred2", "jpeg-gray", "jpeg-ycbcr", "bigtiff-zstd-float"])
def test_cog_overview_tables_match_tifffile_and_cost_one_read(tmp_path, options):
    path = write_cog(tmp_path / "cog.tif", blocksize=256, **options)
    reader = FileReader(path)
    header = read_tiff_header(reader)
    assert len(reader.calls) == 1  # the 64 KiB prefix held every IFD and table
    pages = _reduced_pages(path)
    assert len(pages) >= 2
    assert [(o.width, o.height, list(o.tile_offsets), list(o.tile_byte_counts))
            for o in header.overviews] == pages
    metadata = header.to_metadata()
    overviews = pa.array([metadata], type=S.METADATA_TYPE)[0].as_py()["overviews"]
    assert [o["tile_offsets"] for o in overviews] == [p[2] for p in pages]
    md = CogMetadata.from_struct(metadata)
    assert md.has_overview_tiles
    with rasterio.open(path) as src:  # the factors the overview choice works with
        assert list(overview_factors(md.image_width, [o.width for o in md.overviews])) == \
            src.overviews(1)


def test_planar_overviews_store_the_bands_own_plane(tmp_path):
    path = write_cog(tmp_path / "planar.tif", interleave="band", count=3, width=600, height=500)
    header = read_tiff_header(FileReader(path))
    pages = _reduced_pages(path)
    for band in range(3):
        overviews = header.to_metadata(band)["overviews"]
        for overview, (_, _, offsets, counts) in zip(overviews, pages, strict=True):
            n = len(offsets) // 3
            assert overview["tile_offsets"] == offsets[band * n:(band + 1) * n]
            assert overview["tile_byte_counts"] == counts[band * n:(band + 1) * n]


def test_tables_beyond_the_prefix_come_in_the_rounds_the_image_needs(tmp_path):
    # 16-pixel tiles: the image's tables alone outgrow the 64 KiB prefix; GDAL writes every
    # IFD's tables back to back, so one more read (one merged range) brings all of them
    path = write_cog(tmp_path / "many.tif", width=2000, height=1500, blocksize=16,
                     dtype="uint8")
    reader = FileReader(path)
    header = read_tiff_header(reader)
    assert len(reader.calls) == 2 and len(reader.calls[1]) == 1
    assert len(header.tile_offsets) == 125 * 94
    assert all(o.has_tiles for o in header.overviews)
    assert [list(o.tile_offsets) for o in header.overviews] == \
        [p[2] for p in _reduced_pages(path)]


def test_gtiff_overviews_after_the_data_and_masks(tmp_path):
    path = write_cog(tmp_path / "ov.tif", interleave="band", count=1, width=1100, height=900)
    reader = FileReader(path)
    header = read_tiff_header(reader, prefix_size=512)
    assert len(reader.calls) <= 4
    assert [list(o.tile_offsets) for o in header.overviews] == \
        [p[2] for p in _reduced_pages(path)]
    masked = tmp_path / "mask.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(
            masked, "w", driver="GTiff", width=600, height=600, count=1, dtype="uint8",
            tiled=True, blockxsize=256, blockysize=256, crs="EPSG:32633",
            transform=Affine(10, 0, 500000, 0, -10, 5000000)) as dst:
        dst.write(np.ones((1, 600, 600), "uint8"))
        dst.write_mask(np.full((600, 600), 255, "uint8"))
        dst.build_overviews([2, 4])
    header = read_tiff_header(FileReader(masked))
    assert [(o.width, list(o.tile_offsets)) for o in header.overviews] == \
        [(p[0], p[2]) for p in _reduced_pages(masked)]


def test_overviews_with_their_own_codec_are_listed_without_tables(tmp_path):
    path = write_cog(tmp_path / "ovc.tif", width=1000, height=900, overview_compress="LZW")
    header = read_tiff_header(FileReader(path))
    assert len(header.overviews) == 2 and not any(o.has_tiles for o in header.overviews)
    md = CogMetadata.from_struct(header.to_metadata())
    assert not md.has_overview_tiles and md.choose_level(40.0) == 0
    with pytest.raises(MetadataError, match="overview level 1 .* no tile offsets"):
        md.level(1)


# --- the walk's own checks, on hand-made IFD chains ----------------------------------------

def _chain(ifds: list[list[tuple[int, int, list[int]]]]) -> bytes:
    """A classic little-endian TIFF of chained IFDs (tag, type 3/4, values), each IFD followed
    by its out-of-line values."""
    out = bytearray(b"II*\0" + struct.pack("<I", 8))
    links, starts = [], []
    for entries in ifds:
        entries = sorted(entries)
        at = len(out)
        data_at = at + 2 + 12 * len(entries) + 4
        body, extra = b"", b""
        for tag, kind, values in entries:
            raw = struct.pack(f"<{len(values)}{'H' if kind == 3 else 'I'}", *values)
            if len(raw) <= 4:
                field = raw.ljust(4, b"\0")
            else:
                field = struct.pack("<I", data_at + len(extra))
                extra += raw
            body += struct.pack("<HHI", tag, kind, len(values)) + field
        starts.append(at)
        links.append(at + 2 + len(body))
        out += struct.pack("<H", len(entries)) + body + b"\0\0\0\0" + extra
    for link, nxt in zip(links, starts[1:], strict=False):
        struct.pack_into("<I", out, link, nxt)
    return bytes(out)


def _ifd(width: int, height: int, tile: int, offsets: list[int], *, kind: int = 0,
         compression: int = 8) -> list[tuple[int, int, list[int]]]:
    entries = [(256, 4, [width]), (257, 4, [height]), (258, 3, [8]), (259, 3, [compression]),
               (322, 4, [tile]), (323, 4, [tile]), (324, 4, offsets),
               (325, 4, [1] * len(offsets))]
    return entries + ([(254, 4, [kind])] if kind else [])


def _walk(data: bytes, budget: int | None = None) -> list[ReducedImage]:
    buf = SparseBuffer()
    buf.add(0, data, requested=len(data) + 1)
    reader = IfdReader(buf, read_file_header(buf))
    first = reader.ifd(8)
    walk = OverviewWalk(reader)
    if budget is not None:
        walk.budget = budget
    levels, offset = [], first.next_offset
    while offset:
        ifd = reader.ifd(offset)
        level, go_on = walk.read(ifd)
        if level is not None:
            levels.append(level)
        if not go_on:
            break
        offset = ifd.next_offset
    reader.need()
    return levels


def test_walk_reads_tables_within_the_budget_and_skips_bad_counts():
    image = _ifd(64, 64, 16, list(range(16)))
    data = _chain([image, _ifd(32, 32, 16, [1, 2, 3, 4], kind=1),
                   _ifd(16, 16, 16, [9], kind=1), _ifd(8, 8, 16, [7, 7], kind=1)])
    levels = _walk(data)
    assert [lv.overview.tile_offsets for lv in levels] == [(1, 2, 3, 4), (9,), None]
    assert [lv.overview.tile_offsets for lv in _walk(data, budget=4)] == [(1, 2, 3, 4), None, None]
    assert [lv.overview.tile_offsets for lv in _walk(data, budget=3)] == [None, (9,), None]


def test_walk_asks_for_tables_beyond_the_bytes_held():
    data = _chain([_ifd(64, 64, 16, list(range(16))), _ifd(32, 32, 16, [1, 2, 3, 4], kind=1)])
    buf = SparseBuffer()
    second = struct.unpack_from("<I", data, 8 + 2 + 12 * 8)[0]
    values_at = second + 2 + 12 * 9 + 4
    buf.add(0, data[:values_at])
    reader = IfdReader(buf, read_file_header(buf), readahead=0)
    walk = OverviewWalk(reader)
    walk.read(reader.ifd(second))
    with pytest.raises(NeedBytes) as need:
        reader.need()
    assert need.value.ranges == ((values_at, values_at + 32),)


def test_usable_overviews_keep_tables_only_for_levels_read_like_the_image():
    image = {259: (8,), 277: (1,), 258: (16,)}
    same = (8, 1, 1, 1, frozenset({16}), frozenset({1}), (), None, ())
    other = (5, 1, 1, 1, frozenset({16}), frozenset({1}), (), None, ())
    tables = dict(tile_offsets=(10,), tile_byte_counts=(3,))
    levels = [ReducedImage(Overview(50, 50, 64, 64, **tables), same),
              ReducedImage(Overview(200, 50, 256, 256, **tables), same),  # wider than the image
              ReducedImage(Overview(25, 25, 64, 64, **tables), other),
              ReducedImage(Overview(12, 12, 64, 64, (1 << 63,), (3,)), same),
              ReducedImage(Overview(6, 6, 64, 64), same)]
    out = usable_overviews(levels, image, 100, 100)
    assert [(o.width, o.has_tiles) for o in out] == \
        [(200, False), (50, True), (25, False), (12, False), (6, False)]


# --- old indexes: overview structs without the tile tables ---------------------------------

OLD_OVERVIEW = pa.struct([f for f in S.OVERVIEW_TYPE
                          if f.name in ("width", "height", "tile_width", "tile_height")])
OLD_METADATA = pa.struct([pa.field("overviews", pa.list_(OLD_OVERVIEW)) if f.name == "overviews"
                          else f for f in S.METADATA_TYPE])


def _old_struct() -> dict:
    md = {name: None for name in S.METADATA_FIELDS}
    md.update(image_width=512, image_height=512, tile_width=256, tile_height=256,
              dtype="uint16", transform=[10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0],
              tile_offsets=[1, 2, 3, 4], tile_byte_counts=[5, 5, 5, 5],
              overviews=[{"width": 256, "height": 256, "tile_width": 256, "tile_height": 256}])
    return md


def test_old_overview_structs_load_without_tables(tmp_path):
    old = pa.array([_old_struct(), None], type=OLD_METADATA)
    assert OLD_OVERVIEW.names == ["width", "height", "tile_width", "tile_height"]
    for column in (old, conform_metadata_array(old)):
        md, missing = CogMetadata.from_arrow(column)
        assert missing is None
        assert md.overviews == (OverviewLevel(256, 256, 256, 256),)
        assert not md.has_overview_tiles and md.choose_level(20.0) == 0
    assert conform_metadata_array(old).type == S.METADATA_TYPE
    assert CogMetadata.from_struct(_old_struct()).overviews[0].tile_offsets is None
    # an old data file read under the new schema (a version whose other files are newer)
    pq.write_table(pa.table({"B04_metadata": old}), tmp_path / "old.parquet")
    dataset = ds.dataset(tmp_path / "old.parquet",
                         schema=pa.schema([pa.field("B04_metadata", S.METADATA_TYPE)]))
    row = dataset.to_table()["B04_metadata"][0].as_py()
    assert row["overviews"][0]["tile_offsets"] is None
    with pytest.raises(MetadataError, match="^rec 'x': overview level 1 .* only_missing=False"):
        CogMetadata.from_struct(row).level(1, context="rec 'x'")


def test_inconsistent_overview_tables_name_the_level():
    md = _old_struct()
    md["overviews"] = [{"width": 256, "height": 256, "tile_width": 128, "tile_height": 128,
                        "tile_offsets": [1, 2, 3], "tile_byte_counts": [1, 2, 3]}]
    with pytest.raises(MetadataError, match=r"^r: overview level 1 \(256 x 256, 128 x 128 "
                                            r"tiles\) has 3 tile offsets and 3 byte counts for 4"):
        CogMetadata.from_struct(md, context="r")
    md["overviews"][0].update(tile_offsets=[1, 2, 3, 4], tile_byte_counts=None)
    with pytest.raises(MetadataError, match="without the other"):
        CogMetadata.from_struct(md)
