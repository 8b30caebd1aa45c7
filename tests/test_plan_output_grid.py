"""Output-grid arguments, anchoring, chunking and the reprojection arithmetic (pure, no I/O)."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox

from rasteret_dask.plan.output_grid import (
    anchored_geobox,
    chunk_edges_px,
    grid_request,
    majority_crs,
    parse_chunks,
)
from rasteret_dask.plan.reproject import (
    aligned_offset,
    chunk_bounds_in,
    chunk_windows,
    kernel_margin,
    pixel_size_in,
)


@pytest.mark.parametrize("kwargs, match", [
    ({"resampling": "bicubic"}, r"resampling='bicubic'"),
    ({"resolution": 0}, r"resolution=0 must be a positive"),
    ({"resolution": -10}, r"resolution=-10 must be a positive"),
    ({"resolution": "10"}, r"resolution='10' is not a number"),
    ({"resolution": float("nan")}, r"resolution=nan"),
    ({"resolution": (10, 0)}, r"resolution=\(10, 0\)"),
    ({"resolution": (10, 20, 30)}, r"resolution=\(10, 20, 30\).*\(x, y\)"),
    ({"crs": "EPSG:999999"}, r"crs='EPSG:999999' is not a CRS pyproj can parse"),
    ({"crs": "not a crs"}, r"crs='not a crs'"),
    ({"geobox": (1, 2, 3, 4)}, r"geobox=\(1, 2, 3, 4\) is not an odc.geo.geobox.GeoBox"),
])
def test_bad_arguments_name_argument_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        grid_request(**kwargs)


def test_good_arguments():
    r = grid_request(crs=3035, resolution=(10, 20), resampling="Bilinear")
    assert r.crs == pyproj.CRS.from_epsg(3035) and r.resolution == (10.0, 20.0)
    assert r.resampling == "bilinear" and not r.is_native
    wkt = pyproj.CRS.from_epsg(32643).to_wkt()
    assert grid_request(crs=wkt).crs == pyproj.CRS.from_epsg(32643)
    assert grid_request().is_native
    box = GeoBox((10, 10), Affine(10, 0, 0, 0, -10, 100), "EPSG:32643")
    assert grid_request(geobox=box).geobox is box
    with pytest.raises(ValueError, match="only without it"):
        grid_request(geobox=box, crs=32643)


def test_anchor_is_multiples_of_the_resolution():
    box = anchored_geobox((500005.0, 2000003.0, 520001.0, 2020000.5),
                          pyproj.CRS.from_epsg(32643), (10.0, 20.0))
    t = box.transform
    assert (t.a, t.e) == (10.0, -20.0)
    assert t.c % 10 == 0 and t.f % 20 == 0
    assert t.c <= 500005 and t.c + 10 * box.shape.x >= 520001
    # two neighbouring areas tile exactly: the shared edge is a pixel edge of both
    left = anchored_geobox((0.0, 0.0, 1003.0, 100.0), pyproj.CRS.from_epsg(32643), (10.0, 10.0))
    right = anchored_geobox((1003.0, 0.0, 2000.0, 100.0), pyproj.CRS.from_epsg(32643),
                            (10.0, 10.0))
    assert (right.transform.c - left.transform.c) % 10 == 0


def test_chunks_forms():
    assert parse_chunks(2, 512) == (1024, 1024)
    assert parse_chunks({"x": 300, "y": 200}, 512) == (200, 300)
    assert parse_chunks({"x": 300}, 512) == (300, 300)
    assert parse_chunks((100, 50), 512) == (100, 50)
    for bad in (0, -1, {"z": 3}, (1, 2, 3), 1.5, {"x": 0}):
        with pytest.raises(ValueError, match="chunks="):
            parse_chunks(bad, 512)
    assert chunk_edges_px(2500, 1024) == ((0, 1024), (1024, 2048), (2048, 2500))


def test_majority_crs_ties_go_to_the_first():
    a, b = pyproj.CRS.from_epsg(32643), pyproj.CRS.from_epsg(32644)
    assert majority_crs([a, b, b]) == b
    assert majority_crs([b, a]) == b


def test_chunk_bounds_same_crs_are_the_chunks():
    t = Affine(10, 0, 1000, 0, -10, 5000)
    crs = pyproj.CRS.from_epsg(32643)
    bounds = chunk_bounds_in(t, ((0, 100), (100, 150)), ((0, 64), (64, 70)), crs, crs)
    assert bounds.shape == (2, 2, 4)
    assert tuple(bounds[0, 0]) == (1000, 4000, 1640, 5000)
    assert tuple(bounds[1, 1]) == (1640, 3500, 1700, 4000)


def test_chunk_bounds_other_crs_hold_the_footprint():
    """Each chunk's bounds in another CRS contain its densely reprojected outline."""
    t = Affine(10, 0, 805000, 0, -10, 2220000)
    out, src = pyproj.CRS.from_epsg(32643), pyproj.CRS.from_epsg(32644)
    rows, cols = ((0, 512), (512, 1000)), ((0, 512), (512, 900))
    bounds = chunk_bounds_in(t, rows, cols, out, src)
    to_src = pyproj.Transformer.from_crs(out, src, always_xy=True)
    for i, (a, b) in enumerate(rows):
        for j, (c, d) in enumerate(cols):
            x0, y1 = t @ (c, a)
            x1, y0 = t @ (d, b)
            outline = shapely.box(x0, y0, x1, y1).segmentize(5)
            moved = shapely.transform(outline, lambda p: np.column_stack(
                to_src.transform(p[:, 0], p[:, 1])))
            mx0, my0, mx1, my1 = moved.bounds
            bx0, by0, bx1, by1 = bounds[i, j]
            # sampled bounds are within a metre of the true ones (8 samples a side)
            assert bx0 <= mx0 + 1 and by0 <= my0 + 1 and bx1 >= mx1 - 1 and by1 >= my1 - 1
            assert abs(bx0 - mx0) < 5 and abs(by1 - my1) < 5


def test_chunk_windows_clip_and_margin():
    bounds = np.array([[[1000, 4000, 1640, 5000], [np.nan, np.nan, np.nan, np.nan]]])
    t = Affine(20, 0, 1000, 0, -20, 5000)
    w = chunk_windows(bounds, t, (30, 40), margin=2)
    assert tuple(w[0, 0]) == (0, 30, 0, 34)  # rows clipped to the image; cols 0..32 + 2
    assert w[0, 1, 1] <= w[0, 1, 0]  # outside the CRS's domain: empty


def test_margins_and_scale_and_alignment():
    assert kernel_margin("nearest", 1) == 2
    assert kernel_margin("bilinear", 4) == 5
    assert kernel_margin("average", 16) == 17
    same = pixel_size_in((800000, 2200000), 32643, (10, 10), 32643)
    assert same == (10, 10)
    other = pixel_size_in((800000, 2200000), 32643, (10, 10), 32644)
    assert 9.5 < other[0] < 10.5 and 9.5 < other[1] < 10.5
    assert aligned_offset(Affine(10, 0, 1030, 0, -10, 5000), Affine(10, 0, 1000, 0, -10, 5050)) \
        == (5, 3)
    assert aligned_offset(Affine(10, 0, 1035, 0, -10, 5000), Affine(10, 0, 1000, 0, -10, 5000)) \
        is None
    assert aligned_offset(Affine(20, 0, 1000, 0, -20, 5000), Affine(10, 0, 1000, 0, -10, 5000)) \
        is None
