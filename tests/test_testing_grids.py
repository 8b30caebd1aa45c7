"""The output-grid fixture scenes (rasteret_dask.testing.grids) are what the oracle tests
assume: two zones overlapping across 78 E, one solar day per pass, Sentinel-2-like COGs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from rasteret_dask.testing.grids import GRID_EPSGS, grid_items, write_grid_scenes


def test_two_zones_overlap_across_78_east(grid_scenes):
    west, east = (grid_scenes.in_zone(epsg) for epsg in GRID_EPSGS)
    assert len(west) == len(east) == len(grid_scenes.passes) == 3
    for a, b in zip(west, east, strict=True):
        assert a.footprint().bounds[2] > 78.0 > b.footprint().bounds[0]
    share = grid_scenes.overlap().area / west[0].footprint().area
    assert 0.3 < share < 0.8
    for group in grid_scenes.passes:
        assert [r.epsg for r in group] == list(GRID_EPSGS)
        assert 0 < (group[1].datetime - group[0].datetime).total_seconds() < 60
    assert [r.datetime for r in grid_scenes.records] == sorted(r.datetime for r in
                                                               grid_scenes.records)


def test_cogs_are_sentinel2_like(grid_scenes):
    record = grid_scenes.records[0]
    expected = {"B02": (1920, [2, 4, 8, 16], "uint16"), "B11": (960, [2, 4], "uint16"),
                "B01": (320, [2, 4], "uint16"), "SCL": (960, [2, 4], "uint8")}
    for band, (side, overviews, dtype) in expected.items():
        with rasterio.open(record.paths[band]) as src:
            assert src.shape == (side, side) and src.dtypes[0] == dtype
            assert src.overviews(1) == overviews and src.nodata == 0
            assert src.compression.name == "deflate" and src.is_tiled
            assert tuple(src.transform)[:6] == record.transform(band)
            assert src.crs.to_epsg() == record.epsg


@pytest.mark.parametrize("band", ["B02", "B11", "B01"])
def test_pixels_are_smooth_but_not_constant(grid_scenes, band):
    for record in grid_scenes.records:
        pixels = record.read(band).astype(np.int64)
        valid = pixels != 0
        assert 0.85 < valid.mean() < 1.0
        for axis in (0, 1):
            steps = np.abs(np.diff(pixels, axis=axis))
            both = valid[1:, :] & valid[:-1, :] if axis == 0 else valid[:, 1:] & valid[:, :-1]
            assert steps[both].max() <= 3 and (steps[both] > 0).mean() > 0.5


def test_swath_edge_inside_the_overlap(grid_scenes):
    swath = [r for r in grid_scenes.records if r.swath_edge]
    assert [r.epsg for r in swath] == list(GRID_EPSGS)
    assert all((r.read("B02") == 0).mean() > 0.05 for r in swath)
    assert not any((r.read("B02") == 0).mean() > 0.01 for r in grid_scenes.records
                   if not r.swath_edge)


def test_items_carry_projection_and_raster_bands(grid_scenes):
    items = grid_items(grid_scenes, "http://127.0.0.1:1/")
    assert [i.id for i in items] == [r.id for r in grid_scenes.records]
    for item, record in zip(items, grid_scenes.records, strict=True):
        for band in grid_scenes.bands:
            asset = item.assets[band.name].to_dict()
            assert asset["href"] == f"http://127.0.0.1:1/{record.id}/{band.name}.tif"
            assert asset["proj:code"] == f"EPSG:{record.epsg}"
            assert asset["proj:shape"] == list(record.shape(band.name))
            assert asset["proj:transform"] == list(record.transform(band.name))
            (raster,) = asset["raster:bands"]
            assert raster["nodata"] == 0 and raster["data_type"] == band.dtype
            assert raster.get("scale") == band.scale and raster.get("offset") == band.offset
    assert {b.name for b in grid_scenes.bands if not b.rescaled} == {"SCL"}


def test_sizes_are_checked(tmp_path):
    with pytest.raises(ValueError, match="pixels must be a positive multiple of 96, not 100"):
        write_grid_scenes(tmp_path, pixels=100)
    with pytest.raises(ValueError, match="passes must be positive, not 0"):
        write_grid_scenes(tmp_path, passes=0)
