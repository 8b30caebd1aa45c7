"""sample_points match modes, nodata fallback and tables of points (issue 19 item 10), and
get_gdf keeping a query table's columns; every value checked against rasterio's sample."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import shapely

from rasteret_dask.read.matching import (
    SampleRow,
    check_match,
    is_valid,
    nearest_valid,
    pick_rows,
    ring_offsets,
)
from rasteret_dask.read.queries import read_queries
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.servers import RangeServer

from .test_read_helpers import build, single

BANDS = {"B1": 0, "B2": 1}
TIMES = {"r0": "2024-01-01T00:00:00", "r1": "2024-03-01T00:00:00", "r2": "2024-05-01T00:00:00"}
# (row, col) image positions of the points
PIXELS = {
    "A": (50.5, 400.5),    # valid everywhere
    "B": (101.8, 101.3),   # r2 B1 nodata in a 4 x 4 patch: the fallback needs ring 2
    "C": (300.5, 256.2),   # r1 B2 and r2 nodata right of a tile edge: neighbours in tile 0
    "D": (5.5, 5.5),       # inside the 16 x 16 nodata corner of every file
    "E": (10.5, -3.0),     # outside every image
    "F": (590.5, 590.5),   # valid everywhere, last tile
}
POINT_TIMES = ["2024-02-20", "2024-06-01", "2024-01-02", "2024-04-01", "2024-03-01",
               "2023-12-01"]


def _pixels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 5000, size=(2, 600, 600), dtype=np.uint16)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Three records of one two-band file each (nodata 0, patches of nodata), over HTTP."""
    root = tmp_path_factory.mktemp("match")
    data = {rid: _pixels(n) for n, rid in enumerate(TIMES)}
    data["r2"][0, 100:104, 100:104] = 0
    data["r2"][:, 299:302, 256:263] = 0
    data["r1"][1, 299:302, 256:263] = 0
    paths = {rid: write_cog(root / f"{rid}.tif", data=a, blocksize=256, nodata=0, predictor=2)
             for rid, a in data.items()}
    with RangeServer(root) as server:
        collection = build([single(p, href=server.href(p.name), bands=BANDS, rid=rid,
                                   when=TIMES[rid]) for rid, p in paths.items()])
        with rasterio.open(paths["r0"]) as src:
            transform, epsg = src.transform, src.crs.to_epsg()
        points = [shapely.Point(*(transform @ (c, r))) for r, c in PIXELS.values()]
        yield collection, paths, points, epsg, server


def _brute_nearest(array: np.ndarray, row: float, col: float, radius: int, size,
                   invalid=lambda v: v == 0):
    """Nearest valid pixel by (ring, rectangle distance, scan order) over the whole window."""
    r0, c0 = math.floor(row), math.floor(col)
    best = None
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            ring = max(abs(dr), abs(dc))
            r, c = r0 + dr, c0 + dc
            if ring == 0 or not (0 <= r < array.shape[0] and 0 <= c < array.shape[1]):
                continue
            if invalid(array[r, c]):
                continue
            dy = max(r - row, row - (r + 1), 0) * size[1]
            dx = max(c - col, col - (c + 1), 0) * size[0]
            side = 0 if dr == -ring else 1 if dr == ring else 2 if dc == -ring else 3
            scan = dc if side < 2 else dr
            key = (ring, dx * dx + dy * dy, side, scan)
            if best is None or key < best[0]:
                best = (key, array[r, c].item())
    return None if best is None else best[1]


def _expected(paths, points, match, radius=0, times=None):
    """(point, record id, B1, B2) rows from rasterio: DatasetReader.sample for the point's
    pixel, the whole band for the fallback."""
    rows = []
    for k, p in enumerate(points):
        per = []
        for rid in sorted(paths, key=TIMES.get):
            with rasterio.open(paths[rid]) as src:
                col, row = ~src.transform @ (p.x, p.y)
                if not (0 <= row < src.height and 0 <= col < src.width):
                    continue
                values = [int(v) for v in next(src.sample([(p.x, p.y)]))]
                if radius:
                    size = (abs(src.transform.a), abs(src.transform.e))
                    for b in range(2):
                        if values[b] == 0:
                            found = _brute_nearest(src.read(b + 1), row, col, radius, size)
                            values[b] = values[b] if found is None else found
            per.append((k, rid, *values))
        if match == "all" or not per:
            rows.extend(per)
            continue
        valid = [r for r in per if r[2] != 0 and r[3] != 0] or per
        if match == "latest":
            rows.append(valid[-1])
        else:
            when = np.datetime64(times[k])
            rows.append(min(valid, key=lambda r: (abs(np.datetime64(TIMES[r[1]]) - when),
                                                  TIMES[r[1]])))
    return rows


def _got(table: pa.Table) -> list[tuple]:
    return [(r["point_index"], r["id"], r["B1"], r["B2"]) for r in table.to_pylist()]


@pytest.mark.parametrize("radius", [0, 2])
@pytest.mark.parametrize("match", ["all", "latest", "nearest_time"])
def test_every_match_mode_equals_rasterio(series, match, radius):
    import geopandas as gpd

    collection, paths, points, epsg, _ = series
    frame = gpd.GeoDataFrame({"plot": [f"p{k}" for k in range(len(points))],
                              "datetime": POINT_TIMES, "id": list(PIXELS)},
                             geometry=points, crs=epsg)
    table = collection.sample_points(frame, list(BANDS), match=match, max_distance_pixels=radius)
    want = _expected(paths, points, match, radius, POINT_TIMES)
    assert _got(table) == want
    # the point table's columns follow each row; its 'id' and 'datetime' are kept renamed
    for row in table.to_pylist():
        k = row["point_index"]
        assert row["plot"] == f"p{k}" and row["input_id"] == list(PIXELS)[k]
        assert row["input_datetime"] == POINT_TIMES[k]


def test_modes_pick_what_they_document(series):
    collection, _, points, epsg, _ = series
    latest = _got(collection.sample_points(points, list(BANDS), geometry_crs=epsg,
                                           match="latest"))
    ids = {k: rid for k, rid, *_ in latest}
    assert ids == {0: "r2", 1: "r1", 2: "r0", 3: "r2", 5: "r2"}  # D: none valid -> latest
    assert [v for k, _, *v in latest if k == 3] == [[0, 0]]
    filled = _got(collection.sample_points(points, list(BANDS), geometry_crs=epsg,
                                           match="latest", max_distance_pixels=1))
    assert {k: rid for k, rid, *_ in filled}[2] == "r2"  # ring 1 reaches across the tile edge
    assert {k: rid for k, rid, *_ in filled}[1] == "r1"  # the 4 x 4 patch needs ring 2


def test_fallback_reads_only_the_tiles_around_nodata_points(series):
    collection, paths, points, epsg, server = series
    one = collection.subset(id="r2")
    server.reset()
    table = one.sample_points([points[2]], ["B1"], geometry_crs=epsg, max_distance_pixels=1)
    assert server.count("GET") <= 3  # the point's tile, then the ring's two tiles
    with rasterio.open(paths["r2"]) as src:
        assert table["B1"].to_pylist() == [int(src.read(1)[300, 255])]
    server.reset()
    one.sample_points([points[0]], ["B1"], geometry_crs=epsg, max_distance_pixels=1)
    assert server.count("GET") == 1  # a valid pixel: no second plan


def test_nan_without_nodata_falls_back(tmp_path):
    data = np.arange(40 * 40, dtype="float32").reshape(40, 40) + 1
    data[10:13, 10:13] = np.nan
    path = write_cog(tmp_path / "f.tif", data=data, blocksize=16, predictor=3)
    collection = build([single(path)])
    with rasterio.open(path) as src:
        t, epsg = src.transform, src.crs.to_epsg()
        size = (abs(t.a), abs(t.e))
    point = shapely.Point(*(t @ (11.5, 11.5)))
    plain = collection.sample_points([point], ["B1"], geometry_crs=epsg)
    assert math.isnan(plain["B1"][0].as_py())
    filled = collection.sample_points([point], ["B1"], geometry_crs=epsg, max_distance_pixels=2)
    assert filled["B1"].to_pylist() == [_brute_nearest(data, 11.5, 11.5, 2, size, np.isnan)]


def test_arrow_point_table_with_named_geometry_column(series):
    collection, paths, points, epsg, _ = series
    table = pa.table({"site": ["x", "y"], "geom": shapely.to_wkb(points[:2]),
                      "datetime": pa.array([2024, 2024])})
    out = collection.sample_points(table, ["B1"], geometry_column="geom", geometry_crs=epsg,
                                   match="nearest_time")
    assert out["site"].to_pylist() == ["x", "y"] and "geom" not in out.column_names
    with rasterio.open(paths["r0"]) as src:  # 2024-01-01 is nearest the year 2024
        assert out["B1"].to_pylist() == [int(next(src.sample([(p.x, p.y)]))[0])
                                         for p in points[:2]]


def test_get_gdf_keeps_the_aoi_table_columns(series):
    import geopandas as gpd

    collection, paths, points, epsg, _ = series
    aois = gpd.GeoDataFrame({"field": ["north", "south"], "band": [1, 2]},
                            geometry=[points[0].buffer(30), points[5].buffer(30)], crs=epsg)
    frame = collection.subset(id="r1").get_gdf(aois, ["B1"])
    assert len(frame) == 2 and frame.crs.to_epsg() == epsg
    assert frame["field"].tolist() == ["north", "south"]
    assert frame["input_band"].tolist() == [1, 2] and frame["band"].tolist() == ["B1", "B1"]
    with rasterio.open(paths["r1"]) as src:
        for row in frame.itertuples():
            a, _, c, _, e, f = row.transform
            window = rasterio.windows.Window(round((c - src.transform.c) / a),
                                             round((src.transform.f - f) / -e),
                                             row.array.shape[1], row.array.shape[0])
            assert np.array_equal(row.array[row.array != 0],
                                  src.read(1, window=window)[row.array != 0])


def test_bad_arguments_fail_at_the_call(series):
    collection, _, points, epsg, _ = series
    with pytest.raises(ValueError, match="match must be one of"):
        collection.sample_points(points, ["B1"], match="newest")
    with pytest.raises(ValueError, match="max_distance_pixels must be an integer >= 0"):
        collection.sample_points(points, ["B1"], max_distance_pixels=-1)
    with pytest.raises(ValueError, match="needs a table of geometries with a 'datetime'"):
        collection.sample_points(points, ["B1"], geometry_crs=epsg, match="nearest_time")
    with pytest.raises(TypeError, match="geometry_column= names a column of a table"):
        collection.sample_points(points, ["B1"], geometry_column="geom")
    nulls = pa.table({"geometry": pa.array([shapely.to_wkb(points[0]), None])})
    with pytest.raises(ValueError, match=r"rows \[1\] have no geometry"):
        collection.sample_points(nulls, ["B1"], geometry_crs=epsg)
    with pytest.raises(ValueError, match="'where' is not a column"):
        collection.sample_points(nulls, ["B1"], geometry_column="where")


def test_read_queries_takes_the_declared_crs_and_keeps_columns():
    import geopandas as gpd

    frame = gpd.GeoDataFrame({"a": [1, 2]}, geometry=[shapely.Point(500000, 0)] * 2,
                             crs=32633)
    queries = read_queries(frame, geometry_crs=4326)
    assert queries.crs.to_epsg() == 32633 and queries.columns.column_names == ["a"]
    assert queries.times is None and len(queries) == 2
    plain = read_queries([shapely.Point(1, 2)], geometry_crs=3857)
    assert plain.crs.to_epsg() == 3857 and plain.columns is None


# pure rules ------------------------------------------------------------------------------


def test_validity():
    assert is_valid(3, 0.0) and not is_valid(0, 0.0) and not is_valid(None, None)
    assert not is_valid(float("nan"), None) and is_valid(0.0, None)
    assert not is_valid(float("nan"), float("nan")) and is_valid(1.5, float("nan"))


def test_ring_scan_order():
    assert ring_offsets(1) == [(-1, -1), (-1, 0), (-1, 1), (1, -1), (1, 0), (1, 1),
                               (0, -1), (0, 1)]
    assert len(ring_offsets(3)) == 24


def test_nearest_valid_first_ring_then_distance_then_scan_order():
    # ring 2 holds a closer pixel rectangle than anything valid in ring 1? ring 1 wins anyway
    pixels = {(4, 5): 7, (5, 7): 9}
    assert nearest_valid(5.9, 5.9, pixels, 2, (1.0, 1.0), None) == 7
    # within a ring, the rectangle nearest the point wins
    pixels = {(4, 4): 1, (6, 6): 2}
    assert nearest_valid(5.9, 5.9, pixels, 1, (1.0, 1.0), None) == 2
    # pixel size counts: wide pixels make the row neighbour nearer
    pixels = {(5, 6): 3, (6, 5): 4}
    assert nearest_valid(5.5, 5.5, pixels, 1, (10.0, 1.0), None) == 4
    # a tie goes to the first in scan order (top row before the left column)
    pixels = {(4, 5): 5, (5, 4): 6}
    assert nearest_valid(5.5, 5.5, pixels, 1, (1.0, 1.0), None) == 5
    assert nearest_valid(5.5, 5.5, {(4, 5): 0}, 1, (1.0, 1.0), 0.0) is None


def _row(point, rid, day, valid=True):
    return SampleRow(point, rid, np.datetime64(f"2024-01-{day:02d}", "ns"), {}, valid)


def test_pick_rows_ties_and_fallbacks():
    rows = [_row(0, "a", 1), _row(0, "b", 5), _row(0, "c", 5), _row(0, "d", 9, valid=False),
            _row(1, "e", 3, valid=False), _row(1, "f", 4, valid=False)]
    assert [r.record_id for r in pick_rows(rows, "all")] == list("abcdef")
    assert [r.record_id for r in pick_rows(rows, "latest")] == ["c", "f"]
    times = np.array(["2024-01-03", "2024-01-08"], dtype="datetime64[ns]")
    # point 0: a and b are both 2 days away -> the earlier; point 1: no valid row -> nearest
    assert [r.record_id for r in pick_rows(rows, "nearest_time", times)] == ["a", "f"]
    with pytest.raises(ValueError, match="own time"):
        pick_rows(rows, "nearest_time")
    with pytest.raises(ValueError):
        check_match("all", 1.5)
