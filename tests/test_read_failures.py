"""Partial failures are visible: records without metadata are skipped with a warning and listed
(or raise), and tiles that fail at read time raise or become nodata and are listed."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pyarrow as pa
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.read import MissingRecordsError, RasterReadError
from rasteret_dask.read.failures import TOPIC
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.faulty import BAD_RANGE_KINDS, FaultyRangeServer

from .test_read_helpers import (
    assert_matches,
    expected,
    file_info,
    pixel_box,
    record_table,
    single,
)

NAMES = [f"s{i}.tif" for i in range(4)]
SMALL = "f32.tif"  # 64-pixel tiles: a read spans several fetch groups
BUCKET = "read-failures"
LOGGER = "rasteret_dask.read"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("read-failures")
    for i, name in enumerate(NAMES):
        write_cog(root / name, width=700, height=600, blocksize=256, dtype="uint16",
                  predictor=2, nodata=0, seed=40 + i)
    write_cog(root / SMALL, width=700, height=600, blocksize=64, dtype="float32",
              predictor=3, nodata=float("nan"), seed=7)
    return root


@pytest.fixture(scope="module")
def server(files):
    with FaultyRangeServer(files) as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(server):
    server.clear_faults()
    yield
    server.clear_faults()


def enriched(records: list[dict], storage_options: dict | None = None) -> tuple:
    """(collection, enrich report) of ``records``, whatever failed."""
    collection = rd.build_collection_from_table(record_table(records), name="failures")
    report = collection.enrich(progress=False, storage_options=storage_options)
    return report.collection, report


@pytest.fixture(scope="module")
def four(files, server):
    """Four records over HTTP; the header of r2 answered 404 during enrichment."""
    records = [single(files / n, href=server.href(n), rid=f"r{i}", when=f"2024-05-0{i + 1}")
               for i, n in enumerate(NAMES)]
    server.set_status("s2.tif", 404)
    try:
        collection, report = enriched(records)
    finally:
        server.clear_faults()
    assert report.failed == 1 and report.enriched == 3
    return collection


def box_of(files, name: str = "s0.tif", margin: float = 20.5):
    epsg, t, (h, w) = file_info(files / name)
    return epsg, pixel_box(t, margin, margin, w - margin, h - margin)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


def test_a_record_whose_enrichment_failed_is_skipped_visibly(files, server, four, caplog):
    epsg, box = box_of(files)
    href = server.href("s2.tif")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = four.get_xarray(box, ["B1"], geometry_crs=epsg)
    assert list(ds["id"].values) == ["r0", "r1", "r3"]
    (skipped,) = ds.attrs["skipped_records"]
    assert skipped.startswith(f"record 'r2', band 'B1', href {href}: ") and "404" in skipped
    (message,) = warnings_of(caplog)
    assert "skipped 1 record" in message and "'r2'" in message and "404" in message
    values = ds.compute()
    assert values.attrs["skipped_records"] == [skipped] and values.attrs["read_errors"] == []
    for t, name in enumerate(["s0.tif", "s1.tif", "s3.tif"]):
        assert_matches(values["B1"].values[t], expected(values, files / name, 0))

    plan = four.explain(box, ["B1"], geometry_crs=epsg)[0]
    assert plan["records"] == 3 and plan["skipped_records"] == [skipped]


def test_on_missing_raise_names_records_bands_hrefs_and_reasons(files, server, four):
    epsg, box = box_of(files)
    calls = [four.get_xarray, four.get_numpy, four.get_gdf, four.explain]
    for call in calls:
        with pytest.raises(MissingRecordsError) as info:
            call(box, ["B1"], geometry_crs=epsg, on_missing="raise")
        text = str(info.value)
        assert "record 'r2'" in text and "band 'B1'" in text and server.href("s2.tif") in text
        assert "404" in text
        (record,) = info.value.records
        assert (record.id, record.band, record.href) == ("r2", "B1", server.href("s2.tif"))
    point = shapely.Point(*box.centroid.coords[0])
    with pytest.raises(MissingRecordsError, match="'r2'"):
        four.sample_points(point, ["B1"], geometry_crs=epsg, on_missing="raise")
    with pytest.raises(ValueError, match="on_missing must be one of"):
        four.get_xarray(box, ["B1"], geometry_crs=epsg, on_missing="ignore")
    with pytest.raises(ValueError, match="errors must be one of"):
        four.get_xarray(box, ["B1"], geometry_crs=epsg, errors="ignore")


def test_tables_and_arrays_say_what_they_skipped(files, four, caplog):
    epsg, box = box_of(files)
    point = shapely.Point(*box.centroid.coords[0])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        array = four.get_numpy(box, ["B1"], geometry_crs=epsg)
        frame = four.get_gdf(box, ["B1"], geometry_crs=epsg)
        table = four.sample_points(point, ["B1"], geometry_crs=epsg)
    assert array.shape[0] == 3
    assert sorted(frame["id"]) == ["r0", "r1", "r3"]
    assert len(frame.attrs["skipped_records"]) == 1 and frame.attrs["read_errors"] == []
    assert table["id"].to_pylist() == ["r0", "r1", "r3"]
    listed = json.loads(table.schema.metadata[b"skipped_records"])
    assert listed == frame.attrs["skipped_records"]
    assert json.loads(table.schema.metadata[b"read_errors"]) == []
    said = warnings_of(caplog)
    assert [m.split(" ")[0] for m in said] == ["get_xarray", "get_gdf", "sample_points"]
    assert all("'r2'" in m for m in said)


def test_nothing_left_says_what_was_skipped(files, server):
    records = [single(files / "s0.tif", href=server.href("s0.tif"))]
    server.set_status("s0.tif", 403)
    try:
        collection, report = enriched(records)
    finally:
        server.clear_faults()
    assert report.failed == 1
    epsg, box = box_of(files)
    with pytest.raises(ValueError, match=r"no enriched record intersects.*'r0'.*403"):
        collection.get_xarray(box, ["B1"], geometry_crs=epsg)


def test_a_record_missing_from_s3_is_skipped(files, s3_server):
    s3_server.create_bucket(BUCKET)
    s3_server.upload(files / "s0.tif", BUCKET, "s0.tif")
    options = {"s3": s3_server.storage_options}
    records = [single(files / "s0.tif", href=f"s3://{BUCKET}/s0.tif", rid="here"),
               single(files / "s1.tif", href=f"s3://{BUCKET}/s1.tif", rid="gone",
                      when="2024-05-02")]
    collection, report = enriched(records, options)
    assert report.failed == 1
    epsg, box = box_of(files)
    ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg, storage_options=options)
    assert list(ds["id"].values) == ["here"]
    (skipped,) = ds.attrs["skipped_records"]
    assert skipped.startswith(f"record 'gone', band 'B1', href s3://{BUCKET}/s1.tif: ")
    assert_matches(ds["B1"].values[0], expected(ds, files / "s0.tif", 0))


def test_a_file_failing_at_read_time_raises_or_reads_as_nodata(files, server, four, caplog):
    epsg, box = box_of(files)
    server.set_status("s1.tif", 500)
    with pytest.raises(RasterReadError) as info:
        four.get_xarray(box, ["B1"], geometry_crs=epsg).compute()
    text = str(info.value)
    assert "record 'r1'" in text and "band 'B1'" in text and server.href("s1.tif") in text
    assert "HTTP 500" in text

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = four.get_xarray(box, ["B1"], geometry_crs=epsg, errors="nodata")
        assert ds.attrs["read_errors"] == []  # lazy: nothing computed yet
        values = ds.compute()
    assert list(values["id"].values) == ["r0", "r1", "r3"]
    assert np.all(values["B1"].values[1] == 0)  # nodata of the band
    for t, name in ((0, "s0.tif"), (2, "s3.tif")):
        assert_matches(values["B1"].values[t], expected(values, files / name, 0))
    listed = values.attrs["read_errors"]
    assert listed and listed is ds.attrs["read_errors"]
    assert all(e.startswith(f"record 'r1', band 'B1', href {server.href('s1.tif')}: ")
               and "HTTP 500" in e for e in listed)
    tiles = [m for m in warnings_of(caplog) if m.startswith("tile read as nodata")]
    assert len(tiles) == len(listed)

    numpy = four.get_numpy(box, ["B1"], geometry_crs=epsg, errors="nodata")
    assert np.array_equal(numpy[:, 0], values["B1"].values)
    frame = four.get_gdf(box, ["B1"], geometry_crs=epsg, errors="nodata")
    assert sorted(frame.attrs["read_errors"]) == sorted(listed)
    point = shapely.Point(*box.centroid.coords[0])
    table = four.sample_points(point, ["B1"], geometry_crs=epsg, errors="nodata")
    assert table["B1"].to_pylist()[1] == 0
    (sampled,) = json.loads(table.schema.metadata[b"read_errors"])
    assert "record 'r1'" in sampled and "HTTP 500" in sampled
    with pytest.raises(RasterReadError, match="record 'r1'"):
        four.sample_points(point, ["B1"], geometry_crs=epsg)


@pytest.fixture(scope="module")
def small(files, server):
    records = [single(files / SMALL, href=server.href(SMALL), rid="f")]
    collection, report = enriched(records)
    assert report.failed == 0
    return collection


def test_a_tile_failing_for_ever_reads_as_nodata_and_the_rest_as_rasterio(files, server, small):
    epsg, t, (h, w) = file_info(files / SMALL)
    box = pixel_box(t, 3.5, 2.5, w - 4.5, h - 3.5)
    md = small.to_table()[S.metadata_column("B1")][0].as_py()
    offsets = [int(o) for o in md["tile_offsets"]]
    across = -(-w // 64)
    middle = (h // 2 // 64) * across + (w // 2 // 64)
    server.set_byte_status(SMALL, offsets[middle], 500)
    with pytest.raises(RasterReadError, match=re.escape(server.href(SMALL))):
        small.get_xarray(box, ["B1"], geometry_crs=epsg).compute()

    ds = small.get_xarray(box, ["B1"], geometry_crs=epsg, errors="nodata").compute()
    starts = {int(m) for e in ds.attrs["read_errors"] for m in re.findall(r"bytes (\d+)-", e)}
    failed = {offsets.index(s) for s in starts}
    assert middle in failed and 0 < len(failed) < len(offsets) // 2
    want = expected(ds, files / SMALL, 0)
    col0 = round((float(ds["x"].values[0]) - t.c) / t.a - 0.5)
    row0 = round((float(ds["y"].values[0]) - t.f) / t.e - 0.5)
    for tile in failed:  # the failed tiles' pixels are nodata (NaN)
        r, c = divmod(tile, across)
        rows = slice(max(r * 64 - row0, 0), max((r + 1) * 64 - row0, 0))
        cols = slice(max(c * 64 - col0, 0), max((c + 1) * 64 - col0, 0))
        want[rows, cols] = np.nan
    assert_matches(ds["B1"].values[0], want)
    assert np.isnan(ds["B1"].values[0]).sum() >= 64 * 64


@pytest.mark.parametrize("kind", BAD_RANGE_KINDS)
def test_bad_206_answers_fail_the_read_or_are_retried_away(files, server, small, kind):
    epsg, t, (h, w) = file_info(files / SMALL)
    box = pixel_box(t, 10.5, 10.5, 150.5, 100.5)
    clean = small.get_xarray(box, ["B1"], geometry_crs=epsg).compute()
    assert_matches(clean["B1"].values[0], expected(clean, files / SMALL, 0))
    server.set_bad_range(SMALL, kind)
    with pytest.raises(RasterReadError, match="RangeResponseError"):
        small.get_xarray(box, ["B1"], geometry_crs=epsg).compute()
    server.set_bad_range(SMALL, kind, times=1)
    again = small.get_xarray(box, ["B1"], geometry_crs=epsg).compute()
    assert_matches(again["B1"].values[0], clean["B1"].values[0])


def test_read_errors_reach_the_client_from_distributed_workers(files, server, four):
    from distributed import Client, LocalCluster

    epsg, box = box_of(files)
    server.set_status("s3.tif", 500)
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=2,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        ds = four.get_xarray(box, ["B1"], geometry_crs=epsg, errors="nodata")
        values = ds.compute()
        listed = list(values.attrs["read_errors"])
        assert listed and all("record 'r3'" in e and "HTTP 500" in e for e in listed)
        again = four.get_xarray(box, ["B1"], geometry_crs=epsg, errors="nodata")
        gathered = client.compute(again).result()
        assert sorted(gathered.attrs["read_errors"]) == sorted(listed)
        assert sorted(again.attrs["read_errors"]) == sorted(listed)
        events = [message for _, message in client.get_events(TOPIC)]
        assert {e["error"] for e in events} == set(listed)
    assert np.all(values["B1"].values[2] == 0)
    assert_matches(values["B1"].values[0], expected(values, files / "s0.tif", 0))


def test_read_errors_pickle_by_reference():
    import pickle

    from rasteret_dask.read.failures import new_read_errors

    errors, failures = new_read_errors()
    failures.report(RasterReadError("record 'x', band 'B1', href h: boom"))
    failures.report(RasterReadError("record 'x', band 'B1', href h: boom"))
    assert errors == ["record 'x', band 'B1', href h: boom"]
    assert pickle.loads(pickle.dumps(errors)) is errors
    assert pickle.loads(pickle.dumps(failures)) == failures
    assert isinstance(errors, list) and json.loads(json.dumps(errors)) == list(errors)


def test_missing_records_are_found_in_the_index_columns():
    from rasteret_dask.read.skipped import missing_records

    assets = pa.StructArray.from_arrays(
        [pa.StructArray.from_arrays([pa.array(["h0", None, "h2"]), pa.array([0, 0, 0], pa.int32())],
                                    fields=list(S.ASSET_TYPE))], names=["B1"])
    table = pa.table({
        S.ID: ["a", "b", "c"],
        S.ASSETS: assets,
        S.metadata_column("B1"): pa.array([{"dtype": "uint16"}, None, None]),
        S.ENRICH_ERRORS: pa.array(
            [None, None, [("B1", "record 'c', band 'B1', href h2: HTTP 404")]],
            type=S.ENRICH_ERRORS_TYPE),
    })
    got = [(r.id, r.href, r.reason) for r in missing_records(table, "B1")]
    assert got == [("b", None, "no href for this band"), ("c", "h2", "HTTP 404")]
    unenriched = missing_records(table.drop_columns([S.ENRICH_ERRORS]), "B1")
    assert "not enriched" in unenriched[1].reason
