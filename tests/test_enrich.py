"""Enrichment: headers over local paths, HTTP and S3; one GET per COG; Dask partitions; failures."""

from __future__ import annotations

import os
import shutil

import pyarrow as pa
import pytest

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.testing.cogs import write_s2_like_cog
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.testing.tables import synthetic_table

from .conftest import BUCKET


def _table(hrefs_by_band: dict[str, list[str]], months: int = 4) -> pa.Table:
    n = len(next(iter(hrefs_by_band.values())))
    base = synthetic_table(n, months=months, seed=2).drop_columns(["proj:epsg"])
    bands = []
    for hrefs in hrefs_by_band.values():
        bands.append(pa.StructArray.from_arrays(
            [pa.array(hrefs, pa.string()), pa.array([0] * n, pa.int32())], fields=list(S.ASSET_TYPE)))
    assets = pa.StructArray.from_arrays(bands, names=list(hrefs_by_band))
    return base.set_column(base.schema.get_field_index("assets"), "assets", assets)


def _hrefs(prefix: str, n: int = 8) -> dict[str, list[str]]:
    return {band: [f"{prefix}scene{i % 4}_{band}.tif" for i in range(n)] for band in ("B04", "B08")}


def _metadata(collection: rd.Collection) -> list:
    table = collection.to_table().sort_by("id")
    return [table[S.metadata_column(b)].to_pylist() for b in ("B04", "B08")]


def test_local_http_and_s3_give_the_same_metadata(cog_dir, http_server, s3_server):
    local = rd.enrich_table_with_cog_metadata(_table(_hrefs(f"{cog_dir}/")))
    http = rd.enrich_table_with_cog_metadata(_table(_hrefs(f"{http_server.url}/")))
    s3 = rd.enrich_table_with_cog_metadata(_table(_hrefs(f"s3://{BUCKET}/")),
                                           storage_options={"s3": s3_server.storage_options})
    file_url = rd.enrich_table_with_cog_metadata(_table(_hrefs(f"file://{cog_dir}/")))
    identity = ("etag", "object_size", "last_modified")  # what each backend reports differs

    def layout(table: pa.Table, band: str) -> list[dict]:
        return [{k: v for k, v in m.items() if k not in identity} for m in table[band].to_pylist()]

    for band in ("B04_metadata", "B08_metadata"):
        expected = layout(local, band)
        assert all(m is not None for m in expected)
        assert layout(http, band) == expected
        assert layout(s3, band) == expected
        assert layout(file_url, band) == expected
        sizes = [os.path.getsize(f"{cog_dir}/scene{i % 4}_{band[:3]}.tif") for i in range(8)]
        for table, etag in ((local, False), (file_url, False), (http, True), (s3, True)):
            values = table[band].to_pylist()
            assert [m["object_size"] for m in values] == sizes
            assert all((m["etag"] is not None) == etag for m in values)
            assert all(m["last_modified"] is not None for m in values)
    assert local["proj:epsg"].to_pylist() == [32633] * 8
    assert all(e is None for e in local["enrich_errors"].to_pylist())


def test_s2_like_header_costs_exactly_one_get(tmp_path):
    write_s2_like_cog(tmp_path / "T33UUP_B04.tif")
    with RangeServer(tmp_path, latency=0.0) as server:
        table = _table({"B04": [server.href("T33UUP_B04.tif")]}, months=1)
        enriched = rd.enrich_table_with_cog_metadata(table)
        assert server.count(method=None) == 1 and server.count("GET") == 1
    metadata = enriched["B04_metadata"][0].as_py()
    assert (metadata["image_width"], metadata["tile_width"]) == (10980, 1024)
    assert len(metadata["tile_offsets"]) == 121 and len(metadata["overviews"]) >= 3


def test_partitions_on_a_local_cluster_with_bad_hrefs(cog_dir, tmp_path):
    from distributed import Client, LocalCluster

    served = tmp_path / "served"
    shutil.copytree(cog_dir, served)
    (served / "notatiff.tif").write_bytes(b"<html>this is not a tiff</html>" * 50)
    data = (served / "scene0_B04.tif").read_bytes()
    (served / "truncated.tif").write_bytes(data[:300])
    n = 16
    with RangeServer(served) as server:
        hrefs = _hrefs(f"{server.url}/", n)
        # rows are spread over 4 months in order: rows 0-3 January ... 12-15 April;
        # a quarter of the hrefs are bad, all in January and February
        bad = {1: "missing.tif", 2: "notatiff.tif", 5: "truncated.tif", 6: "missing.tif"}
        for row, name in bad.items():
            hrefs["B04"][row] = f"{server.url}/{name}"
        table = _table(hrefs)
        months = table["datetime"].to_pylist()
        assert sorted({m.month for m in months}) == [1, 2, 3, 4]
        collection = rd.build_from_table(table, name="faulty", workspace_dir=tmp_path / "ws",
                                         enrich_cog=False)
        assert len(collection.fragments()) == 4
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            report = collection.enrich(client=client, progress=False)
            assert report.partitions_rewritten == 4 and report.failed == len(bad)
            assert report.enriched == 2 * n - len(bad)
            enriched = report.collection.to_table().sort_by("id")
            assert enriched.num_rows == n
            b04 = enriched["B04_metadata"].to_pylist()
            errors = enriched["enrich_errors"].to_pylist()
            for row in range(n):
                if row in bad:
                    assert b04[row] is None
                    message = dict(errors[row])["B04"]
                    assert bad[row] in message and enriched["id"][row].as_py() in message
                else:
                    assert b04[row] is not None and not errors[row]
            assert all(m is not None for m in enriched["B08_metadata"].to_pylist())
            assert "404" in dict(errors[1])["B04"]
            assert "not a TIFF" in dict(errors[2])["B04"]
            assert "truncated" in dict(errors[5])["B04"]

            files = {f.path: os.stat(f.path).st_mtime_ns for f in report.collection.fragments()}
            again = report.collection.enrich(client=client, progress=False)
            # failed records are retried; failing the same way, no partition is rewritten
            assert again.partitions_rewritten == 0 and again.enriched == 0
            assert again.failed == len(bad) and again.skipped == 2 * n - len(bad)
            changed = [p for p, t in files.items() if os.stat(p).st_mtime_ns != t]
            assert changed == []


def test_enrich_unknown_band_is_a_clear_error(cog_dir):
    collection = rd.build_collection_from_table(_table(_hrefs(f"{cog_dir}/")), name="x")
    with pytest.raises(ValueError, match="unknown band"):
        collection.enrich(["B99"], progress=False)
    report = collection.enrich(["B04"], progress=False)
    assert report.enriched == 8 and report.collection.enriched_bands == ["B04"]
