"""``Collection.describe()`` reads as a summary (text and HTML) and stays a mapping;
``Collection._repr_html_`` is what a notebook shows, without scanning metadata columns."""

from __future__ import annotations

import json

import rasteret_dask as rd
from rasteret_dask.testing.tables import synthetic_table


def test_describe_prints_a_readable_summary_and_is_a_mapping(tmp_path):
    collection = rd.build_collection_from_table(synthetic_table(60, months=3),
                                                name="s2").export(tmp_path / "s2")
    summary = collection.describe()
    assert summary["records"] == 60 and summary["partitions"] == 3
    assert summary["bands"] == ["B04", "B08"] and summary["epsg"] == [32633]
    assert summary["enriched"] == {} and summary.version == 1
    assert set(summary) >= {"name", "records", "date_range", "bounds", "columns"}
    text = str(summary)
    lines = text.splitlines()
    assert lines[0] == "Collection 's2'"
    assert any(line.split() == ["records", "60", "in", "3", "partition(s)"] for line in lines)
    assert "EPSG:32633" in text and "not enriched" in text and "(version 1)" in text
    assert repr(summary) == text
    plain = summary.to_dict()
    assert json.loads(json.dumps(plain))["date_range"][0].startswith("2024-01")
    html = summary._repr_html_()
    assert html.startswith("<div>") and "<th" in html and "EPSG:32633" in html

    march = collection.subset(date_range=("2024-03-01", "2024-03-31"))
    assert march.describe()["records"] == 20


def test_notebook_html_of_a_collection(tmp_path):
    table = synthetic_table(10, months=1)
    collection = rd.build_collection_from_table(table, name="a<b>").export(tmp_path / "x")
    html = collection.where("\"eo:cloud_cover\" < 50")._repr_html_()
    assert "Collection a&lt;b&gt;" in html and "a<b>" not in html  # escaped
    assert "filter" in html and "records" in html and "B04, B08" in html
    assert "describe()" in html
