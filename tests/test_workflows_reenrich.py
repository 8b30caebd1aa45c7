"""The scheduled re-enrichment: new STAC items, missing/failed metadata, idempotent second run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rasteret_dask as rd
from rasteret_dask.testing.stac import StacServer
from rasteret_dask.workflows.reenrich import reenrich, search_start

from .test_ingest_stac import (  # noqa: F401 - shared fixtures
    BBOX,
    ES,
    _expected,
    _listed_files,
    _partition_ids,
    cog_server,
    items,
    s2_cogs,
    stac,
)


def _mtimes(root):
    """The data files the latest version lists, with their mtimes."""
    return _listed_files(root)


def test_reenrich_adds_new_items_then_does_nothing(stac, items, tmp_path):  # noqa: F811
    rd.build_from_stac(name="s2", stac_api=stac.url, collection="sentinel-2-l2a", data_source=ES, bbox=BBOX,
                       date_range=("2024-01-01", "2024-03-31"), workspace_dir=tmp_path,
                       progress=False)
    root = tmp_path / "s2"
    first = reenrich(root, until="2024-06-30")
    assert first.exit_code == 0 and not first.nothing_to_do
    assert _partition_ids(root) == _expected(items, "2024-01-01", "2024-06-30")
    assert first.stac_rows_added == sum(len(v) for k, v in _expected(
        items, "2024-04-01", "2024-06-30").items())
    assert sorted(first.stac_partitions_written) == [f"year=2024/month={m}" for m in (4, 5, 6)]
    assert first.partitions_rewritten == 3  # the three new months, nothing else
    described = rd.load(root).describe()
    assert described["enriched"]["B04"] == described["records"]
    saved = json.loads((root / "_reports").joinpath(first.report_path.split("/")[-1]).read_text())
    assert saved["stac_rows_added"] == first.stac_rows_added and saved["exit_code"] == 0

    before = _mtimes(root)
    second = reenrich(root, until="2024-06-30")
    assert second.nothing_to_do and second.stac_rows_added == 0
    assert second.partitions_rewritten == 0 and second.enriched == 0
    assert _mtimes(root) == before
    assert "rewrote nothing" in second.summary()
    assert json.loads(Path(second.report_path).read_text())["nothing_to_do"] is True


def test_reenrich_retries_failures_and_exits_non_zero(items, cog_server, tmp_path):  # noqa: F811
    broken = [dict(item) for item in items[:40]]
    for item in broken[::4]:  # every 4th item's red asset is missing on the server
        item["assets"] = {**item["assets"],
                          "red": {**item["assets"]["red"], "href": cog_server.url + "/gone.tif"}}
    with StacServer(broken) as server:
        rd.build_from_stac(name="b", stac_api=server.url, collection="sentinel-2-l2a", data_source=ES,
                           date_range=("2024-01-01", "2024-01-31"), workspace_dir=tmp_path,
                           enrich_cog=False, progress=False)
        root = tmp_path / "b"
        report = reenrich(root, stac=False)
        assert report.failed > 0 and report.exit_code == 1
        assert any("gone.tif" in e for e in report.errors)
        before = _mtimes(root)
        again = reenrich(root, stac=False)
        assert again.failed == report.failed and again.exit_code == 1
        assert again.partitions_rewritten == 0 and _mtimes(root) == before


def test_reenrich_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no collection index"):
        reenrich(tmp_path / "nope")


def _when(item: dict) -> str:
    return item["properties"]["datetime"][:10]


def test_search_start_looks_back_whole_months():
    searched = [["2024-01-01T00:00:00+00:00", "2024-05-31T23:59:59.999999+00:00"]]
    assert search_start(searched).isoformat() == "2024-02-01T00:00:00+00:00"
    assert search_start(searched, lookback=0).isoformat() == "2024-05-01T00:00:00+00:00"
    assert search_start(searched, lookback=12).isoformat() == "2024-01-01T00:00:00+00:00"
    assert search_start(searched, full=True).isoformat() == "2024-01-01T00:00:00+00:00"
    across = [["2023-06-01T00:00:00+00:00", "2024-02-10T00:00:00+00:00"]]
    assert search_start(across, lookback=3).isoformat() == "2023-11-01T00:00:00+00:00"
    assert search_start([]) is None
    with pytest.raises(ValueError, match="lookback"):
        search_start(searched, lookback=-1)


def test_reenrich_default_run_adds_late_items_in_searched_months(items, tmp_path):  # noqa: F811
    # the catalogue holds January to March (without March's last ten items) when the index is
    # built for January to May; April's, May's and March's late items appear afterwards
    march = [i for i in items if _when(i) < "2024-04-01" and _when(i) >= "2024-03-01"]
    late = {i["id"] for i in march[-10:]}
    early = [i for i in items if _when(i) < "2024-04-01" and i["id"] not in late]
    with StacServer(early) as first:
        rd.build_from_stac(name="s2", stac_api=first.url, collection="sentinel-2-l2a", data_source=ES, bbox=BBOX,
                           date_range=("2024-01-01", "2024-05-31"), workspace_dir=tmp_path,
                           progress=False)
        port = first.port
    root = tmp_path / "s2"
    everything = [i for i in items if _when(i) < "2024-06-01"]
    with StacServer(everything, port=port):
        report = reenrich(root, until="2024-05-31")
    assert _partition_ids(root) == _expected(items, "2024-01-01", "2024-05-31")
    added = _expected(items, "2024-04-01", "2024-05-31")
    found_late = {i for i in late if any(i in v for v in _expected(items, "2024-03-01",
                                                                   "2024-03-31").values())}
    assert found_late  # the late March items the bbox search finds
    assert report.stac_rows_added == sum(map(len, added.values())) + len(found_late)
    assert [w["window"] for w in report.stac_windows] == ["2024-02", "2024-03", "2024-04",
                                                          "2024-05"]
    assert report.stac_windows[2]["items_found"] == len(added[(2024, 4)])
    assert report.exit_code == 0


def _indexed_rows(root) -> dict[str, dict]:
    table = rd.load(root).to_table()
    return {r["id"]: r for r in table.select(["id", "assets", "updated", "B04_metadata"])
            .to_pylist()}


def test_reenrich_refreshes_changed_items_and_reports_then_prunes_gone_ones(
        items, tmp_path):  # noqa: F811
    window = [i for i in items if _when(i) < "2024-04-01"]
    indexed = _expected(items, "2024-01-01", "2024-03-31")
    in_bbox = [i for i in window if i["id"] in indexed[(int(_when(i)[:4]), int(_when(i)[5:7]))]]
    changed_item, gone_item = in_bbox[len(in_bbox) // 2], in_bbox[-3]
    with StacServer(window) as first:
        rd.build_from_stac(name="s2", stac_api=first.url, collection="sentinel-2-l2a", data_source=ES, bbox=BBOX,
                           date_range=("2024-01-01", "2024-03-31"), workspace_dir=tmp_path,
                           progress=False)
        port = first.port
    root = tmp_path / "s2"
    before = _indexed_rows(root)
    old_href = before[changed_item["id"]]["assets"]["B04"]["href"]
    new_href = old_href.replace(old_href.rsplit("_", 1)[1],
                                "0.tif" if not old_href.endswith("_0.tif") else "1.tif")
    upstream = []
    for item in window:
        if item["id"] == gone_item["id"]:
            continue  # withdrawn upstream
        if item["id"] == changed_item["id"]:
            item = {**item, "properties": {**item["properties"],
                                           "updated": "2024-06-01T00:00:00Z"},
                    "assets": {**item["assets"],
                               "red": {**item["assets"]["red"], "href": new_href}}}
        upstream.append(item)
    with StacServer(upstream, port=port):
        report = reenrich(root, until="2024-03-31")
        assert report.stac_rows_replaced == [changed_item["id"]]
        assert report.stac_items_gone == [gone_item["id"]] and report.stac_rows_pruned == 0
        assert report.stac_rows_added == 0 and report.exit_code == 0
        assert "items gone upstream" in report.summary()
        after = _indexed_rows(root)
        assert set(after) == set(before)  # reported, kept without --prune
        row = after[changed_item["id"]]
        assert row["assets"]["B04"]["href"] == new_href
        assert row["updated"].startswith("2024-06-01") if isinstance(row["updated"], str) \
            else row["updated"].month == 6
        assert row["B04_metadata"] is not None and row["B04_metadata"]["etag"]
        assert report.enriched >= 1  # the replaced row's headers were read again
        unchanged = [i for i in after if i not in (changed_item["id"], gone_item["id"])]
        assert all(after[i] == before[i] for i in unchanged)

        pruned = reenrich(root, until="2024-03-31", prune=True)
        assert pruned.stac_items_gone == [gone_item["id"]] and pruned.stac_rows_pruned == 1
        assert pruned.stac_rows_replaced == []
        assert set(_indexed_rows(root)) == set(before) - {gone_item["id"]}
        quiet = reenrich(root, until="2024-03-31", prune=True)
        assert quiet.nothing_to_do and quiet.stac_items_gone == []
