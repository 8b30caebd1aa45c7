"""STAC band descriptions (scale, offset, nodata, data type) carried into ``raster_bands``:
from item dicts, stac-geoparquet tables and other asset columns; kept through the index."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rustac

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.index.normalize import normalize_table
from rasteret_dask.index.raster_bands import (
    BandScaling,
    band_scaling,
    raster_bands_of_assets,
    raster_bands_of_items,
    scaling_of_asset,
)
from rasteret_dask.ingest.stac_items import items_to_table
from rasteret_dask.testing.stac import sentinel2_items

S2 = BandScaling(scale=0.0001, offset=-0.1, nodata=0.0, data_type="uint16")


def test_stac_1_0_raster_bands_first_entry_or_the_band_index():
    asset = {"href": "s3://b/x.tif", "raster:bands": [
        {"scale": 0.0001, "offset": -0.1, "nodata": 0, "data_type": "uint16"},
        {"scale": 2, "nodata": "nan", "data_type": "float32"}]}
    assert scaling_of_asset(asset) == S2
    one = scaling_of_asset(asset, 1)
    assert (one.scale, one.offset, one.data_type) == (2.0, None, "float32")
    assert math.isnan(one.nodata)
    assert scaling_of_asset(asset, 2) is None  # the list does not describe a third band
    assert scaling_of_asset({"href": "x.tif", "roles": ["data"]}) is None


def test_stac_1_1_asset_fields_and_bands_list():
    asset = {"href": "x.tif", "nodata": "-inf", "data_type": "int16", "raster:scale": 0.5,
             "raster:offset": 10, "bands": [{"name": "b1"}, {"name": "b2", "raster:scale": 2.0}]}
    assert scaling_of_asset(asset) == BandScaling(0.5, 10.0, -math.inf, "int16")
    assert scaling_of_asset(asset, 1) == BandScaling(2.0, 10.0, -math.inf, "int16")
    # a band entry wins over the asset's own field; raster:bands over bands
    both = {"href": "x.tif", "nodata": 1, "raster:bands": [{"nodata": 2}], "bands": [{"nodata": 3,
                                                                                        "scale": 4}]}
    assert scaling_of_asset(both) == BandScaling(4.0, None, 2.0, None)


@pytest.mark.parametrize(("asset", "message"), [
    ({"raster:bands": [{"scale": "ten"}]}, "scale 'ten' is not a number"),
    ({"raster:bands": [{"offset": True}]}, "offset True is not a number"),
    ({"nodata": [0]}, r"nodata \[0\] is not a number"),
    ({"data_type": 16}, "data_type 16 is not text"),
    ({"raster:bands": {"scale": 1}}, "raster:bands is not a list"),
    ({"raster:bands": ["x"]}, r"raster:bands\[0\] is not an object"),
])
def test_bad_descriptions_name_record_band_and_href(asset, message):
    asset = {"href": "https://h/a.tif?token=secret", **asset}
    with pytest.raises(ValueError, match=rf"^record 'r1', band 'B04', href https://h/a.tif.*: "
                                         rf"{message}") as error:
        scaling_of_asset(asset, where="record 'r1', band 'B04'")
    assert "secret" not in str(error.value)


def _items(n: int = 4) -> list[dict]:
    items = sentinel2_items(n, bands=("red", "nir"), extra_assets=("scl", "thumbnail"))
    items[1]["assets"]["nir"].pop("raster:bands")
    return items


def test_items_become_a_raster_bands_column_keyed_by_band_code():
    items = _items()
    column = raster_bands_of_items(items, {"B04": "red", "B08": "nir", "SCL": "scl"}, {})
    assert column.type == S.RASTER_BANDS_TYPE
    table = pa.table({S.RASTER_BANDS: column})
    assert band_scaling(table, "B04") == [S2] * 4
    assert band_scaling(table, "B08") == [S2, None, S2, S2]
    assert band_scaling(table, "SCL") == [None] * 4
    assert raster_bands_of_items(items, {"SCL": "scl"}, {}) is None
    with_table = items_to_table(items, band_map={"B04": "red", "SCL": "scl"})
    assert band_scaling(with_table, "B04") == [S2] * 4
    assert band_scaling(items_to_table(items, band_map={"SCL": "scl"}), "SCL") == [None] * 4
    assert S.RASTER_BANDS not in items_to_table(items, band_map={"SCL": "scl"}).column_names


def _geoparquet_shaped(items: list[dict]) -> pa.Table:
    """The Arrow shape of stac-geoparquet: assets a struct of asset structs, raster:bands a
    list of structs (with statistics and other fields a description does not use)."""
    for item in items:
        for asset in item["assets"].values():
            for band in asset.get("raster:bands", []):
                band["statistics"] = {"minimum": 1, "maximum": 9}
    rows = [{"id": item["id"], "datetime": item["properties"]["datetime"],
             "geometry": None, "assets": item["assets"]} for item in items]
    table = pa.Table.from_pylist(rows)
    return table.set_column(1, "datetime", table["datetime"].cast(pa.string()))


def test_a_stac_geoparquet_shaped_table_is_normalised_with_its_descriptions():
    table = normalize_table(_geoparquet_shaped(_items()))
    assert table[S.RASTER_BANDS].type == S.RASTER_BANDS_TYPE
    assert band_scaling(table, "red") == [S2] * 4
    assert band_scaling(table, "nir") == [S2, None, S2, S2]
    assert band_scaling(table, "thumbnail") == [None] * 4
    assert table.schema.field(S.ASSETS).type.field("red").type == S.ASSET_TYPE


def test_map_and_json_assets_and_an_input_column():
    asset = {"href": "a.tif", "band_index": 1, "raster:bands": [{"scale": 1.0}, {"scale": 3.0}]}
    as_map = pa.array([[("B1", json.dumps(asset))]], pa.map_(pa.string(), pa.string()))
    assert raster_bands_of_assets(as_map, ["r"]) is None  # values are not asset objects
    as_json = pa.array([json.dumps({"B1": asset}), None])
    column = raster_bands_of_assets(as_json, ["r", "s"])
    assert band_scaling(pa.table({S.RASTER_BANDS: column}), "B1") == [BandScaling(3.0), None]
    # a table already holding the column (a normalised one) keeps it
    kept = normalize_table(normalize_table(_geoparquet_shaped(_items())))
    assert band_scaling(kept, "red") == [S2] * 4
    with pytest.raises(ValueError, match="raster_bands"):
        band_scaling(pa.table({S.RASTER_BANDS: ["x"]}), "red")
    assert band_scaling(pa.table({"id": ["a", "b"]}), "red") == [None, None]


def test_bad_geoparquet_descriptions_are_named_by_normalize():
    items = _items(2)
    items[1]["assets"]["red"]["raster:bands"][0]["scale"] = "x"
    items[0]["assets"]["red"]["raster:bands"][0]["scale"] = "0.5"
    with pytest.raises(ValueError, match=rf"record '{items[1]['id']}', band 'red', href .*: "
                                         "scale 'x' is not a number"):
        normalize_table(_geoparquet_shaped(items))


@pytest.fixture
def stac_geoparquet(tmp_path):
    path = tmp_path / "items.parquet"
    items = _items(6)
    for item in items:
        item["assets"]["thumbnail"]["type"] = "image/jpeg"
        item["properties"]["proj:code"] = "EPSG:32643"
        item["properties"].pop("proj:epsg", None)
    rustac.write_sync(str(path), {"type": "FeatureCollection", "features": items})
    return path


def test_rustac_stac_geoparquet_through_build_and_the_index(stac_geoparquet, tmp_path):
    plain = rd.build_from_table(stac_geoparquet, name="sgp", workspace_dir=tmp_path,
                                enrich_cog=False)
    assert plain.bands == ["red", "nir", "scl"]
    table = rd.load(tmp_path / "sgp").to_table().sort_by("id")
    assert table.schema.field(S.RASTER_BANDS).type == S.RASTER_BANDS_TYPE
    ids = sorted(pq.read_table(stac_geoparquet, columns=["id"])["id"].to_pylist())
    nir_missing = ids.index(_items(6)[1]["id"])
    assert band_scaling(table, "red") == [S2] * 6
    assert band_scaling(table, "nir") == [None if i == nir_missing else S2 for i in range(6)]
    assert band_scaling(table, "scl") == [None] * 6  # the fixture's SCL has no raster:bands
    # band codes from a descriptor, and a band_index map that keeps the rest of the asset
    mapped = rd.build_from_table(stac_geoparquet, name="sgp2", workspace_dir=tmp_path,
                                 data_source="earthsearch/sentinel-2-l2a", enrich_cog=False,
                                 band_index_map={"B04": 0})
    assert mapped.bands == ["B04", "B08", "SCL"]
    assert band_scaling(mapped.to_table(), "B04") == [S2] * 6
