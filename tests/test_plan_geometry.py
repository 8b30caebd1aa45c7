"""Geometry coercion of every accepted input form, CRS lookup, and reprojection."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyproj
import pytest
import shapely

from rasteret_dask.plan import geometry as geometry_module
from rasteret_dask.plan.geometry import coerce_geometries, geometry_crs, reproject_geometries

POLY = shapely.Polygon([(10.0, 50.0), (11.0, 50.0), (11.0, 51.0), (10.0, 50.5)])
BOX = shapely.box(0.5, 1.5, 2.5, 3.5)


class _GeoArrowWKB(pa.ExtensionType):
    def __init__(self) -> None:
        super().__init__(pa.binary(), "geoarrow.wkb")

    def __arrow_ext_serialize__(self) -> bytes:
        return b"{}"

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):  # noqa: ANN001, ANN206
        return cls()


class _GeoInterface:
    __geo_interface__ = {"type": "Point", "coordinates": (3.0, 4.0)}


def _same(result: list[shapely.Geometry], expected: list[shapely.Geometry]) -> None:
    assert len(result) == len(expected)
    for got, want in zip(result, expected):
        assert isinstance(got, shapely.Geometry)
        assert shapely.equals_exact(got, want, tolerance=0), (got.wkt, want.wkt)


def test_shapely_geometry_and_sequences() -> None:
    _same(coerce_geometries(POLY), [POLY])
    _same(coerce_geometries([POLY, BOX]), [POLY, BOX])
    _same(coerce_geometries((POLY, BOX)), [POLY, BOX])
    _same(coerce_geometries(np.array([POLY, None, BOX], dtype=object)), [POLY, BOX])


def test_wkb_and_wkt() -> None:
    _same(coerce_geometries(POLY.wkb), [POLY])
    _same(coerce_geometries([POLY.wkb, bytearray(BOX.wkb)]), [POLY, BOX])
    _same(coerce_geometries(memoryview(POLY.wkb)), [POLY])
    _same(coerce_geometries(BOX.wkt), [BOX])


def test_geojson_forms() -> None:
    geometry = shapely.geometry.mapping(POLY)
    feature = {"type": "Feature", "properties": {"a": 1}, "geometry": geometry}
    empty_feature = {"type": "Feature", "properties": {}, "geometry": None}
    collection = {"type": "FeatureCollection", "features": [feature, empty_feature, feature]}
    _same(coerce_geometries(geometry), [POLY])
    _same(coerce_geometries(feature), [POLY])
    _same(coerce_geometries(collection), [POLY, POLY])
    _same(coerce_geometries([geometry, feature]), [POLY, POLY])
    _same(coerce_geometries(json.loads(json.dumps(geometry))), [POLY])
    _same(coerce_geometries(_GeoInterface()), [shapely.Point(3.0, 4.0)])


def test_bbox_forms() -> None:
    for bbox in [(0.5, 1.5, 2.5, 3.5), [0.5, 1.5, 2.5, 3.5], np.array([0.5, 1.5, 2.5, 3.5])]:
        _same(coerce_geometries(bbox), [BOX])
    _same(coerce_geometries((0, 1, 2, 3)), [shapely.box(0, 1, 2, 3)])
    _same(coerce_geometries([(0, 1, 2, 3), BOX]), [shapely.box(0, 1, 2, 3), BOX])


def test_geopandas_active_geometry() -> None:
    series = gpd.GeoSeries([POLY, None, BOX], crs=4326)
    _same(coerce_geometries(series), [POLY, BOX])
    frame = gpd.GeoDataFrame(
        {"name": ["a", "b"], "geometry": [BOX, BOX], "aoi": gpd.GeoSeries([POLY, POLY])},
        geometry="geometry",
    )
    _same(coerce_geometries(frame), [BOX, BOX])
    _same(coerce_geometries(frame.set_geometry("aoi")), [POLY, POLY])


def test_arrow_wkb_arrays() -> None:
    values = [POLY.wkb, None, BOX.wkb]
    for typ in (pa.binary(), pa.large_binary()):
        _same(coerce_geometries(pa.array(values, typ)), [POLY, BOX])
    table = pa.table({"id": [1, 2, 3], "aoi": pa.array(values, pa.binary())})
    chunked = pa.concat_tables([table, table]).column("aoi")
    assert isinstance(chunked, pa.ChunkedArray) and chunked.num_chunks == 2
    _same(coerce_geometries(chunked), [POLY, BOX, POLY, BOX])
    extension = pa.ExtensionArray.from_storage(_GeoArrowWKB(), pa.array(values, pa.binary()))
    _same(coerce_geometries(extension), [POLY, BOX])
    _same(coerce_geometries(pa.chunked_array([extension, extension])), [POLY, BOX] * 2)


def test_arrow_tables_find_their_geometry_column() -> None:
    wkb = pa.array([POLY.wkb, BOX.wkb], pa.binary())
    field = pa.field("aoi", pa.binary(), metadata={"ARROW:extension:name": "geoarrow.wkb"})
    by_field = pa.table(
        [pa.array(["a", "b"]), wkb], schema=pa.schema([("name", pa.string()), field])
    )
    _same(coerce_geometries(by_field), [POLY, BOX])
    geo = {"version": "1.1.0", "primary_column": "shape", "columns": {"shape": {"encoding": "WKB"}}}
    by_geo = pa.table({"other": wkb, "shape": wkb}).replace_schema_metadata(
        {"geo": json.dumps(geo)}
    )
    _same(coerce_geometries(by_geo), [POLY, BOX])
    _same(coerce_geometries(pa.table({"geometry": wkb}).to_batches()[0]), [POLY, BOX])


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (None, TypeError, "None"),
        (42, TypeError, "int"),
        ([POLY, 3.5j], TypeError, "complex"),
        ({"type": "Banana", "coordinates": []}, ValueError, "Banana"),
        ({"type": "Polygon"}, ValueError, "Polygon"),
        (b"\x01\x02\x03", ValueError, "WKB"),
        ("POLYGON ((0 0, 1", ValueError, "WKT"),
        ([], ValueError, "no non-empty geometry"),
        ([None, shapely.Polygon()], ValueError, "no non-empty geometry"),
        ((3, 1, 2, 4), ValueError, "bbox"),
        (np.zeros((2, 4)), TypeError, "float64"),
        (pa.array([1, 2]), TypeError, "int64"),
        (pa.table({"x": [1]}), TypeError, "no geometry column"),
    ],
)
def test_invalid_input_names_what_was_received(value: object, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        coerce_geometries(value)


def test_geometry_crs() -> None:
    assert geometry_crs(gpd.GeoSeries([POLY], crs=32633)) == pyproj.CRS.from_epsg(32633)
    assert geometry_crs(gpd.GeoDataFrame(geometry=[POLY], crs=4326)) == pyproj.CRS.from_epsg(4326)
    assert geometry_crs(gpd.GeoSeries([POLY])) is None
    assert geometry_crs([POLY]) is None
    assert geometry_crs(POLY) is None
    wkb = pa.array([POLY.wkb], pa.binary())
    geo = {"primary_column": "g", "columns": {"g": {"encoding": "WKB"}}}
    table = pa.table({"g": wkb}).replace_schema_metadata({"geo": json.dumps(geo)})
    assert geometry_crs(table) == pyproj.CRS.from_user_input("OGC:CRS84")
    geo["columns"]["g"]["crs"] = pyproj.CRS.from_epsg(32633).to_json_dict()
    table = table.replace_schema_metadata({"geo": json.dumps(geo)})
    assert geometry_crs(table) == pyproj.CRS.from_epsg(32633)


def test_reproject_round_trip_with_densify() -> None:
    aoi = shapely.Polygon([(12.0, 47.0), (14.5, 47.0), (14.5, 49.0), (12.0, 49.0)])
    utm = reproject_geometries([aoi], 4326, 32633)[0]
    assert len(shapely.get_coordinates(utm)) > len(shapely.get_coordinates(aoi))
    back = reproject_geometries([utm], "EPSG:32633", pyproj.CRS.from_epsg(4326), densify=0)[0]
    assert shapely.hausdorff_distance(back, aoi) < 1e-6
    assert shapely.get_coordinates(back).shape == shapely.get_coordinates(utm).shape

    # The northern edge is a parallel: in UTM it is a curve, which only the densified ring follows.
    transformer = pyproj.Transformer.from_crs(4326, 32633, always_xy=True)
    middle = shapely.Point(transformer.transform(13.25, 49.0))
    straight = reproject_geometries([aoi], 4326, 32633, densify=0)[0]
    assert len(shapely.get_coordinates(straight)) == len(shapely.get_coordinates(aoi))
    assert utm.exterior.distance(middle) < 1.0
    assert straight.exterior.distance(middle) > 100.0
    fine = reproject_geometries([aoi], 4326, 32633, densify=0.01)[0]
    assert len(shapely.get_coordinates(fine)) > len(shapely.get_coordinates(utm))
    assert fine.exterior.distance(middle) < 1.0


def test_reproject_identity_and_cache() -> None:
    geoms = [POLY, BOX]
    same = reproject_geometries(geoms, 4326, "EPSG:4326")
    assert all(a is b for a, b in zip(same, geoms))
    geometry_module._transformer.cache_clear()
    reproject_geometries([BOX], 4326, 3857)
    reproject_geometries([POLY], "EPSG:4326", 3857)
    info = geometry_module._transformer.cache_info()
    assert info.misses == 1 and info.hits == 1


def test_reproject_points_lines_and_errors() -> None:
    point, line = shapely.Point(13.0, 48.0), shapely.LineString([(13.0, 48.0), (13.5, 48.2)])
    out = reproject_geometries([point, line], 4326, 32633)
    assert out[0].geom_type == "Point" and out[1].geom_type == "LineString"
    transformer = pyproj.Transformer.from_crs(4326, 32633, always_xy=True)
    assert out[0].equals_exact(shapely.Point(transformer.transform(13.0, 48.0)), 1e-6)
    with pytest.raises(ValueError, match="non-finite"):
        reproject_geometries([shapely.Point(0.0, 91.0)], 4326, 3857)
    with pytest.raises(ValueError, match="densify"):
        reproject_geometries([point], 4326, 32633, densify=-1.0)


def test_crss_on_different_bodies_raise_a_celestial_body_error():
    mars = "+proj=longlat +R=3396190 +no_defs"
    box = shapely.box(10, 10, 11, 11)
    with pytest.raises(geometry_module.CelestialBodyError) as info:
        geometry_module.reproject_geometries([box], 4326, mars)
    assert info.value.bodies == ("Earth", "Mars") and "EPSG:4326" in str(info.value)
    eqc = pyproj.CRS("+proj=eqc +R=3396190 +units=m +no_defs")
    assert geometry_module.body_lonlat(eqc) == eqc.geodetic_crs
    moved = geometry_module.reproject_geometries([box], mars, eqc)[0]
    assert moved.bounds[0] == pytest.approx(10 * 3396190 * np.pi / 180)
