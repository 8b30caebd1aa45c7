"""Text filters (``where("...")``, ``--where``): DuckDB parses, Arrow filters; DuckDB running the
same condition on the same table is the oracle."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

import rasteret_dask as rd
from rasteret_dask.index.where import quote_columns, where_expression

TABLE = pa.table({
    "id": ["a", "b", "c", "d", "e"],
    "eo:cloud_cover": [5.0, 30.0, None, 12.5, 80.0],
    "platform": ["sentinel-2a", "sentinel-2b", "sentinel-2a", None, "Sentinel-2B"],
    "datetime": pa.array([dt.datetime(2024, m, 1, tzinfo=dt.UTC) for m in (1, 3, 5, 7, 9)],
                         pa.timestamp("us", tz="UTC")),
    "n": pa.array([1, 2, 3, 4, 5], pa.int32()),
    "ok": [True, False, True, None, False],
    "bbox": [{"xmin": float(i)} for i in range(5)],
    "split": pa.array(["train", "val", "train", "test", "val"]).dictionary_encode(),
})

CONDITIONS = [
    "eo:cloud_cover < 20 AND platform = 'sentinel-2a'",
    "\"eo:cloud_cover\" IS NULL OR n >= 4",
    "NOT (eo:cloud_cover BETWEEN 10 AND 40)",
    "platform IS NOT NULL AND platform <> 'sentinel-2b'",
    "n IN (1, 3, 5) AND NOT ok",
    "n NOT IN (2, 4)",
    "platform LIKE 'sentinel%'",
    "platform ILIKE '%2b'",
    "platform NOT LIKE '%a'",
    "datetime >= '2024-03-01' AND datetime < TIMESTAMP '2024-07-01 00:00:00+00'",
    "datetime BETWEEN DATE '2024-02-01' AND DATE '2024-08-01'",
    "ok",
    "ok = false OR eo:cloud_cover > 50",
    "bbox.xmin > 1.5",
    "split = 'val' OR split IN ('test')",
    "n = 2 OR n = 3.0",
    "eo:cloud_cover > n",
]


def _oracle(condition: str) -> list[str]:
    records = TABLE  # noqa: F841 (DuckDB reads the local variable)
    quoted = quote_columns(condition, TABLE.schema.names)
    return sorted(duckdb.sql(f"SELECT id FROM records WHERE {quoted}").fetchnumpy()["id"].tolist())


@pytest.mark.parametrize("condition", CONDITIONS)
def test_arrow_filter_equals_duckdb(condition):
    expression = where_expression(condition, TABLE.schema)
    got = sorted(ds.dataset(TABLE).to_table(filter=expression)["id"].to_pylist())
    assert got == _oracle(condition)


@pytest.mark.parametrize(("condition", "message"), [
    ("n <", "syntax error"),
    ("", "give a condition"),
    ("nope = 1", "unknown column 'nope'"),
    ("n < 'x'", "'x' does not match column 'n' of type int32"),
    ("datetime > 'soon'", "not an ISO date"),
    ("n = DATE '2024-01-01'", "column 'n' is int32, not a date or time"),
    ("lower(platform) = 'a'", "the function lower()"),
    ("n IN (SELECT 1)", "a subquery is not supported"),
    ("n = 1; DROP TABLE t", "give one condition"),
    ("n = 1 ORDER BY n LIMIT 1", "give one condition"),
    ("n = 1 GROUP BY n", "give one condition"),
    ("1 = 1", "a column on one side"),
    ("bbox.ymin = 1", "'ymin' is not a field"),
    ("n", "not a condition"),
])
def test_bad_conditions_say_what_is_wrong(condition, message):
    with pytest.raises(ValueError, match="invalid filter") as info:
        where_expression(condition, TABLE.schema)
    assert message in str(info.value) and repr(condition) in str(info.value)


def test_quoting_leaves_strings_comments_and_quoted_names_alone():
    names = ["eo:cloud_cover", "platform"]
    assert quote_columns("eo:cloud_cover<20", names) == '"eo:cloud_cover"<20'
    text = "platform = 'eo:cloud_cover' AND \"eo:cloud_cover\" > 1 -- eo:cloud_cover"
    assert quote_columns(text, names) == text
    assert quote_columns("eo:cloud_cover_max > 1", names) == "eo:cloud_cover_max > 1"


def test_collection_where_and_subset_push_text_filters_down(tmp_path):
    from rasteret_dask.testing.tables import synthetic_table

    collection = rd.build_collection_from_table(synthetic_table(200), name="w").export(
        tmp_path / "w")
    text = collection.where("\"eo:cloud_cover\" < 30 AND month = 3")
    files = {f.path for f in text.fragments()}
    assert files and all("month=3" in path for path in files)  # partitions pruned
    table = collection.to_table()
    want = sorted(row["id"] for row in table.to_pylist()
                  if row["eo:cloud_cover"] is not None and row["eo:cloud_cover"] < 30
                  and row["month"] == 3)
    assert sorted(text.to_table(columns=["id"])["id"].to_pylist()) == want
    same = collection.subset(date_range=("2024-03-01", "2024-03-31"),
                             where="eo:cloud_cover < 30")
    assert sorted(same.to_table(columns=["id"])["id"].to_pylist()) == want
