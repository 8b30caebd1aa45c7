"""Warped reads of several time steps per task: the revisits of a grid warped together in one
GDAL call give every step the values it has read alone; deep overviews are read at the level
odc-stac's rule picks; GDAL's area of interest is the chunk's."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from rasteret_dask.read import warp, warp_steps
from rasteret_dask.testing.continental import ARCHIVE_ALIASES, continental_archive, served_folder
from rasteret_dask.testing.continental_layout import ArchiveSpec
from rasteret_dask.testing.server_process import RangeServerProcess
from rasteret_dask.tiff.levels import choose_level

DEEP = ArchiveSpec(bbox=(11.7, 47.95, 12.3, 48.15), zones=(32, 33), months=1, pixels=1098,
                   step=10_000.0, blocksize=256, overview_count=3)
"""Tiles of 10.98 km on both sides of 12 E, January 2024, overviews down to 1/8 (137 px)."""


@pytest.fixture(scope="module")
def deep_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("deep")
    with RangeServerProcess(served_folder(root), aliases=ARCHIVE_ALIASES) as server:
        yield continental_archive(root, server.url, DEEP)


def test_odc_stacs_rule_takes_the_deepest_level_at_or_below_the_output_pixel():
    widths = [5490, 2745, 1372, 686, 343, 171, 85]  # a 10980 px image, OVERVIEW_COUNT=7
    assert choose_level(100.0, 10980, widths) == 6  # 1 km from 10 m: 1/64 (171 px)
    assert choose_level(99.96, 10980, widths) == 6
    assert choose_level(200.0, 10980, widths) == 7
    assert choose_level(16.0, 10980, widths[:4]) == 4  # GDAL's AUTO stops at 1/16


def test_the_archive_has_overview_count_levels_all_enriched(deep_archive):
    md = deep_archive.load().to_table(columns=["B04_metadata"])["B04_metadata"][0].as_py()
    assert [o["width"] for o in md["overviews"]] == [549, 274, 137]
    assert all(o["tile_offsets"] for o in md["overviews"])
    with pytest.raises(ValueError, match="overview_count"):
        ArchiveSpec(overview_count=0)


@pytest.mark.parametrize("resampling", ["average", "nearest"])
def test_revisits_warped_together_equal_each_step_alone(deep_archive, monkeypatch, resampling):
    calls: list[int] = []
    stacked = warp_steps.warp_window

    def counting(window, *args, **kwargs):
        calls.append(window.shape[0] if window.ndim == 3 else 1)
        return stacked(window, *args, **kwargs)

    monkeypatch.setattr(warp_steps, "warp_window", counting)
    aoi = shapely.box(11.8, 47.98, 12.2, 48.12)
    kwargs = {"crs": "EPSG:3035", "resolution": 320, "resampling": resampling,
              "groupby": "solar_day"}
    collection = deep_archive.load()
    alone = collection.get_xarray(aoi, ["B04"], chunks={"x": 32, "y": 32, "time": 1},
                                  **kwargs).compute()
    assert calls == []
    together = collection.get_xarray(aoi, ["B04"], chunks={"x": 32, "y": 32, "time": 8},
                                     **kwargs).compute()
    assert calls and max(calls) > 1  # revisits of a tile in one call
    np.testing.assert_array_equal(together["B04"].values, alone["B04"].values)
    assert (alone["B04"].values != 0).mean() > 0.5


def test_the_area_of_interest_is_the_chunks_extent_in_degrees():
    aoi = warp.area_of_interest((100, 200), (1000.0, 0.0, 4400000.0, 0.0, -1000.0, 2900000.0),
                                "EPSG:3035")
    west, south, east, north = (float(v) for v in aoi.split(","))
    assert 9 < west < east < 14 and 47 < south < north < 50
    assert warp.area_of_interest((10, 10), (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), "EPSG:4326") \
        == "0.0,-10.0,10.0,0.0"
