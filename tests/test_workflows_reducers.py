"""The composite's pure pieces: reducers, the quality mask, observations, NDVI, and the tiles
the client plans (no I/O)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from odc.geo.geobox import GeoBox

from rasteret_dask.workflows.composite_plan import Tile, plan_tiles, tile_key
from rasteret_dask.workflows.reducers import (
    QualityMask,
    Reducer,
    ndvi_block,
    observations,
    parse_mask,
    parse_reducer,
)

NAN = np.nan


@pytest.mark.parametrize(("text", "want"), [
    ("median", Reducer("median")), ("MEAN", Reducer("mean")), (" min ", Reducer("min")),
    ("max", Reducer("max")), ("count", Reducer("count")), ("p90", Reducer("percentile", 90.0)),
    ("p2.5", Reducer("percentile", 2.5)), ("p0", Reducer("percentile", 0.0)),
    ("p100", Reducer("percentile", 100.0)),
])
def test_reducers_parse(text, want):
    assert parse_reducer(text) == want and parse_reducer(want) is want


@pytest.mark.parametrize("bad", ["p101", "p", "p-5", "percentile", "avg", "", None, 50, "q90"])
def test_unknown_reducers_raise_naming_the_value(bad):
    with pytest.raises(ValueError, match=rf"reducer={bad!r} is not a reducer.*'p<q>'"):
        parse_reducer(bad)


def test_reducers_ignore_nan_and_leave_unobserved_pixels_at_their_fill():
    stack = np.array([[[1, NAN, NAN]], [[3, 4, NAN]], [[8, 6, NAN]], [[NAN, NAN, NAN]]],
                     dtype=np.float32)  # (time 4, y 1, x 3)
    got = {r: parse_reducer(r).reduce(stack) for r in ("median", "mean", "min", "max", "count",
                                                       "p50", "p90")}
    np.testing.assert_array_equal(got["median"], [[3, 5, NAN]])
    np.testing.assert_allclose(got["mean"], [[4, 5, NAN]])
    np.testing.assert_array_equal(got["min"], [[1, 4, NAN]])
    np.testing.assert_array_equal(got["max"], [[8, 6, NAN]])
    np.testing.assert_array_equal(got["count"], [[3, 2, 0]])
    np.testing.assert_array_equal(got["p50"], got["median"])
    np.testing.assert_allclose(got["p90"], [[7, 5.8, NAN]], rtol=1e-6)
    assert got["count"].dtype == np.uint16
    assert all(v.dtype == np.float32 for k, v in got.items() if k != "count")
    assert Reducer("count").fill == 0 and np.isnan(Reducer("median").fill)
    assert parse_reducer("p2.5").label == "p2.5" and parse_reducer("p90").label == "p90"


@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_the_median_is_numpys_nanmedian(scale):
    rng = np.random.default_rng(7)
    stack = (rng.integers(1, 65535, (23, 40, 50)) * scale).astype(np.float32)
    stack[rng.random(stack.shape) < 0.6] = NAN
    stack[:, 0, 0] = NAN  # never observed
    stack[:, 0, 1] = NAN
    stack[3, 0, 1] = 7.0  # observed once
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="All-NaN"):
        want = np.nanmedian(stack, axis=0)
    got = Reducer("median").reduce(stack)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_observations_drop_nodata_and_masked_pixels():
    raw = np.array([[[0, 5], [7, 9]]], dtype=np.uint16)
    dropped = np.array([[[False, False], [True, False]]])
    got = observations(raw, 0, dropped)
    np.testing.assert_array_equal(got, [[[NAN, 5], [NAN, 9]]])
    np.testing.assert_array_equal(observations(raw, None), raw.astype(np.float32))
    floats = np.array([[[NAN, 0.5]]], dtype=np.float32)
    np.testing.assert_array_equal(observations(floats, float("nan")), floats)


def test_quality_masks_parse_and_validate():
    mask = parse_mask({"band": "SCL", "drop": [10, 3, 8, 9, 3]})
    assert mask == QualityMask("SCL", (3, 8, 9, 10))
    assert mask.to_dict() == {"band": "SCL", "drop": [3, 8, 9, 10]}
    assert parse_mask(mask) == mask and parse_mask(None) is None
    assert parse_mask({"band": "QA", "drop": np.array([1.0, 2])}).drop == (1, 2)
    np.testing.assert_array_equal(mask.dropped(np.array([0, 3, 4, 9], np.uint8)),
                                  [False, True, False, True])
    for bad, message in [
        ({"band": "SCL", "drop": []}, "'drop' is empty"),
        ({"band": "SCL", "values": [3]}, "exactly the keys"),
        ({"band": "", "drop": [3]}, "'band' must be a band name"),
        ({"band": "SCL", "drop": "3,8"}, "'drop' must be a list"),
        ({"band": "SCL", "drop": [3, True]}, "must be integers"),
        ({"band": "SCL", "drop": [2.5]}, "must be integers"),
        ("SCL", "is not a quality mask"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_mask(bad)


def test_ndvi_of_reduced_bands():
    red = np.array([1, 0, NAN], np.float32)
    nir = np.array([3, 0, 2], np.float32)
    np.testing.assert_array_equal(ndvi_block(red, nir), [0.5, NAN, NAN])


def test_tiles_cover_the_grid_the_aoi_meets_and_leave_the_rest_out():
    geobox = GeoBox.from_bbox((0, 0, 1000, 700), "EPSG:32643", resolution=10)  # 70 x 100 px
    l_shape = shapely.Polygon([(0, 0), (1000, 0), (1000, 300), (300, 300), (300, 700),
                               (0, 700)])
    tiles = plan_tiles(geobox, l_shape, 32)  # 3 rows x 4 columns of tiles
    keys = {t.key for t in tiles}
    # the top row of tiles (y 380-700 m) meets only the L's upright (x < 300 m)
    assert tile_key(0, 0) in keys and not keys & {tile_key(0, j) for j in (1, 2, 3)}
    assert keys >= {tile_key(i, j) for i in (1, 2) for j in range(4)} and len(tiles) == 9
    last = next(t for t in tiles if t.key == tile_key(2, 3))
    assert (last.row, last.col, last.height, last.width) == (64, 96, 6, 4)
    sub = last.geobox(geobox)
    assert sub.shape == (6, 4) and sub.transform.c == 960 and sub.transform.f == 60
    assert Tile(0, 0, 1, 2, 3, 4).window == [1, 2, 3, 4] and Tile(2, 11, 0, 0, 1, 1).key == tile_key(2, 11)
    everything = plan_tiles(geobox, shapely.box(0, 0, 1000, 700), 32)
    assert [t.key for t in everything] == [tile_key(i, j) for i in range(3) for j in range(4)]
