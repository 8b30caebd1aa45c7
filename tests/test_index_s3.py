"""An index living on S3 (moto on 127.0.0.1): every write through fsspec, conditional commits,
credentials from storage options or the dask config, enrichment, reads, reports, ingest."""

from __future__ import annotations

import json
import os
import uuid

import dask
import numpy as np
import pytest

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.index.geoparquet import CollectionInfo
from rasteret_dask.index.objectstore import open_store
from rasteret_dask.index.storage import ConcurrentWriteError, prepare_export, write_partitioned
from rasteret_dask.index.versions import (
    Manifest,
    VersionConflict,
    commit_manifest,
    latest_manifest,
)
from rasteret_dask.io.options import CONFIG_KEY
from rasteret_dask.testing.tables import synthetic_table
from rasteret_dask.workflows.reenrich import reenrich

from .conftest import BUCKET as COG_BUCKET
from .index_helpers import cog_table
from .test_ingest_stac import BBOX, ES, _expected, cog_server, items, s2_cogs, stac  # noqa: F401
from .test_read_helpers import file_info, pixel_box, record_table, single


@pytest.fixture
def bucket(s3_server) -> str:
    name = f"idx-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def options(s3_server) -> dict:
    return {"s3": s3_server.storage_options}


def _keys(s3_server, bucket: str) -> list[str]:
    pages = s3_server.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def test_export_load_subset_and_overwrite(s3_server, bucket, options, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"s3://{bucket}/index"
    table = synthetic_table(2000, months=6, seed=3)
    local = rd.build_collection_from_table(table, name="s2").export(tmp_path / "local")
    exported = rd.build_collection_from_table(table, name="s2").export(url,
                                                                       storage_options=options)
    assert exported.version == 1 and len(exported) == 2000
    assert os.listdir(tmp_path) == ["local"]  # nothing written beside the working directory
    assert exported.to_table().sort_by("id").equals(local.to_table().sort_by("id"))
    with dask.config.set({CONFIG_KEY: options}):  # credentials from the dask config
        loaded = rd.load(url)
        march = loaded.subset(date_range=("2024-03-01", "2024-03-31"), bbox=(6, 46, 9, 49))
        want = local.subset(date_range=("2024-03-01", "2024-03-31"), bbox=(6, 46, 9, 49))
        assert len(march.fragments()) == 1 and len(march) == len(want) > 0
        assert len(loaded.to_dask_geopandas().compute()) == 2000
    s3_server.client.put_object(Bucket=bucket, Key="index/notes/user.parquet", Body=b"user data")
    with pytest.raises(rd.IndexExistsError, match="overwrite=True"):
        loaded.export(url, storage_options=options)
    smaller = loaded.subset(month=3).export(url, overwrite=True, storage_options=options)
    assert smaller.version == 2 and len(smaller) == len(local.subset(month=3))
    manifest = latest_manifest(open_store(url, options))
    listed = {f"index/{e.path}" for e in manifest.files}
    data = {k for k in _keys(s3_server, bucket) if k.endswith(".parquet")}
    assert data == listed | {"index/notes/user.parquet"}
    with pytest.raises(rd.IndexChangedError, match="load\\(\\) it again"):
        loaded.to_table()


def test_export_refuses_a_prefix_holding_other_objects(s3_server, bucket, options):
    s3_server.client.put_object(Bucket=bucket, Key="data/user.parquet", Body=b"user data")
    collection = rd.build_collection_from_table(synthetic_table(20, months=1), name="c")
    with pytest.raises(rd.NotAnIndexError, match="user.parquet"):
        collection.export(f"s3://{bucket}/data", overwrite=True, storage_options=options)
    assert _keys(s3_server, bucket) == ["data/user.parquet"]
    with pytest.raises(FileNotFoundError, match="no collection index"):
        rd.load(f"s3://{bucket}/nothing", storage_options=options)


def test_commits_are_conditional_puts(s3_server, bucket, options):
    url = f"s3://{bucket}/idx"
    rd.build_collection_from_table(synthetic_table(60, months=2), name="a").export(
        url, storage_options=options)
    store = open_store(url, options)
    latest = latest_manifest(store)
    rival = Manifest(version=2, files=latest.files, schema=latest.schema,
                     partition_by=latest.partition_by, operation="rival", txn="r")
    commit_manifest(store, rival)
    with pytest.raises(VersionConflict):
        commit_manifest(store, rival)
    base = prepare_export(open_store(url, options), overwrite=True)
    rd.build_collection_from_table(synthetic_table(40, months=2), name="b").export(
        url, overwrite=True, storage_options=options)
    before = _keys(s3_server, bucket)
    table = rd.build_collection_from_table(synthetic_table(30, months=2), name="c").to_table()
    with pytest.raises(ConcurrentWriteError, match=r"version 2 -> 3"):
        write_partitioned(table, store, CollectionInfo(name="c"), base=base)
    assert _keys(s3_server, bucket) == before
    assert rd.load(url, storage_options=options).name == "b"


def test_enrich_and_read_pixels_from_an_index_on_s3(s3_server, bucket, options, cog_dir):
    url = f"s3://{bucket}/idx"
    table = cog_table(f"s3://{COG_BUCKET}/", n=16, months=4)
    collection = rd.build_collection_from_table(table, name="remote").export(
        url, storage_options=options)
    report = collection.enrich(progress=False, storage_options=options)
    assert report.enriched == 32 and report.failed == 0 and report.partitions_rewritten == 4
    enriched = rd.load(url, storage_options=options)
    assert enriched.version == 2 and enriched.describe()["enriched"] == {"B04": 16, "B08": 16}
    again = enriched.enrich(progress=False, storage_options=options)
    assert again.partitions_rewritten == 0 and latest_manifest(open_store(url, options)).version == 2



def test_pixels_read_from_an_index_on_s3_equal_rasterio(s3_server, bucket, options, cog_dir):
    import rasterio
    from rasterio.windows import Window

    records = [single(cog_dir / f"scene{k}_B04.tif", href=f"s3://{COG_BUCKET}/scene{k}_B04.tif",
                      bands={"B04": 0}, rid=f"r{k}", when=f"2024-0{k + 1}-05T10:00:00")
               for k in range(2)]
    url = f"s3://{bucket}/pixels"
    collection = rd.build_collection_from_table(record_table(records), name="pixels")
    collection.export(url, storage_options=options).enrich(progress=False,
                                                           storage_options=options)
    loaded = rd.load(url, storage_options=options)
    epsg, transform, _ = file_info(cog_dir / "scene0_B04.tif")
    aoi = pixel_box(transform, 100, 80, 420, 300)
    pixels = loaded.get_numpy(aoi, ["B04"], geometry_crs=epsg, storage_options=options)
    assert pixels.shape == (2, 1, 220, 320)
    for k in range(2):
        with rasterio.open(cog_dir / f"scene{k}_B04.tif") as src:
            want = src.read(1, window=Window(100, 80, 320, 220))
        np.testing.assert_array_equal(pixels[k, 0], want)


def test_reenrich_writes_its_report_into_the_bucket(s3_server, bucket, options):
    url = f"s3://{bucket}/idx"
    table = cog_table(f"s3://{COG_BUCKET}/", n=8, months=2)
    rd.build_collection_from_table(table, name="r").export(url, storage_options=options)
    first = reenrich(url, stac=False, storage_options=options, index_storage_options=options)
    assert first.enriched == 16 and first.exit_code == 0
    second = reenrich(url, stac=False, storage_options=options, index_storage_options=options)
    assert second.nothing_to_do
    reports = [k for k in _keys(s3_server, bucket) if k.startswith("idx/_reports/")]
    assert len(reports) == 2 and first.report_path.startswith(f"s3://{bucket}/idx/_reports/")
    body = s3_server.client.get_object(Bucket=bucket, Key=reports[0])["Body"].read()
    assert json.loads(body)["enriched"] == 16


def test_build_from_table_and_from_stac_into_an_s3_workspace(
        s3_server, bucket, options, stac, items):  # noqa: F811 - shared fixtures
    workspace = f"s3://{bucket}/ws"
    with dask.config.set({CONFIG_KEY: options}):
        table = cog_table(f"s3://{COG_BUCKET}/", n=8, months=2)
        built = rd.build_from_table(table, name="t", workspace_dir=workspace, progress=False)
        assert built.path == f"{workspace}/t" and built.describe()["enriched"]["B04"] == 8
        with pytest.raises(rd.IndexExistsError):
            rd.build_from_table(table, name="t", workspace_dir=workspace, progress=False)
        kwargs = dict(name="s2", stac_api=stac.url, collection="sentinel-2-l2a", data_source=ES,
                      bbox=BBOX,
                      workspace_dir=workspace, progress=False)
        rd.build_from_stac(date_range=("2024-01-01", "2024-02-29"), **kwargs)
        grown = rd.build_from_stac(date_range=("2024-02-01", "2024-04-30"), **kwargs)
    expected = _expected(items, "2024-01-01", "2024-04-30")
    ids = grown.to_table(columns=["id"])["id"].to_pylist()
    assert sorted(ids) == sorted(set().union(*expected.values()))
    assert grown.describe()["enriched"]["B04"] == len(ids)
    state = grown.info.extra["stac"]
    assert state["searched"] == [[state["searched"][0][0], state["searched"][0][1]]]
    assert not [k for k in _keys(s3_server, bucket) if "/." in k or k.endswith(".tmp")]
    assert S.metadata_column("B08") in grown.schema.names
