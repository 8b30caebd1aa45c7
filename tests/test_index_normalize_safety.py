"""Derived columns are never trusted: partition keys from datetime, CRS84 footprints only,
antimeridian footprints split with bboxes that queries near 180 find and queries at 0 miss."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.index import filters as F
from rasteret_dask.index.footprints import (
    crossing_mask,
    lonlat_bounds,
    out_of_range_mask,
    split_at_antimeridian,
    union_bounds,
)
from rasteret_dask.index.normalize import normalize_table
from rasteret_dask.testing.tables import synthetic_table

CROSSING = shapely.Polygon([(179.5, -17.0), (-179.5, -17.0), (-179.5, -16.0), (179.5, -16.0)])


def _table(geometries: list, n_months: int = 1, **columns) -> pa.Table:
    base = synthetic_table(len(geometries), months=n_months, seed=5)
    table = base.set_column(base.schema.get_field_index(S.GEOMETRY), S.GEOMETRY,
                            pa.array(shapely.to_wkb(np.array(geometries, dtype=object)), pa.binary()))
    for name, values in columns.items():
        table = table.append_column(name, pa.array(values))
    return table


# --- partition keys ---------------------------------------------------------------------------

@pytest.mark.parametrize("months", [[13, 0, -1], [5, 5, 5]])
def test_year_and_month_are_recomputed_from_datetime(months):
    geoms = [shapely.box(8, 47, 9, 48)] * 3
    table = _table(geoms, year=[1999, 2031, -4], month=months)
    out = normalize_table(table)
    stamps = out[S.DATETIME].to_pylist()
    assert out[S.YEAR].to_pylist() == [t.year for t in stamps]
    assert out[S.MONTH].to_pylist() == [t.month for t in stamps]
    assert out.column_names.index(S.YEAR) == table.column_names.index(S.YEAR)  # kept in place


def test_contradicting_partition_keys_do_not_hide_records(tmp_path):
    geoms = [shapely.box(8, 47, 9, 48)] * 3
    table = _table(geoms, year=[1999, 1999, 1999], month=[13, 0, -1])
    stamps = normalize_table(table)[S.DATETIME].to_pylist()
    loaded = rd.build_collection_from_table(table, name="keys").export(tmp_path / "index")
    first, last = min(stamps), max(stamps)
    found = loaded.subset(date_range=(first.date().isoformat(), last.date().isoformat()))
    assert len(found) == 3
    folders = sorted(p.name for p in (tmp_path / "index").glob("year=*"))
    assert folders == [f"year={first.year}"]


# --- CRS84 ------------------------------------------------------------------------------------

def test_projected_footprints_are_refused_naming_the_record():
    utm = shapely.box(500_000, 5_200_000, 600_000, 5_300_000)
    table = _table([shapely.box(8, 47, 9, 48), utm, utm])
    with pytest.raises(ValueError) as info:
        normalize_table(table)
    message = str(info.value)
    assert "S2_00000001" in message and "(500000, 5.2e+06, 600000, 5.3e+06)" in message
    assert "and 1 more record" in message and "EPSG:4326" in message
    assert "S2_00000000" not in message


def test_latitude_past_the_pole_is_refused():
    with pytest.raises(ValueError, match=r"S2_00000000.*outside CRS84"):
        normalize_table(_table([shapely.box(8, 89, 9, 91)]))


def test_range_mask_accepts_the_limits_and_rejects_nan():
    bounds = np.array([[-180, -90, 180, 90], [0, 0, 180.5, 1], [0, -90.1, 1, 0],
                       [np.nan, 0, 1, 1], [-179.9, -1, -179, 1]], dtype=float)
    assert out_of_range_mask(bounds).tolist() == [False, True, True, True, False]


# --- antimeridian: pure -----------------------------------------------------------------------

def test_crossing_polygon_is_split_into_a_multipolygon():
    split = split_at_antimeridian(CROSSING)
    assert split.geom_type == "MultiPolygon" and len(split.geoms) == 2
    assert split.area == pytest.approx(1.0)  # not the 359-degree-wide band
    assert sorted(shapely.bounds(np.array(split.geoms))[:, 0].tolist()) == [-180.0, 179.5]
    assert split_at_antimeridian(split) is split  # already split: kept
    assert lonlat_bounds(np.array([split])).tolist() == [[179.5, -17.0, -179.5, -16.0]]


def test_split_keeps_holes_and_leaves_other_shapes_alone():
    outer = [(170, -20), (-170, -20), (-170, 0), (170, 0)]
    hole = [(175, -15), (-175, -15), (-175, -5), (175, -5)]
    split = split_at_antimeridian(shapely.Polygon(outer, [hole]))
    assert split.area == pytest.approx(20 * 20 - 10 * 10)
    world = shapely.box(-180, -90, 180, 90)
    polar = shapely.Polygon([(0, 80), (120, 80), (-120, 80), (0, 80)])  # winds around the pole
    ordinary = shapely.box(8, 47, 9, 48)
    assert crossing_mask(np.array([world, ordinary, CROSSING])).tolist() == [False, False, True]
    for shape in (world, polar, ordinary):
        assert split_at_antimeridian(shape) is shape


def test_bounds_across_the_antimeridian_stay_narrower_than_half_the_world():
    fiji = shapely.MultiPolygon([shapely.box(177, -19, 179, -17), shapely.box(-179.9, -17, -178, -16)])
    far = shapely.MultiPolygon([shapely.box(-100, 0, -99, 1), shapely.box(99, 0, 100, 1)])
    spread = shapely.MultiPolygon([shapely.box(-100, 0, -99, 1), shapely.box(0, 0, 1, 1),
                                   shapely.box(99, 0, 100, 1)])
    assert lonlat_bounds(np.array([fiji, far, spread])).tolist() == [
        [177.0, -19.0, -178.0, -16.0],  # the short way, across the date line
        [99.0, 0.0, -99.0, 1.0],        # 162 degrees across beats 200 degrees over Greenwich
        [-100.0, 0.0, 100.0, 1.0],      # no cover across the date line narrower than 180
    ]
    boxes = np.array([[179.5, -17, -179.5, -16], [170, -20, 175, -10], [-175, 0, -170, 5]])
    assert union_bounds(*boxes.T) == (170.0, -20.0, -170.0, 5.0)
    assert union_bounds(*boxes[1:].T) == (-175.0, -20.0, 175.0, 5.0)
    with_europe = np.array([[179.5, -17, -179.5, -16], [0, 40, 10, 50]])
    assert union_bounds(*with_europe.T) == (-180.0, -17.0, 180.0, 50.0)


def _circle_overlap(box: tuple[float, float, float, float], query: tuple[float, float]) -> bool:
    west, _, east, _ = box
    lo, hi = query
    if west <= east:
        return east >= lo and west <= hi
    return hi >= west or lo <= east


def test_bbox_expression_matches_overlap_on_the_circle():
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(400):
        if rng.random() < 0.3:  # crossing, narrower than 180 degrees
            west = rng.uniform(1, 180)
            east = rng.uniform(-180, min(west - 180.001, -0.001))
        else:
            west = rng.uniform(-180, 180)
            east = rng.uniform(west, 180)
        rows.append((west, -1.0, east, 1.0))
    table = pa.table({name: [r[i] for r in rows] for i, name in enumerate(S.BBOX_COLUMNS)})
    dataset = ds.dataset(table)
    for _ in range(150):
        lo = rng.uniform(-180, 180)
        hi = min(180.0, lo + rng.exponential(20))
        got = dataset.to_table(filter=F.bbox_expression((lo, -0.5, hi, 0.5))).num_rows
        assert got == sum(_circle_overlap(r, (lo, hi)) for r in rows), (lo, hi)


def test_row_group_statistics_still_prune(tmp_path):
    groups = {  # one row group each: Europe, straddling the prime meridian, the date line
        "europe": [(5.0, 45.0, 6.0, 46.0), (14.0, 54.0, 15.0, 55.0)],
        "greenwich": [(-1.5, 51.0, -0.5, 52.0), (0.5, 51.0, 1.5, 52.0)],
        "dateline": [(179.5, -17.0, -179.5, -16.0), (178.0, -18.0, 179.0, -17.0)],
    }
    rows = [box for boxes in groups.values() for box in boxes]
    table = pa.table({name: [r[i] for r in rows] for i, name in enumerate(S.BBOX_COLUMNS)})
    path = tmp_path / "groups.parquet"
    pq.write_table(table, path, row_group_size=2)
    fragment = next(iter(ds.dataset(path).get_fragments()))

    def kept(bbox) -> int:
        return len(fragment.split_by_row_group(F.bbox_expression(bbox), schema=table.schema))

    assert kept((100.0, 10.0, 101.0, 11.0)) == 0
    assert kept((-100.0, 10.0, -99.0, 11.0)) == 0
    assert kept((8.0, 47.0, 9.0, 48.0)) == 1
    assert kept((179.7, -16.8, 179.9, -16.2)) == 1
    assert kept((-179.9, -16.8, -179.7, -16.2)) == 1


# --- antimeridian: through normalisation, subset and an exported index -------------------------

def _dateline_table() -> pa.Table:
    geoms = [CROSSING, shapely.box(-0.5, -17.0, 0.5, -16.0), shapely.box(170.0, -17.0, 171.0, -16.0)]
    return _table(geoms, n_months=1)


def test_normalised_record_is_split_with_consistent_bboxes():
    out = normalize_table(_dateline_table())
    shape = shapely.from_wkb(out[S.GEOMETRY][0].as_py())
    assert shape.geom_type == "MultiPolygon" and shape.area == pytest.approx(1.0)
    expected = [179.5, -17.0, -179.5, -16.0]
    assert out[S.SCENE_BBOX][0].as_py() == expected
    assert [out[c][0].as_py() for c in S.BBOX_COLUMNS] == expected
    assert list(out[S.BBOX_STRUCT][0].as_py().values()) == expected
    again = normalize_table(out)  # a split footprint normalises to the same row
    assert again.select(out.column_names).equals(out)


def test_input_bbox_columns_are_replaced():
    table = _dateline_table()
    for name in S.BBOX_COLUMNS:
        table = table.append_column(name, pa.array([0.0, 0.0, 0.0]))
    out = normalize_table(table)
    assert out["bbox_minx"].to_pylist() == [179.5, -0.5, 170.0]


@pytest.mark.parametrize("exported", [False, True], ids=["in-memory", "exported"])
def test_queries_near_the_date_line_hit_and_at_zero_miss(exported, tmp_path):
    collection = rd.build_collection_from_table(_dateline_table(), name="dateline")
    if exported:
        collection = collection.export(tmp_path / "index")
    ids = collection.to_table(columns=[S.ID])[S.ID].to_pylist()
    crossing, greenwich, east = ids[0], ids[1], ids[2]
    if exported:  # rows come back in Hilbert order: name them by footprint
        table = collection.to_table(columns=[S.ID, "bbox_minx"])
        by_minx = dict(zip(table["bbox_minx"].to_pylist(), table[S.ID].to_pylist(), strict=True))
        crossing, greenwich, east = by_minx[179.5], by_minx[-0.5], by_minx[170.0]

    def found(**query) -> set[str]:
        return set(collection.subset(**query).to_table(columns=[S.ID])[S.ID].to_pylist())

    assert found(bbox=(179.7, -16.8, 179.9, -16.2)) == {crossing}
    assert found(bbox=(-179.9, -16.8, -179.7, -16.2)) == {crossing}
    assert found(bbox=(-0.1, -16.8, 0.1, -16.2)) == {greenwich}
    assert found(bbox=(90.0, -16.8, 100.0, -16.2)) == set()
    assert found(geometries=shapely.box(179.7, -16.8, 179.9, -16.2)) == {crossing}
    assert found(geometries=shapely.box(-179.9, -16.8, -179.7, -16.2)) == {crossing}
    assert found(geometries=shapely.box(-0.1, -16.8, 0.1, -16.2)) == {greenwich}
    assert found(geometries=shapely.box(170.2, -16.8, 179.7, -16.2)) == {crossing, east}
    assert collection.bounds == (-180.0, -17.0, 180.0, -16.0)
    assert collection.subset(bbox=(170, -20, 180, -10)).bounds == (170.0, -17.0, -179.5, -16.0)
    if exported:
        file = next((tmp_path / "index").glob("year=*/month=*/part-*.parquet"))
        geo = json.loads(pq.read_schema(file).metadata[b"geo"])["columns"]["geometry"]
        assert geo["bbox"] == [-180.0, -17.0, 180.0, -16.0]
        assert geo["geometry_types"] == ["MultiPolygon", "Polygon"]
