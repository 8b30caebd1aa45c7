"""GDAL internal masks and GCPs in the header parse and the typed metadata (pure, on files GDAL
and tifffile write): masks found with their tile tables in one read of a COG's header, paired
with their overviews by size, a band's view of them; GCPs as GDAL reads them, kept apart from
the raster's CRS; ``CogMetadata`` of masks, GCPs and rotated grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from affine import Affine
from rasterio.control import GroundControlPoint

from rasteret_dask.read.masks import mask_spec, plan_mask
from rasteret_dask.testing.cogs import ellipse_mask, write_masked_tiff
from rasteret_dask.tiff import TiffError, read_tiff_header
from rasteret_dask.tiff.cog_metadata import CogMetadata, MetadataError

from .test_tiff_header import FileReader


def test_a_cogs_masks_come_with_its_header_in_one_read(tmp_path: Path) -> None:
    path = write_masked_tiff(tmp_path / "m.tif", width=900, height=700, blocksize=256)
    reader = FileReader(path)
    header = read_tiff_header(reader)
    assert len(reader.calls) == 1  # one GET: every IFD and table is in the prefix
    with tifffile.TiffFile(path) as tif:
        pages = [p for p in tif.pages if p.subfiletype & 4]
    assert [(m.width, m.height) for m in [header.mask, *(o.mask for o in header.overviews)]] \
        == [(p.imagewidth, p.imagelength) for p in pages]
    for mask, page in zip([header.mask, *(o.mask for o in header.overviews)], pages,
                          strict=True):
        assert mask.tile_offsets == tuple(page.dataoffsets)
        assert mask.tile_byte_counts == tuple(page.databytecounts)
        assert (mask.bits_per_sample, mask.compression, mask.problem) == (1, 8, None)
    md = header.to_metadata(0)
    assert md["mask"]["samples"] == 1 and md["mask"]["sample"] == 0
    assert [o["mask"]["width"] for o in md["overviews"]] == [450, 225]
    value = CogMetadata.from_struct(md)
    assert value.mask.tiles_across == 4 and value.level(2).mask.width == 225


def test_every_band_of_a_file_reads_its_one_mask(tmp_path: Path) -> None:
    path = write_masked_tiff(tmp_path / "rgb.tif", width=300, height=200, dtype="uint8",
                             count=3, overviews=False)
    header = read_tiff_header(FileReader(path))
    masks = [header.to_metadata(b)["mask"] for b in range(3)]
    assert masks[0] == masks[1] == masks[2] and masks[0]["sample"] == 0


def test_a_striped_files_mask_is_striped(tmp_path: Path) -> None:
    path = write_masked_tiff(tmp_path / "s.tif", width=301, height=257, dtype="uint8",
                             striped=True)
    header = read_tiff_header(FileReader(path))
    with tifffile.TiffFile(path) as tif:
        page = next(p for p in tif.pages if p.subfiletype & 4)
        rows = page.rowsperstrip
    mask = header.mask
    assert mask.striped and (mask.tile_width, mask.tile_height) == (301, rows)
    value = CogMetadata.from_struct(header.to_metadata(0)).mask
    assert value.last_strip_rows == 257 % rows
    assert mask_spec(value).short_rows == 257 % rows


def _tiff_with_mask(path: Path, mask_levels: list[bool]) -> Path:
    """An image with two tiled overviews, its mask, and a mask for each overview where
    ``mask_levels`` says so (tifffile writes what GDAL would not)."""
    geo = [(33550, 12, 3, (10.0, 10.0, 0.0)), (33922, 12, 6, (0, 0, 0, 5e5, 5e6, 0)),
           (34735, 3, 8, (1, 1, 0, 1, 3072, 0, 1, 32633))]
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.ones((512, 512), "uint8"), tile=(128, 128), compression="zlib",
                 extratags=geo, photometric="minisblack")
        tw.write(ellipse_mask(512, 512), tile=(128, 128), compression="zlib", photometric=4,
                 extratags=[(254, 4, 1, 4)])
        for k, size in enumerate((256, 128)):
            tw.write(np.ones((size, size), "uint8"), tile=(128, 128), compression="zlib",
                     photometric="minisblack", subfiletype=1)
            if mask_levels[k]:
                tw.write(ellipse_mask(size, size), tile=(128, 128), compression="zlib",
                         photometric=4, extratags=[(254, 4, 1, 5)])
    return path


def test_an_overview_without_its_own_mask_is_not_read(tmp_path: Path) -> None:
    header = read_tiff_header(FileReader(_tiff_with_mask(tmp_path / "o.tif", [True, False])))
    assert [o.has_tiles for o in header.overviews] == [True, False]
    value = CogMetadata.from_struct(header.to_metadata(0))
    assert value.choose_level(80.0) == 1  # the 4x level has no mask: the 2x one is read
    with pytest.raises(MetadataError, match="no tile offsets"):
        value.level(2)


def test_mask_structs_are_checked(tmp_path: Path) -> None:
    path = write_masked_tiff(tmp_path / "m.tif", width=300, height=200, overviews=False)
    md = read_tiff_header(FileReader(path)).to_metadata(0)
    md["mask"]["tile_offsets"] = md["mask"]["tile_offsets"][:-1]
    with pytest.raises(MetadataError, match="record 'x': the mask of the image has 1 tile "
                                            "offsets and 2 byte counts for 2 tiles"):
        CogMetadata.from_struct(md, context="record 'x'")
    md["mask"] = None  # an index enriched before masks were kept
    assert CogMetadata.from_struct(md).mask is None


def test_plan_mask_places_the_tiles_under_a_region(tmp_path: Path) -> None:
    path = write_masked_tiff(tmp_path / "m.tif", width=600, height=500, overviews=False)
    mask = CogMetadata.from_struct(read_tiff_header(FileReader(path)).to_metadata(0)).mask
    registered: list[int] = []

    def register(tile: int, start: int, count: int) -> int:
        registered.append(tile)
        return len(registered) - 1

    # a region from outside the image's top-left corner across two tile rows and columns
    read = plan_mask(mask, (-10, 300), (200, 520), register, 1 << 20)
    assert registered == [0, 1, 2, 3, 4, 5]  # 256-pixel tiles: rows 0-1, cols 0-2
    assert [t.dst for t in read.tiles][:2] == [(10, 266, 0, 56), (10, 266, 56, 312)]
    assert plan_mask(None, (0, 1), (0, 1), register, 1 << 20) is None
    refused = plan_mask(mask, (0, 10), (0, 10), register, 10)
    assert refused.tiles == () and "over the limit" in refused.error


@pytest.mark.parametrize("point", [False, True])
def test_gcps_as_gdal_reads_them_and_not_the_rasters_crs(tmp_path: Path, point: bool) -> None:
    path = tmp_path / "g.tif"
    gcps = [GroundControlPoint(0, 0, 15.0, 45.0), GroundControlPoint(0, 120, 15.012, 45.0),
            GroundControlPoint(90, 0, 15.0, 44.991)]
    with rasterio.open(path, "w", driver="GTiff", width=120, height=90, count=1,
                       dtype="uint8", gcps=gcps, crs="EPSG:4326") as dst:
        dst.write(np.ones((1, 90, 120), np.uint8))
        if point:
            dst.update_tags(AREA_OR_POINT="Point")
    header = read_tiff_header(FileReader(path))
    with rasterio.open(path) as src:
        want = [(g.row, g.col, g.x, g.y, g.z or 0.0) for g in src.gcps[0]]
    assert list(header.gcps) == want
    assert header.transform is None and header.crs_epsg is None and header.crs_wkt is None
    assert header.gcp_crs == "EPSG:4326"
    value = CogMetadata.from_struct(header.to_metadata(0))
    assert value.has_gcps and value.crs.to_epsg() == 4326
    fit = rasterio.transform.from_gcps([GroundControlPoint(*g) for g in want])
    assert tuple(value.transform) == pytest.approx(tuple(fit))


def test_gcps_that_locate_no_grid_are_refused() -> None:
    md = {"image_width": 10, "image_height": 10, "tile_width": 10, "tile_height": 10,
          "dtype": "uint8", "tile_offsets": [8], "tile_byte_counts": [100],
          "gcp_crs": "EPSG:4326",
          "gcps": [{"row": r, "col": r, "x": 15 + r, "y": 45 + r, "z": 0.0} for r in (0, 5, 9)]}
    with pytest.raises(MetadataError, match="lie on one line"):
        CogMetadata.from_struct(md)
    md["gcps"] = md["gcps"][:2]
    with pytest.raises(MetadataError, match="2 ground control point.* at least 3"):
        CogMetadata.from_struct(md)
    md["gcp_crs"] = None
    with pytest.raises(MetadataError, match="without a CRS"):
        CogMetadata.from_struct(md)


def test_a_rotated_grids_resolution_is_its_pixels_side():
    t = Affine.translation(5e5, 5e6) @ Affine.rotation(20) @ Affine.scale(10, -10)
    md = CogMetadata(image_width=10, image_height=10, tile_width=10, tile_height=10,
                     dtype=np.dtype("uint8"), transform=t, tile_offsets=(8,),
                     tile_byte_counts=(100,))
    assert md.resolution == (10.0, 10.0) and not md.is_axis_aligned


def test_a_mask_of_other_samples_than_one_or_the_images_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.ones((3, 64, 64), "uint8"), tile=(64, 64), photometric="rgb",
                 planarconfig="separate")
        tw.write(np.ones((2, 64, 64), "uint8"), tile=(64, 64), photometric=4,
                 planarconfig="separate", extratags=[(254, 4, 1, 4)])
    header = read_tiff_header(FileReader(path))
    with pytest.raises(TiffError, match="mask holds 2 samples per pixel for an image of 3"):
        header.to_metadata(0)
