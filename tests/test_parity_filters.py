"""Early, clear errors: wrongly typed filter values and unknown keyword arguments fail at the
call (naming the column and the value), never later inside Arrow or silently."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.index import filters as F
from rasteret_dask.testing.tables import synthetic_table


@pytest.fixture(scope="module")
def collection() -> rd.Collection:
    table = synthetic_table(12, months=3, seed=6)
    table = table.append_column("split", pa.array(["train", "val", "test"] * 4))
    return rd.build_collection_from_table(table, name="filters")


@pytest.mark.parametrize("kwargs, column, shown", [
    ({"split": 123}, "split", "123"),
    ({"platform": 5}, "platform", "5"),
    ({"year": "2024"}, "year", "'2024'"),
    ({"month": [1, "a"]}, "month", "[1, 'a']"),
    ({"split": ["train", 7]}, "split", "['train', 7]"),
])
def test_wrongly_typed_values_fail_at_the_call(collection, kwargs, column, shown):
    with pytest.raises(TypeError) as info:
        collection.subset(**kwargs)
    message = str(info.value)
    assert f"column {column!r}" in message and shown in message


def test_well_typed_values_still_filter(collection):
    assert len(collection.subset(split="train")) == 4
    assert len(collection.subset(split=["train", "val"])) == 8
    assert len(collection.subset(month=[1, 2])) == len(collection.subset(month=1)) + len(
        collection.subset(month=2))
    assert len(collection.subset(**{"eo:cloud_cover": [0]})) == 0  # int value, float column
    assert len(collection.subset(platform=None)) == 0  # None matches nulls
    assert len(collection.subset(year=2024, split_column="split", split="test")) == 4


def test_arguments_of_the_wrong_kind(collection):
    with pytest.raises(TypeError, match=r"column 'assets' is struct.*where\(\)"):
        collection.subset(assets={"B04": None})
    with pytest.raises(TypeError, match="cloud_cover_lt must be a number, got 'low'"):
        collection.subset(cloud_cover_lt="low")
    with pytest.raises(TypeError, match="cloud_cover_lt must be a number, got True"):
        collection.subset(cloud_cover_lt=True)
    with pytest.raises(TypeError, match=r"bbox must be a number, got 'a'"):
        collection.subset(bbox=("a", 0, 1, 1))
    with pytest.raises(TypeError, match="bbox must be"):
        collection.subset(bbox=5)
    with pytest.raises(ValueError, match="bbox must be"):
        collection.subset(bbox=(0, 0, 1))
    with pytest.raises(TypeError, match=r"date_range must be a \(start, end\) pair, got 2024"):
        collection.subset(date_range=2024)
    with pytest.raises(TypeError, match="split_column must be a column name"):
        collection.subset(split="train", split_column=3)


def test_unknown_keyword_arguments_are_not_silent_column_filters(collection):
    with pytest.raises(ValueError) as info:
        collection.subset(resolution=10)
    message = str(info.value)
    assert "unknown column 'resolution'" in message and "keyword arguments" in message
    assert "'split'" in message  # the columns it could have meant


def test_reads_pass_their_filters_through_the_same_checks(cog_dir):
    n = 4
    base = synthetic_table(n, months=1, seed=2).drop_columns([S.EPSG])
    hrefs = [f"{cog_dir}/scene{i}_B04.tif" for i in range(n)]
    assets = pa.StructArray.from_arrays(
        [pa.StructArray.from_arrays([pa.array(hrefs), pa.array([0] * n, pa.int32())],
                                    fields=list(S.ASSET_TYPE))], names=["B04"])
    table = base.set_column(base.schema.get_field_index(S.ASSETS), S.ASSETS, assets)
    table = table.append_column("split", pa.array(["train"] * n))
    enriched = rd.build_collection_from_table(table, name="r").enrich(progress=False).collection
    aoi = (15.0, 45.0, 15.01, 45.01)
    with pytest.raises(ValueError, match="unknown column 'res'"):  # resolution= is a grid
        enriched.get_xarray(aoi, ["B04"], res=10)
    with pytest.raises(ValueError, match="unknown column 'x_column'"):
        enriched.sample_points([shapely.Point(15.0, 45.0)], ["B04"], x_column="lon")
    with pytest.raises(TypeError, match="column 'split'"):
        enriched.get_xarray(aoi, ["B04"], split=123)


def test_equals_expression_converts_to_the_column_type():
    expr = F.equals_expression("n", 3, pa.float32())
    table = pa.table({"n": pa.array([1.0, 3.0], pa.float32())})
    assert ds.dataset(table).to_table(filter=expr)["n"].to_pylist() == [3.0]
    dictionary = pa.array(["a", "b"]).dictionary_encode()
    assert ds.dataset(pa.table({"c": dictionary})).to_table(
        filter=F.equals_expression("c", "b", dictionary.type)).num_rows == 1
    with pytest.raises(TypeError, match=r"filter value 'x' for column 'n'.*float"):
        F.equals_expression("n", "x", pa.float32())
    assert F.number_argument("v", 3) == 3.0
