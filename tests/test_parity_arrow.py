"""The Collection as Arrow (PyCapsule protocol): pyarrow, geopandas, DuckDB (and polars when
installed) read the collection object itself; readers, batches, head, crs."""

from __future__ import annotations

import importlib.util
import json

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.index.dataset import IndexChangedError
from rasteret_dask.testing.tables import synthetic_table


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> rd.Collection:
    table = synthetic_table(40, months=4, seed=8)
    epsg = pa.array([32632 if i % 3 else 32633 for i in range(40)], pa.int32())
    table = table.set_column(table.schema.get_field_index(S.EPSG), S.EPSG, epsg)
    root = tmp_path_factory.mktemp("arrow") / "index"
    return rd.build_collection_from_table(table, name="arrow").export(root)


def _geometry_field(schema: pa.Schema) -> dict:
    field = schema.field(S.GEOMETRY)
    assert field.metadata[b"ARROW:extension:name"] == b"geoarrow.wkb"
    return json.loads(field.metadata[b"ARROW:extension:metadata"])


def test_pyarrow_reads_the_collection_with_geoarrow_geometry(index):
    march = index.subset(date_range=("2024-03-01", "2024-03-31"))
    table = pa.table(march)
    assert table.num_rows == len(march) > 0
    assert table.column_names == march.to_table().column_names
    assert table[S.GEOMETRY].to_pylist() == march.to_table()[S.GEOMETRY].to_pylist()
    crs = _geometry_field(table.schema)["crs"]
    assert crs["id"] == {"authority": "OGC", "code": "CRS84"}
    assert table.schema == march.schema  # what the collection declares is what it streams


def test_geopandas_from_arrow_reads_the_collection(index):
    import geopandas as gpd

    frame = gpd.GeoDataFrame.from_arrow(index)
    assert len(frame) == len(index) and frame.crs.equals("OGC:CRS84")
    expected = shapely.from_wkb(index.to_table()[S.GEOMETRY].to_numpy(zero_copy_only=False))
    assert shapely.equals(frame.geometry.values, expected).all()


def test_duckdb_queries_the_collection_object(index):
    import duckdb

    collection = index.subset(cloud_cover_lt=50)
    count = duckdb.sql("select count(*) from collection").fetchall()[0][0]
    assert count == len(collection)
    rows = duckdb.sql("select id, month from collection order by id limit 3").fetchall()
    assert [r[0] for r in rows] == sorted(collection.to_table()[S.ID].to_pylist())[:3]


def _polars_frame(collection: rd.Collection) -> int:
    import polars

    return polars.from_arrow(collection).height


# polars is not a dependency: its check runs only where it is installed
CONSUMERS = [lambda c: pa.table(c).num_rows, lambda c: pa.RecordBatchReader.from_stream(c)
             .read_all().num_rows]
if importlib.util.find_spec("polars") is not None:
    CONSUMERS.append(_polars_frame)


@pytest.mark.parametrize("consume", CONSUMERS)
def test_every_consumer_sees_every_record(index, consume):
    assert consume(index) == len(index)


def test_requested_schema_is_honoured(index):
    wanted = pa.schema([pa.field(S.ID, pa.large_string()), pa.field(S.DATETIME,
                        S.DATETIME_TYPE)])
    narrow = index.to_reader([S.ID, S.DATETIME])
    stream = pa.RecordBatchReader.from_stream(narrow, schema=wanted)
    table = stream.read_all()
    assert table.schema.field(S.ID).type == pa.large_string() and table.num_rows == len(index)


def test_readers_batches_and_head(index):
    reader = index.to_reader([S.ID, S.GEOMETRY, S.MONTH], batch_size=7)
    assert reader.schema.names == [S.ID, S.GEOMETRY, S.MONTH]
    _geometry_field(reader.schema)
    batches = list(index.to_batches([S.ID], batch_size=7))
    assert all(b.num_rows <= 7 for b in batches)
    assert sum(b.num_rows for b in batches) == len(index)
    head = index.head(3, columns=[S.ID, "platform"])
    assert head.num_rows == 3 and head.column_names == [S.ID, "platform"]
    assert index.head(2).column_names == index.to_table().column_names


def test_crs_lists_the_epsg_codes_among_the_records(index):
    assert index.crs == ["EPSG:32632", "EPSG:32633"]
    only = index.where(ds.field(S.EPSG) == 32633)
    assert only.crs == ["EPSG:32633"] and only.epsg == [32633]


def test_a_replaced_version_is_an_index_changed_error(tmp_path):
    table = synthetic_table(6, months=1)
    first = rd.build_collection_from_table(table, name="v").export(tmp_path / "index")
    rd.build_collection_from_table(table, name="v").export(tmp_path / "index", overwrite=True)
    with pytest.raises(IndexChangedError):
        list(first.to_batches())
    with pytest.raises(OSError, match="changed since this collection was loaded"):
        pa.table(first)  # through the C stream: pyarrow reports it as an IOError
