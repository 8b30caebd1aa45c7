"""geometry_mask against rasterio.features.geometry_mask, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import geometry_mask as rasterio_mask

from rasteret_dask.plan.mask import geometry_mask

# rasterio applies affine transforms with ``*``, which affine 3 flags as pending deprecation.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

ORIGIN = Affine.translation(600000.0, 5000040.0)


def _transform(kind: int, rng: np.random.Generator) -> Affine:
    if kind == 0:
        return ORIGIN * Affine.scale(10.0, -10.0)
    if kind == 1:
        return ORIGIN * Affine.rotation(rng.uniform(-60, 60)) * Affine.scale(10.0, -10.0)
    return ORIGIN * Affine.shear(rng.uniform(-25, 25), rng.uniform(-25, 25)) * Affine.scale(8, -12)


def _star(cx: float, cy: float, radius: float, k: int, rng: np.random.Generator) -> shapely.Polygon:
    """A simple polygon with ``k`` vertices at random radii around (cx, cy)."""
    angles = (np.arange(k) + rng.uniform(0.1, 0.9, k)) * 2 * math.pi / k
    radii = radius * rng.uniform(0.25, 1.0, k)
    return shapely.Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)])


def _shape(i: int, transform: Affine, height: int, width: int, rng: np.random.Generator):
    """Stars (many partly outside the grid), stars with holes, multipolygons, slivers."""
    cx, cy = transform @ (rng.uniform(-0.2, 1.2) * width, rng.uniform(-0.2, 1.2) * height)
    radius = 10.0 * rng.uniform(1.0, 0.8 * max(height, width))
    star = _star(cx, cy, radius, int(rng.integers(4, 60)), rng)
    kind = i % 4
    if kind == 1:
        hole = _star(cx, cy, radius * 0.2, int(rng.integers(4, 12)), rng)
        return shapely.Polygon(star.exterior.coords, [hole.exterior.coords])
    if kind == 2:
        other = _star(cx + 2.2 * radius, cy - radius, radius * 0.8, 9, rng)
        return shapely.MultiPolygon([star, other])
    if kind == 3:
        return shapely.Polygon([(cx, cy), (cx + radius, cy + 7.0), (cx + radius * 0.9, cy + 19.0)])
    return star


@pytest.mark.parametrize("all_touched", [False, True])
@pytest.mark.parametrize("transform_kind", [0, 1, 2])
def test_random_polygons_match_rasterio(all_touched: bool, transform_kind: int) -> None:
    rng = np.random.default_rng(1000 * transform_kind + all_touched)
    for i in range(120):
        height, width = (int(v) for v in rng.integers(3, 80, 2))
        transform = _transform(transform_kind, rng)
        geom = _shape(i, transform, height, width, rng)
        ours = geometry_mask([geom], (height, width), transform, all_touched=all_touched)
        theirs = rasterio_mask([geom], (height, width), transform, all_touched=all_touched)
        assert ours.dtype == np.bool_ and ours.shape == (height, width)
        assert np.array_equal(ours, theirs), (i, geom.wkt, int((ours != theirs).sum()))


@pytest.mark.parametrize("all_touched", [False, True])
def test_several_geometries_union_and_invert(all_touched: bool) -> None:
    rng = np.random.default_rng(7)
    transform = _transform(0, rng)
    shape = (90, 110)
    for _ in range(10):
        geoms = [_shape(j, transform, *shape, rng) for j in range(int(rng.integers(2, 6)))]
        ours = geometry_mask(geoms, shape, transform, all_touched=all_touched, invert=True)
        theirs = rasterio_mask(geoms, shape, transform, all_touched=all_touched, invert=True)
        assert np.array_equal(ours, theirs)
    many = [
        _star(*(transform @ (c * 1.7 + 0.3, r * 1.3 + 0.2)), 6.0, 5, rng)
        for c in range(60)
        for r in range(60)
    ]  # more than 64 geometries: several bit planes
    ours = geometry_mask(many, shape, transform, all_touched=all_touched)
    assert np.array_equal(ours, rasterio_mask(many, shape, transform, all_touched=all_touched))


@pytest.mark.parametrize("all_touched", [False, True])
def test_special_cases_match_rasterio(all_touched: bool) -> None:
    t = _transform(0, np.random.default_rng(0))
    shape = (40, 50)
    aligned = shapely.box(*(t @ (5, 30)), *(t @ (20, 10)))
    cases = [
        aligned,  # edges exactly on pixel borders
        shapely.box(*(t @ (-5, 60)), *(t @ (70, -10))),  # covers the whole grid
        shapely.box(*(t @ (60, 10)), *(t @ (70, 0))),  # outside the grid
        shapely.GeometryCollection([aligned, shapely.box(*(t @ (30.3, 20.6)), *(t @ (44.2, 2.7)))]),
        shapely.Point(t @ (12.3, 17.8)),
        aligned.buffer(-0.5),
    ]
    for geom in cases:
        ours = geometry_mask(geom, shape, t, all_touched=all_touched)
        theirs = rasterio_mask([geom], shape, t, all_touched=all_touched)
        assert np.array_equal(ours, theirs), geom.wkt


def test_lines_take_every_pixel_they_cross() -> None:
    t = Affine.identity()
    line = shapely.LineString([(0.5, 0.5), (6.5, 3.5)])
    inside = ~geometry_mask([line], (5, 8), t)
    expected = np.zeros((5, 8), dtype=bool)
    for row, cols in {0: (0, 1), 1: (1, 2, 3), 2: (3, 4, 5), 3: (5, 6)}.items():
        expected[row, list(cols)] = True
    assert np.array_equal(inside, expected)
    theirs = ~rasterio_mask([line], (5, 8), t, all_touched=True)
    assert np.array_equal(~geometry_mask([line], (5, 8), t, all_touched=True), theirs)


def test_arguments() -> None:
    t = Affine(10.0, 0.0, 0.0, 0.0, -10.0, 100.0)
    box = shapely.box(10.0, 10.0, 50.0, 50.0)
    assert geometry_mask(box, (0, 5), t).shape == (0, 5)
    assert np.array_equal(
        geometry_mask(box, (10, 10), tuple(t)[:6]), geometry_mask(box, (10, 10), t)
    )
    assert np.array_equal(geometry_mask(box.wkb, (10, 10), t), geometry_mask([box], (10, 10), t))
    with pytest.raises(ValueError, match="no non-empty geometry"):
        geometry_mask([], (10, 10), t)
    with pytest.raises(ValueError, match="non-negative"):
        geometry_mask(box, (-1, 10), t)
