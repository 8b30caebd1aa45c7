"""Every table a Rasteret user brings: footprints in a declared CRS, projection columns, integer
years, null footprints, capsule objects, STAC items, href columns and pushed-down filters."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyproj
import pystac
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.index.normalize import normalize_table
from rasteret_dask.index.projection import epsg_of
from rasteret_dask.index.times import to_utc
from rasteret_dask.testing.tables import synthetic_table

MERCATOR = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
UTM32 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True)


def _footprints(table: pa.Table) -> np.ndarray:
    return shapely.from_wkb(table[S.GEOMETRY].to_numpy(zero_copy_only=False))


def _project(geoms: np.ndarray, transformer: pyproj.Transformer) -> np.ndarray:
    return shapely.transform(geoms, lambda xy: np.column_stack(
        transformer.transform(xy[:, 0], xy[:, 1])))


def _same(found: np.ndarray, expected: np.ndarray, tolerance: float) -> bool:
    """Footprints equal up to ``tolerance`` degrees (reprojection densifies their edges)."""
    return bool((shapely.hausdorff_distance(found, expected) <= tolerance).all())


def _with_geometry(table: pa.Table, field: pa.Field | str, values) -> pa.Table:
    return table.set_column(table.schema.get_field_index(S.GEOMETRY), field, values)


def _geoarrow_field(crs) -> pa.Field:
    metadata = {} if crs is None else {"crs": crs}
    return pa.field(S.GEOMETRY, pa.binary(),
                    metadata={b"ARROW:extension:name": b"geoarrow.wkb",
                              b"ARROW:extension:metadata": json.dumps(metadata).encode()})


# --- footprint CRS --------------------------------------------------------------------------

@pytest.mark.parametrize("crs", ["EPSG:3857", pyproj.CRS(3857).to_json_dict(),
                                 pyproj.CRS(3857).to_wkt()], ids=["code", "projjson", "wkt"])
def test_geoarrow_footprints_in_web_mercator_become_degrees(crs):
    base = synthetic_table(4, months=1)
    lonlat = _footprints(base)
    metres = _project(lonlat, MERCATOR)
    out = normalize_table(_with_geometry(base, _geoarrow_field(crs), pa.array(shapely.to_wkb(metres))))
    boxes = np.array(out[S.SCENE_BBOX].to_pylist())
    np.testing.assert_allclose(boxes, shapely.bounds(lonlat), atol=1e-6)
    assert np.abs(boxes).max() < 180  # not 111319 "degrees"
    assert _same(_footprints(out), lonlat, 1e-6)


def test_reprojected_edges_are_densified():
    # a 400 x 400 km square in UTM far from the central meridian: straight in metres, its edges
    # bend in degrees; the stored footprint follows them (edges densified before reprojecting)
    to_lonlat = pyproj.Transformer.from_crs(32632, 4326, always_xy=True)
    square = shapely.box(200_000, 6_000_000, 600_000, 6_400_000)
    base = synthetic_table(1, months=1)
    out = normalize_table(_with_geometry(base, _geoarrow_field("EPSG:32632"),
                                         pa.array([shapely.to_wkb(square)])))
    footprint = _footprints(out)[0]
    truth = _project(np.array([shapely.segmentize(square, 1_000)]), to_lonlat)[0]
    corners_only = _project(np.array([square]), to_lonlat)[0]
    assert shapely.hausdorff_distance(footprint, truth) < 0.001
    assert shapely.hausdorff_distance(corners_only, truth) > 0.04


def test_geodataframe_crs_is_honoured():
    import geopandas as gpd

    base = synthetic_table(3, months=1)
    lonlat = _footprints(base)
    frame = gpd.GeoDataFrame(base.drop_columns([S.GEOMETRY]).to_pandas(),
                             geometry=gpd.GeoSeries(_project(lonlat, UTM32), crs=32632))
    out = rd.build_collection_from_table(frame, name="gdf").to_table()
    assert _same(_footprints(out), lonlat, 2e-3)  # UTM's straight edges bend in degrees
    assert np.abs(np.array(out[S.SCENE_BBOX].to_pylist())).max() < 180
    # GeoPandas' own Arrow export (geoarrow.wkb with PROJJSON) reads the same
    arrow = pa.table(frame.to_arrow(geometry_encoding="WKB"))
    again = rd.build_collection_from_table(arrow, name="gdf-arrow").to_table()
    assert again[S.GEOMETRY].to_pylist() == out[S.GEOMETRY].to_pylist()
    # a frame whose active geometry column has another name
    renamed = frame.rename_geometry("footprint")
    third = rd.build_collection_from_table(renamed, name="g").to_table()
    assert third[S.GEOMETRY].to_pylist() == out[S.GEOMETRY].to_pylist()


def test_geoparquet_file_crs_is_honoured_and_wkb_without_crs_stays_crs84(tmp_path):
    import geopandas as gpd

    base = synthetic_table(3, months=1)
    lonlat = _footprints(base)
    frame = gpd.GeoDataFrame(base.drop_columns([S.GEOMETRY, S.ASSETS]).to_pandas(),
                             geometry=gpd.GeoSeries(_project(lonlat, MERCATOR), crs=3857))
    frame["href"] = [f"https://example.com/{i}.tif" for i in range(3)]
    frame.to_parquet(tmp_path / "mercator.parquet")
    collection = rd.build_from_table(tmp_path / "mercator.parquet", name="m",
                                     workspace_dir=tmp_path / "ws", href_column="href",
                                     enrich_cog=False)
    assert _same(_footprints(collection.to_table().sort_by(S.ID)), lonlat, 1e-6)
    plain = normalize_table(base)  # WKB with no declared CRS is CRS84 as given
    assert plain[S.GEOMETRY].to_pylist() == base[S.GEOMETRY].to_pylist()


def test_declared_crs84_and_epsg4326_are_not_transformed():
    base = synthetic_table(2, months=1)
    for crs in ("OGC:CRS84", "EPSG:4326"):
        out = normalize_table(_with_geometry(base, _geoarrow_field(crs), base[S.GEOMETRY]))
        assert out[S.GEOMETRY].to_pylist() == base[S.GEOMETRY].to_pylist()


def test_unreadable_declared_crs_and_bad_reprojection_name_the_problem():
    base = synthetic_table(2, months=1)
    with pytest.raises(ValueError, match="declares the CRS 'EPSG:999999'"):
        normalize_table(_with_geometry(base, _geoarrow_field("EPSG:999999"), base[S.GEOMETRY]))
    utm = _project(_footprints(base), UTM32)
    wild = pa.array(shapely.to_wkb([utm[0], shapely.box(0, 0, 1e12, 1e12)]))
    with pytest.raises(ValueError, match=r"record 'S2_00000001'.*EPSG:32632"):
        normalize_table(_with_geometry(base, _geoarrow_field("EPSG:32632"), wild))


# --- null footprints, non-WKB binary --------------------------------------------------------

def test_null_and_empty_footprints_are_records_without_one():
    base = synthetic_table(3, months=1)
    values = [None, shapely.to_wkb(shapely.Polygon()), base[S.GEOMETRY][2].as_py()]
    out = normalize_table(_with_geometry(base, S.GEOMETRY, pa.array(values, pa.binary())))
    assert out[S.GEOMETRY].to_pylist()[:2] == [None, None]
    assert out[S.SCENE_BBOX].to_pylist()[:2] == [None, None]
    assert out["bbox_minx"].null_count == 2 and out[S.BBOX_STRUCT].null_count == 2
    assert out[S.SCENE_BBOX][2].as_py() is not None
    all_null = normalize_table(_with_geometry(base, S.GEOMETRY, pa.nulls(3)))
    assert all_null[S.GEOMETRY].type == pa.binary() and all_null[S.GEOMETRY].null_count == 3


def test_binary_that_is_not_wkb_says_how_to_convert():
    base = synthetic_table(2, months=1)
    blobs = pa.array([b"\x00\x00\x00\x00\x01\x02", base[S.GEOMETRY][1].as_py()])
    with pytest.raises(ValueError) as info:
        normalize_table(_with_geometry(base, S.GEOMETRY, blobs))
    message = str(info.value)
    assert "'S2_00000000'" in message and "not WKB" in message and "ST_AsWKB" in message
    assert "S2_00000001" not in message


# --- projection columns --------------------------------------------------------------------

def test_proj_code_beats_a_stale_proj_epsg():
    base = synthetic_table(3, months=1)
    table = base.set_column(base.schema.get_field_index(S.EPSG), S.EPSG,
                            pa.array([99999, 32633, None], pa.int32()))
    table = table.append_column("proj:code", pa.array(["EPSG:32632", None, "epsg:32634"]))
    assert normalize_table(table)[S.EPSG].to_pylist() == [32632, 32633, 32634]


@pytest.mark.parametrize("column, value", [
    ("proj:wkt2", pyproj.CRS(32632).to_wkt()),
    ("proj:projjson", json.dumps(pyproj.CRS(32632).to_json_dict())),
    ("crs", "EPSG:32632"),
    ("crs", pyproj.CRS(32632).to_wkt()),
])
def test_proj_epsg_is_derived_when_absent(column, value):
    base = synthetic_table(2, months=1).drop_columns([S.EPSG])
    out = normalize_table(base.append_column(column, pa.array([value, None])))
    assert out[S.EPSG].to_pylist() == [32632, None]
    assert out[S.EPSG].type == pa.int32() and out[column].to_pylist()[0] == value  # kept


def test_projjson_struct_column_and_integer_crs_column():
    base = synthetic_table(2, months=1).drop_columns([S.EPSG])
    structs = pa.array([pyproj.CRS(32631).to_json_dict(), None])
    assert normalize_table(base.append_column("proj:projjson", structs))[S.EPSG].to_pylist() \
        == [32631, None]
    ints = base.append_column("crs", pa.array([32630, 0]))
    assert normalize_table(ints)[S.EPSG].to_pylist() == [32630, None]


def test_unreadable_projection_names_the_record():
    base = synthetic_table(2, months=1).drop_columns([S.EPSG])
    with pytest.raises(ValueError, match=r"'proj:wkt2' of record 'S2_00000001'"):
        normalize_table(base.append_column("proj:wkt2", pa.array([None, "not a crs"])))


def test_epsg_of_accepts_the_usual_spellings():
    assert epsg_of(32632) == 32632 and epsg_of("32632") == 32632
    assert epsg_of(" EPSG : 32632 ") == 32632 and epsg_of(pyproj.CRS(3857).to_json_dict()) == 3857
    assert epsg_of(None) is None and epsg_of("") is None and epsg_of(0) is None
    custom = pyproj.CRS.from_proj4("+proj=tmerc +lon_0=3.3 +ellps=GRS80").to_wkt()
    assert epsg_of(custom) is None  # a CRS without an EPSG code: left to the header
    with pytest.raises(ValueError):
        epsg_of(True)


# --- timestamps ------------------------------------------------------------------------------

def test_integer_years_dates_and_iso_text_become_utc_timestamps():
    problems: list[str] = []
    years = to_utc(pa.chunked_array([pa.array([2023, None, 1])]), "datetime", problems.append)
    assert years.type == S.DATETIME_TYPE and not problems
    assert years.to_pylist() == [dt.datetime(2023, 1, 1, tzinfo=dt.UTC), None,
                                 dt.datetime(1, 1, 1, tzinfo=dt.UTC)]
    dates = to_utc(pa.chunked_array([pa.array([dt.date(2024, 3, 5)])]), "d", problems.append)
    assert dates.to_pylist() == [dt.datetime(2024, 3, 5, tzinfo=dt.UTC)]
    text = to_utc(pa.chunked_array([pa.array(["2024", "2024-03-05T12:00:00+02:00"])]), "t",
                  problems.append)
    assert text.to_pylist() == [dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                                dt.datetime(2024, 3, 5, 10, tzinfo=dt.UTC)]
    assert to_utc(pa.chunked_array([pa.array([20240305])]), "datetime", problems.append) is None
    assert "not years" in problems[0] and "20240305" in problems[0]


def test_integer_year_table_is_partitioned_by_year():
    base = synthetic_table(3, months=1)
    table = base.set_column(1, S.DATETIME, pa.array([2022, 2023, 2023]))
    out = rd.build_collection_from_table(table, name="years")
    assert out.to_table()[S.YEAR].to_pylist() == [2022, 2023, 2023]
    assert len(out.subset(date_range=("2023-01-01", "2023-12-31"))) == 2


# --- inputs ----------------------------------------------------------------------------------

class _Stream:
    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self.table.__arrow_c_stream__(requested_schema)


class _Batch:
    def __init__(self, batch: pa.RecordBatch) -> None:
        self.batch = batch

    def __arrow_c_array__(self, requested_schema=None):
        return self.batch.__arrow_c_array__(requested_schema)


def test_capsule_objects_and_readers_are_tables():
    base = synthetic_table(4, months=1)
    for data in (_Stream(base), _Batch(base.to_batches()[0]), base.to_reader()):
        out = rd.build_collection_from_table(data, name="capsule")
        assert sorted(out.to_table()[S.ID].to_pylist()) == base[S.ID].to_pylist()
    with pytest.raises(TypeError, match="__arrow_c_stream__"):
        rd.build_collection_from_table(object(), name="x")


def _items(n: int = 3) -> list[dict]:
    items = []
    for i in range(n):
        geometry = None if i == 2 else json.loads(shapely.to_geojson(shapely.box(i, 0, i + 1, 1)))
        items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": f"item-{i}",
            "geometry": geometry, "bbox": None if geometry is None else [i, 0, i + 1, 1],
            "properties": {"datetime": f"2024-0{i + 1}-10T00:00:00Z", "proj:code": "EPSG:32631",
                           "eo:cloud_cover": 10.0 * i},
            "assets": {"red": {"href": f"https://example.com/{i}/red.tif",
                               "type": "image/tiff; application=geotiff", "roles": ["data"]},
                       "thumbnail": {"href": f"https://example.com/{i}.png",
                                     "type": "image/png"}},
            "links": [],
        })
    return items


def test_item_collections_and_item_lists_are_tables(tmp_path):
    dicts = _items()
    forms = [dicts, pystac.ItemCollection([pystac.Item.from_dict(d) for d in dicts]),
             [pystac.Item.from_dict(d) for d in dicts],
             {"type": "FeatureCollection", "features": dicts}]
    for form in forms:
        table = rd.build_collection_from_table(form, name="items").to_table().sort_by(S.ID)
        assert table[S.ID].to_pylist() == ["item-0", "item-1", "item-2"]
        assert table[S.ASSETS].type == S.assets_type(["red"])
        assert table[S.EPSG].to_pylist() == [32631] * 3
        assert table[S.GEOMETRY].to_pylist()[2] is None  # an item without geometry is kept
    built = rd.build_from_table(forms[1], name="ic", workspace_dir=tmp_path,
                                band_codes={"R": "red"}, enrich_cog=False)
    assert built.bands == ["R"] and len(built) == 3


# --- build_from_table: href columns, band indices, pushed-down filters -----------------------

def _record_table(n: int = 4) -> pa.Table:
    base = synthetic_table(n, months=2, seed=3).drop_columns([S.ASSETS])
    return base.append_column("path", pa.array([f"https://example.com/t{i}.tif"
                                                 for i in range(n)]))


def test_href_column_with_band_index_map_names_the_bands(tmp_path):
    one = rd.build_from_table(_record_table(), name="one", workspace_dir=tmp_path,
                              href_column="path", band_index_map={"A0": 0, "A1": 1},
                              enrich_cog=False)
    assets = one.to_table()[S.ASSETS][0].as_py()
    assert one.bands == ["A0", "A1"]
    assert assets["A0"]["band_index"] == 0 and assets["A1"]["band_index"] == 1
    assert assets["A0"]["href"] == assets["A1"]["href"]
    two = rd.build_from_table(_record_table(), name="two", workspace_dir=tmp_path,
                              href_column={"A0": "path", "A1": "path"},
                              band_index_map={"A0": 0, "A1": 1}, enrich_cog=False)
    assets = two.to_table()[S.ASSETS][0].as_py()
    assert assets["A0"]["band_index"] == 0 and assets["A1"]["band_index"] == 1
    with pytest.raises(ValueError, match="href column 'nope'"):
        rd.build_from_table(_record_table(), name="bad", workspace_dir=tmp_path,
                            href_column="nope", enrich_cog=False)


def test_filter_expr_and_columns_are_pushed_into_the_parquet_scan(tmp_path):
    table = _record_table(6).append_column("unused", pa.array(["x"] * 6))
    pq.write_table(table, tmp_path / "records.parquet", row_group_size=2)
    wanted = ["S2_00000001", "S2_00000004"]
    columns = [S.ID, S.DATETIME, S.GEOMETRY, "path"]
    built = rd.build_from_table(tmp_path / "records.parquet", name="f",
                                workspace_dir=tmp_path / "ws", href_column="path",
                                filter_expr=ds.field(S.ID).isin(wanted), columns=columns,
                                enrich_cog=False)
    out = built.to_table()
    assert sorted(out[S.ID].to_pylist()) == wanted and "unused" not in out.column_names
    # the same on an in-memory table
    built = rd.build_from_table(table, name="g", workspace_dir=tmp_path / "ws",
                                href_column="path", filter_expr=ds.field(S.ID) == wanted[0],
                                enrich_cog=False)
    assert built.to_table()[S.ID].to_pylist() == [wanted[0]]


def test_column_map_keeps_a_renamed_geometry_crs(tmp_path):
    import geopandas as gpd

    base = synthetic_table(2, months=1)
    lonlat = _footprints(base)
    frame = gpd.GeoDataFrame(base.drop_columns([S.GEOMETRY]).to_pandas().rename(
        columns={"id": "fid"}), geometry=gpd.GeoSeries(_project(lonlat, UTM32), crs=32632))
    frame = frame.rename_geometry("geom")
    frame.drop(columns=["assets"]).assign(path="https://example.com/a.tif").to_parquet(
        tmp_path / "aef.parquet")
    built = rd.build_from_table(tmp_path / "aef.parquet", name="r", workspace_dir=tmp_path / "w",
                                column_map={"fid": "id", "geom": "geometry"},
                                href_column="path", band_index_map={"A00": 0},
                                enrich_cog=False)
    assert _same(_footprints(built.to_table().sort_by(S.ID)), lonlat, 2e-3)
