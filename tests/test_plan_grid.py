"""Windows, grids and grid unions; window_for_geometry against rasterio's geometry_window."""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
import rasterio.transform
import rasterio.windows
import shapely
from affine import Affine
from rasterio.errors import WindowError
from rasterio.features import geometry_window
from rasterio.io import MemoryFile

from rasteret_dask.plan.grid import GridSpec, Window, union_grid
from rasteret_dask.schema import METADATA_TYPE
from rasteret_dask.tiff.cog_metadata import CogMetadata

# rasterio applies affine transforms with ``*``, which affine 3 flags as pending deprecation.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

GRIDS = [
    GridSpec(32633, Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5000040.0), 300, 200),
    GridSpec(32633, Affine(30.0, 0.0, 499980.0, 0.0, -20.0, 4000000.0), 97, 131),
    GridSpec(4326, Affine(0.001, 0.0, 12.3, 0.0, -0.001, 47.9), 250, 180),
]


@pytest.fixture(scope="module", params=range(len(GRIDS)))
def grid_and_dataset(request: pytest.FixtureRequest) -> Iterator[tuple[GridSpec, object]]:
    grid = GRIDS[request.param]
    with (
        MemoryFile() as memfile,
        memfile.open(
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=1,
            dtype="uint8",
            transform=grid.transform,
            crs=f"EPSG:{grid.crs_epsg}",
        ) as dataset,
    ):
        yield grid, dataset


def _random_shapes(grid: GridSpec, rng: np.random.Generator, n: int) -> list[shapely.Geometry]:
    """Stars, boxes, lines, points and multipolygons around (and partly beyond) the grid."""
    t = grid.transform
    px = abs(t.a)
    shapes = []
    for i in range(n):
        col, row = rng.uniform(-0.3, 1.3) * grid.width, rng.uniform(-0.3, 1.3) * grid.height
        cx, cy = t @ (col, row)
        radius = px * rng.uniform(0.3, 0.6 * max(grid.width, grid.height))
        k = int(rng.integers(4, 30))
        angles = (np.arange(k) + rng.uniform(0.1, 0.9, k)) * 2 * math.pi / k
        radii = radius * rng.uniform(0.3, 1.0, k)
        star = shapely.Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
        kind = i % 5
        if kind == 0:
            shapes.append(star)
        elif kind == 1:
            shapes.append(shapely.box(cx, cy, cx + radius, cy + radius * 0.7))
        elif kind == 2:
            shapes.append(shapely.LineString([(cx, cy), (cx + radius, cy - radius * 0.5)]))
        elif kind == 3:
            shapes.append(shapely.Point(cx, cy))
        else:
            other = shapely.affinity.translate(star, 2.5 * radius, -radius)
            shapes.append(shapely.MultiPolygon([star, other]))
    return shapes


def _rasterio_window(dataset: object, geom: shapely.Geometry, **kwargs: object) -> Window | None:
    try:
        w = geometry_window(dataset, [geom], **kwargs)
    except WindowError:
        return None
    return Window(int(w.row_off), int(w.col_off), int(w.height), int(w.width))


def test_window_basics() -> None:
    w = Window(10, 20, 5, 7)
    assert (w.row_stop, w.col_stop, w.shape) == (15, 27, (5, 7))
    assert w.slices == (slice(10, 15), slice(20, 27))
    assert w.shift(-10, 3) == Window(0, 23, 5, 7)
    assert w.intersection(Window(12, 0, 100, 22)) == Window(12, 20, 3, 2)
    assert w.intersection(Window(0, 0, 10, 100)).is_empty
    assert not w.is_empty and Window(3, 3, 0, 4).is_empty
    assert Window(np.int64(1), np.int32(2), np.uint16(3), 4) == Window(1, 2, 3, 4)
    with pytest.raises(ValueError, match=">= 0"):
        Window(0, 0, -1, 2)
    with pytest.raises(TypeError, match="integer"):
        Window(0.5, 0, 1, 2)
    with pytest.raises(AttributeError):
        w.row_off = 3  # type: ignore[misc]
    image = np.arange(40 * 40).reshape(40, 40)
    assert image[w.slices].shape == w.shape
    assert pickle.loads(pickle.dumps(w)) == w and len({w, Window(10, 20, 5, 7)}) == 1


def test_grid_from_metadata_and_properties() -> None:
    md = {
        "image_width": 10980,
        "image_height": 10980,
        "tile_width": 1024,
        "tile_height": 1024,
        "dtype": "uint16",
        "transform": [10.0, 0.0, 600000.0, 0.0, -10.0, 5000040.0],
        "tile_offsets": list(range(121)),
        "tile_byte_counts": [1] * 121,
        "crs_epsg": 32633,
    }
    grid = GridSpec.from_metadata(CogMetadata.from_struct(md))
    assert grid == GridSpec(32633, Affine(10, 0, 600000, 0, -10, 5000040), 10980, 10980)
    assert grid.bounds == (600000.0, 4890240.0, 709800.0, 5000040.0)
    assert grid.resolution == (10.0, 10.0)
    assert grid.shape == (10980, 10980)
    assert pickle.loads(pickle.dumps(grid)) == grid and hash(grid) == hash(
        pickle.loads(pickle.dumps(grid))
    )
    unknown = CogMetadata.from_struct({**md, "crs_epsg": None})
    assert GridSpec.from_metadata(unknown, crs=32632).crs_epsg == 32632
    assert GridSpec.from_metadata(CogMetadata.from_struct(md), crs=32632).crs_epsg == 32633
    assert GridSpec.from_metadata(unknown).crs_epsg is None
    column = pa.array([md, None], type=METADATA_TYPE)
    assert GridSpec.from_metadata(CogMetadata.from_struct(column[0])) == grid
    with pytest.raises(ValueError, match="invertible"):
        GridSpec(None, Affine(0, 0, 0, 0, 0, 0), 1, 1)
    rotated = GridSpec(None, Affine.rotation(30) * Affine.scale(2, -2), 10, 10)
    assert rotated.resolution == pytest.approx((2.0, 2.0))
    assert not rotated.is_axis_aligned
    with pytest.raises(ValueError, match="axis-aligned"):
        rotated.coords()


@pytest.mark.parametrize("grid", GRIDS)
def test_coords_and_window_transform_match_rasterio(grid: GridSpec) -> None:
    window = Window(7, -3, 11, 13)
    x, y = grid.coords(window)
    rows = np.arange(window.row_off, window.row_stop)
    cols = np.arange(window.col_off, window.col_stop)
    rx, _ = rasterio.transform.xy(grid.transform, np.zeros_like(cols), cols, offset="center")
    _, ry = rasterio.transform.xy(grid.transform, rows, np.zeros_like(rows), offset="center")
    np.testing.assert_allclose(x, rx, rtol=0, atol=1e-9 * abs(grid.transform.c) + 1e-12)
    np.testing.assert_allclose(y, ry, rtol=0, atol=1e-9 * abs(grid.transform.f) + 1e-12)
    rio_window = rasterio.windows.Window(
        window.col_off, window.row_off, window.width, window.height
    )
    expected = rasterio.windows.transform(rio_window, grid.transform)
    assert grid.window_transform(window).almost_equals(expected, precision=1e-9)
    sub = grid.sub(window)
    assert (sub.width, sub.height, sub.crs_epsg) == (13, 11, grid.crs_epsg)
    assert sub.coords()[0] == pytest.approx(x) and sub.coords()[1] == pytest.approx(y)
    full_x, full_y = grid.coords()
    assert len(full_x) == grid.width and len(full_y) == grid.height


def test_window_for_geometry_matches_rasterio(grid_and_dataset: tuple[GridSpec, object]) -> None:
    grid, dataset = grid_and_dataset
    rng = np.random.default_rng(grid.width)
    checked = partial = disjoint = 0
    for geom in _random_shapes(grid, rng, 150):
        expected = _rasterio_window(dataset, geom)
        assert grid.window_for_geometry(geom) == expected, geom.wkt
        if expected is None:
            disjoint += 1
            continue
        checked += 1
        unclipped = grid.window_for_geometry(geom, clip=False)
        assert unclipped == _rasterio_window(dataset, geom, boundless=True)
        partial += unclipped != expected
        touched = grid.window_for_geometry(geom, all_touched=True)
        assert touched.intersection(expected) == expected
    assert checked > 50 and partial > 10 and disjoint > 5


def test_window_for_pixel_aligned_shapes(grid_and_dataset: tuple[GridSpec, object]) -> None:
    grid, dataset = grid_and_dataset
    t = grid.transform
    corner_a, corner_b = t @ (10, 20), t @ (25, 30)
    aligned = shapely.box(*np.minimum(corner_a, corner_b), *np.maximum(corner_a, corner_b))
    assert grid.window_for_geometry(aligned) == _rasterio_window(dataset, aligned)
    if float(t.a).is_integer() and float(t.e).is_integer():  # corners land exactly on pixels
        assert grid.window_for_geometry(aligned) == Window(20, 10, 10, 15)
        # all_touched also takes the pixels that only share an edge or a corner with the box
        assert grid.window_for_geometry(aligned, all_touched=True) == Window(19, 9, 12, 17)
        at_edge = shapely.box(*(t @ (grid.width, 5)), *(t @ (grid.width + 5, 0)))
        assert grid.window_for_geometry(at_edge) is None
        assert grid.window_for_geometry(at_edge, all_touched=True) == Window(
            0, grid.width - 1, 6, 1
        )
        assert grid.window_for_geometry(shapely.Point(t @ (3, 4))) is None
    assert grid.window_for_geometry(shapely.Polygon()) is None
    with pytest.raises(TypeError, match="shapely"):
        grid.window_for_geometry((0, 0, 1, 1))  # type: ignore[arg-type]


def _s2_grid(x0: float, y0: float, epsg: int = 32633, res: float = 10.0) -> GridSpec:
    return GridSpec(epsg, Affine(res, 0.0, x0, 0.0, -res, y0), int(109800 / res), int(109800 / res))


def test_union_grid_of_neighbouring_s2_tiles() -> None:
    left, right = _s2_grid(600000.0, 5000040.0), _s2_grid(609780.0, 5000040.0)
    union, offsets = union_grid([left, right])
    assert offsets == [(0, 0), (0, 978)]
    assert union == GridSpec(32633, left.transform, 10980 + 978, 10980)
    union, offsets = union_grid([right, left])
    assert offsets == [(0, 978), (0, 0)] and union.transform == left.transform
    below = _s2_grid(609780.0 + 1e-7, 5000040.0 - 9780.0)  # float noise well under 1e-6 pixel
    union, offsets = union_grid([below, left])
    assert offsets == [(978, 978), (0, 0)]
    assert (union.width, union.height) == (11958, 11958)
    for grid, (row, col) in zip([below, left], offsets):
        window = Window(row, col, grid.height, grid.width)
        assert union.window_transform(window).almost_equals(grid.transform, precision=1e-6)
    assert union_grid([left]) == (left, [(0, 0)])


def test_union_grid_failures_name_the_problem() -> None:
    left = _s2_grid(600000.0, 5000040.0)
    with pytest.raises(ValueError, match="32633.*32634"):
        union_grid([left, _s2_grid(600000.0, 5000040.0, epsg=32634)])
    with pytest.raises(ValueError, match=r"10\.0.*20\.0"):
        union_grid([left, _s2_grid(600000.0, 5000040.0, res=20.0)])
    with pytest.raises(ValueError, match=r"978\.5"):
        union_grid([left, _s2_grid(609785.0, 5000040.0)])
    with pytest.raises(ValueError, match="whole pixels"):
        union_grid([left, _s2_grid(609780.0 + 1e-4, 5000040.0)])
    with pytest.raises(ValueError, match="at least one"):
        union_grid([])


ALBERS = "+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=23 +lon_0=-96 +ellps=GRS80 +units=m"


def test_grids_carry_a_crs_object_custom_or_epsg():
    import pyproj

    custom = pyproj.CRS.from_user_input(ALBERS)
    t = Affine(30, 0, 0, 0, -30, 0)
    grid = GridSpec(custom, t, 10, 10)
    assert grid.crs is custom and grid.crs_epsg is None
    assert GridSpec(32633, t, 10, 10).crs == pyproj.CRS.from_epsg(32633)
    assert GridSpec("EPSG:32633", t, 10, 10).crs_epsg == 32633
    assert GridSpec(pyproj.CRS.from_wkt(custom.to_wkt()), t, 10, 10) == grid  # equivalent CRSs
    assert grid.sub(Window(1, 1, 2, 2)).crs is custom
    assert pickle.loads(pickle.dumps(grid)) == grid
    union, offsets = union_grid([grid, GridSpec(custom, t @ Affine.translation(5, 0), 10, 10)])
    assert union.crs is custom and union.width == 15 and offsets == [(0, 0), (0, 5)]
    md = CogMetadata.from_struct({
        "image_width": 10, "image_height": 10, "tile_width": 16, "tile_height": 16,
        "dtype": "uint8", "transform": list(t)[:6], "tile_offsets": [0],
        "tile_byte_counts": [1], "crs_wkt": custom.to_wkt()})
    assert GridSpec.from_metadata(md).crs == custom


def test_union_errors_name_the_grids_given_labels():
    t = Affine(10, 0, 0, 0, -10, 0)
    labels = ["record 'a', band 'B1', href a.tif", "record 'b', band 'B1', href b.tif"]
    with pytest.raises(ValueError, match=r"record 'a'.* in EPSG:32633, record 'b'.* in "
                                         r"EPSG:32632"):
        union_grid([GridSpec(32633, t, 5, 5), GridSpec(32632, t, 5, 5)], labels)
    with pytest.raises(ValueError, match=r"\(record 'b', band 'B1', href b.tif\)"):
        union_grid([GridSpec(32633, t, 5, 5), GridSpec(32633, Affine(20, 0, 0, 0, -20, 0),
                                                       5, 5)], labels)
    with pytest.raises(ValueError, match=r"offsets from record 'a'.*: record 'b'.*: "):
        union_grid([GridSpec(32633, t, 5, 5),
                    GridSpec(32633, t @ Affine.translation(0.5, 0), 5, 5)], labels)
