"""What the package says on the standard ``logging`` module (loggers ``rasteret_dask.*``):
retries (what, why, attempt), records skipped, the grid a read chose, versions committed and
partitions written, STAC retries; and a STAC API that does not answer failing in time."""

from __future__ import annotations

import logging
import socket
import time
import warnings

import pyarrow as pa
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask.ingest import StacSearchError
from rasteret_dask.io import ByteRange, RangeReader
from rasteret_dask.testing.faulty import FaultyRangeServer
from rasteret_dask.testing.stac import FlakyProxy

from .test_ingest_stac import BBOX, ES, cog_server, items, s2_cogs, stac  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def _messages(caplog, logger: str, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == logger and r.levelno == level]


@pytest.fixture
def faulty(cog_dir):
    with FaultyRangeServer(cog_dir) as server:
        yield server


def _scenes(server, names: list[str]) -> pa.Table:
    footprint = shapely.to_wkb(shapely.box(14.0, 44.0, 16.0, 46.0))
    return pa.table({
        "id": [f"s{i}" for i in range(len(names))],
        "datetime": pa.array([1704067200_000000 + i * 86400_000000 for i in range(len(names))],
                             pa.timestamp("us", tz="UTC")),
        "geometry": [footprint] * len(names),
        "red": [server.href(name) for name in names],
    })


def test_a_retry_is_logged_with_what_why_and_attempt(faulty, caplog):
    faulty.fail_first = 2
    href = faulty.href("scene0_B04.tif")
    reader = RangeReader(backoff_base=0.001, backoff_max=0.005, retries=4)
    with caplog.at_level(logging.INFO, logger="rasteret_dask.io"):
        (data,) = reader.fetch([ByteRange(href, 0, 1000)])
    assert len(data) == 1000
    said = _messages(caplog, "rasteret_dask.io")
    assert len(said) == 2, said
    for attempt, message in enumerate(said, start=1):
        assert message.startswith(f"retrying bytes 0-999 of {href} in ")
        assert f"attempt {attempt} of 4 failed" in message and "503" in message


def test_a_final_failure_is_not_logged_as_a_retry(faulty, caplog):
    faulty.set_status("scene1_B04.tif", 404)
    reader = RangeReader(backoff_base=0.001, backoff_max=0.005)
    with caplog.at_level(logging.INFO, logger="rasteret_dask.io"):
        (error,) = reader.fetch([ByteRange(faulty.href("scene1_B04.tif"), 0, 10)],
                                return_exceptions=True)
    assert "404" in str(error) and _messages(caplog, "rasteret_dask.io") == []


def test_skipped_records_commits_and_the_grid_are_logged(http_server, tmp_path, caplog):
    table = _scenes(http_server, ["scene0_B04.tif", "missing.tif", "scene1_B04.tif"])
    with caplog.at_level(logging.INFO, logger="rasteret_dask"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the build's warning about the failed header
        collection = rd.build_from_table(table, name="t", workspace_dir=tmp_path,
                                         href_column="red", band_codes={"B04": "red"})
    commits = _messages(caplog, "rasteret_dask.index")
    assert any(m.startswith("export committed version 1 of ") and "partition(s) written"
               in m and "year=2024/month=1" in m for m in commits), commits
    assert any(m.startswith("enrich committed version 2 of ") and "year=2024/month=1" in m
               for m in commits), commits
    (failed,) = _messages(caplog, "rasteret_dask.enrich", logging.WARNING)
    assert "1 header(s) failed" in failed and "enrich_errors" in failed
    assert "missing.tif" in failed

    caplog.clear()
    box = shapely.box(14.9, 44.9, 15.1, 45.1)
    with caplog.at_level(logging.INFO, logger="rasteret_dask.read"):
        ds = collection.get_xarray(box, ["B04"])
    (skipped,) = _messages(caplog, "rasteret_dask.read", logging.WARNING)
    assert "skipped 1 record" in skipped and "'s1'" in skipped and "missing.tif" in skipped
    (grid,) = _messages(caplog, "rasteret_dask.read")
    assert grid.startswith("read B04 on the native grid EPSG:") and "time=2" in grid
    assert list(ds["id"].values) == ["s0", "s2"]


def test_stac_retries_are_logged(stac, tmp_path, caplog):  # noqa: F811
    with FlakyProxy(stac.url) as proxy:
        proxy.fail(lambda r: r.path.endswith("/search"), times=2, status=503)
        with caplog.at_level(logging.INFO, logger="rasteret_dask.ingest"):
            rd.build_from_stac(name="s", stac_api=proxy.url, collection="sentinel-2-l2a",
                               data_source=ES, bbox=BBOX, date_range=("2024-01-01", "2024-01-31"),
                               workspace_dir=tmp_path, enrich_cog=False)
    said = _messages(caplog, "rasteret_dask.ingest")
    retries = [m for m in said if m.startswith("retrying STAC request")]
    assert len(retries) == 2, said
    assert "/search" in retries[0] and "HTTP 503" in retries[0] and "(attempt 1 of 6)" in retries[0]
    assert any("item(s) found at" in m for m in said)


def test_a_stac_api_that_does_not_answer_fails_within_the_timeout(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections are accepted by the kernel; nothing ever answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
    try:
        started = time.monotonic()
        with pytest.raises(StacSearchError) as info:
            rd.build_from_stac(name="s", stac_api=url, collection="sentinel-2-l2a",
                               date_range=("2024-01-01", "2024-01-31"), workspace_dir=tmp_path,
                               timeout=1.5)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert elapsed < 6, elapsed
    assert url in str(info.value) and "did not answer within 1.5 s" in str(info.value)
    assert not (tmp_path / "s").exists()


def test_a_refused_stac_api_fails_at_once(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(StacSearchError, match="could not be reached") as info:
        rd.build_from_stac(name="s", stac_api=url, collection="sentinel-2-l2a",
                           date_range=("2024-01-01", "2024-01-31"), workspace_dir=tmp_path)
    assert time.monotonic() - started < 5 and url in str(info.value)


def test_a_builtin_descriptor_applies_only_on_its_own_api(stac, tmp_path):  # noqa: F811
    from rasteret_dask.testing.stac import descriptor_served_at

    elsewhere = rd.build_from_stac(name="a", stac_api=stac.url, collection="sentinel-2-l2a",
                                   bbox=BBOX, date_range=("2024-01-01", "2024-01-31"),
                                   workspace_dir=tmp_path, enrich_cog=False)
    assert elsewhere.data_source is None  # same collection id, another API: not applied
    assert "red" in elsewhere.bands and "B04" not in elsewhere.bands
    with descriptor_served_at(ES, stac.url):
        own = rd.build_from_stac(name="b", stac_api=stac.url + "/", collection="sentinel-2-l2a",
                                 bbox=BBOX, date_range=("2024-01-01", "2024-01-31"),
                                 workspace_dir=tmp_path, enrich_cog=False)
    assert own.data_source == ES and {"B04", "B08"} <= set(own.bands)
