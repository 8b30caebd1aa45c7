"""Nothing hangs: local reads get the fetch timeout and retries, a FIFO is refused at once, a read
that never returns is abandoned on a daemon thread, and the process still exits."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dask.config
import fsspec
import numpy as np
import pytest
from fsspec.spec import AbstractFileSystem

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.io import ByteRange, FetchError, RangeReader
from rasteret_dask.io.blocking import BlockingCalls
from rasteret_dask.io.errors import BlockedCallsError
from rasteret_dask.read import RasterReadError
from rasteret_dask.testing.cogs import write_cog

from .test_read_helpers import file_info, pixel_box, record_table, single

pytestmark = pytest.mark.timeout(120)

FAST = {"backoff_base": 0.01, "backoff_max": 0.02}
SHORT = {"rasteret_dask.fetch.timeout": 0.3, "rasteret_dask.fetch.retries": 2}


class StalledFileSystem(AbstractFileSystem):
    """A synchronous filesystem whose reads never return until released (a stalled mount)."""

    protocol = "stalled"
    release = threading.Event()
    calls = 0

    def cat_file(self, path, start=None, end=None, **kwargs):  # type: ignore[no-untyped-def]
        type(self).calls += 1
        self.release.wait()
        raise OSError(f"{path}: the mount came back empty")


@pytest.fixture(scope="module", autouse=True)
def stalled_protocol():
    fsspec.register_implementation("stalled", StalledFileSystem, clobber=True)
    StalledFileSystem.release.clear()
    yield
    StalledFileSystem.release.set()  # let the abandoned threads finish


@pytest.fixture(scope="module")
def cogs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("timeouts")
    for i in range(4):
        write_cog(root / f"c{i}.tif", width=300, height=300, blocksize=256, dtype="uint16",
                  nodata=0, seed=60 + i)
    return root


def test_blocking_calls_abandon_frees_the_slot_for_the_next_call() -> None:
    pool = BlockingCalls(1, 2, "test-io")
    gate = threading.Event()
    stuck = pool.submit(gate.wait, 30)
    queued = pool.submit(lambda: "queued")
    time.sleep(0.05)
    assert not queued.done()  # one thread, blocked
    pool.abandon(stuck)
    assert queued.result(timeout=5) == "queued" and pool.stalled == 1
    threads = [t for t in threading.enumerate() if t.name.startswith("test-io")]
    assert len(threads) == 2 and all(t.daemon for t in threads)
    gate.set()
    assert stuck.result(timeout=5) is True
    deadline = time.monotonic() + 5
    while pool.stalled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.stalled == 0
    assert pool.submit(lambda: 7).result(timeout=5) == 7


def test_blocking_calls_refuse_new_calls_while_too_many_are_stuck() -> None:
    pool = BlockingCalls(2, 1, "test-cap")
    gate = threading.Event()
    stuck = pool.submit(gate.wait, 30)
    time.sleep(0.05)
    pool.abandon(stuck)
    with pytest.raises(BlockedCallsError, match="still stuck"):
        pool.submit(lambda: None)
    gate.set()
    stuck.result(timeout=5)
    deadline = time.monotonic() + 5
    while pool.stalled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.submit(lambda: 1).result(timeout=5) == 1


def test_a_queued_call_that_is_abandoned_never_runs() -> None:
    pool = BlockingCalls(1, 4, "test-queue")
    gate = threading.Event()
    ran: list[int] = []
    first = pool.submit(gate.wait, 30)
    second = pool.submit(ran.append, 2)
    pool.abandon(second)
    assert second.cancelled()
    gate.set()
    first.result(timeout=5)
    assert pool.submit(ran.append, 3).result(timeout=5) is None
    assert ran == [3]


def test_fetch_timeout_and_retries_come_from_dask_config() -> None:
    assert (RangeReader().timeout, RangeReader().retries) == (120.0, 5)
    with dask.config.set(SHORT):
        reader = RangeReader()
        assert (reader.timeout, reader.retries) == (0.3, 2)
        assert RangeReader(timeout=5.0, retries=3).timeout == 5.0


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(FetchError, match="FIFO, not a regular file") as info:
        RangeReader(**FAST).fetch([ByteRange(str(fifo), 0, 100)])
    assert time.monotonic() - started < 2 and info.value.attempts == 1
    (tmp_path / "folder.tif").mkdir()
    with pytest.raises(FetchError, match="directory, not a regular file"):
        RangeReader(**FAST).fetch([ByteRange(str(tmp_path / "folder.tif"), 0, 100)])


def test_a_local_read_that_never_returns_times_out_and_is_retried() -> None:
    StalledFileSystem.calls = 0
    started = time.monotonic()
    with pytest.raises(FetchError, match="TimeoutError") as info:
        RangeReader(timeout=0.2, retries=3, **FAST).fetch([ByteRange("stalled://m/a.tif", 0, 10)])
    elapsed = time.monotonic() - started
    assert info.value.attempts == 3 and StalledFileSystem.calls == 3
    assert 0.6 <= elapsed < 5
    assert "stalled://m/a.tif" in str(info.value)


def test_enrichment_with_a_fifo_and_a_stalled_path_finishes(cogs: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    records = [single(cogs / "c0.tif", rid="ok0"),
               single(cogs / "c1.tif", href=str(fifo), rid="fifo", when="2024-05-02"),
               single(cogs / "c2.tif", href="stalled://mount/c2.tif", rid="stalled",
                      when="2024-05-03"),
               single(cogs / "c3.tif", rid="ok3", when="2024-05-04")]
    collection = rd.build_collection_from_table(record_table(records), name="timeouts")
    started = time.monotonic()
    with dask.config.set(SHORT):
        report = collection.enrich(progress=False)
    assert time.monotonic() - started < 10
    assert (report.enriched, report.failed) == (2, 2)
    table = report.collection.to_table()
    errors = dict(zip(table[S.ID].to_pylist(),
                      [dict(e or ()) for e in table[S.ENRICH_ERRORS].to_pylist()], strict=True))
    assert "FIFO" in errors["fifo"]["B1"] and str(fifo) in errors["fifo"]["B1"]
    assert "TimeoutError" in errors["stalled"]["B1"]
    assert "stalled://mount/c2.tif" in errors["stalled"]["B1"]
    assert not errors["ok0"] and not errors["ok3"]


def test_a_read_of_a_path_become_a_fifo_fails_or_is_nodata_at_once(cogs: Path, tmp_path: Path,
                                                                    caplog) -> None:
    path = tmp_path / "moved.tif"
    path.write_bytes((cogs / "c0.tif").read_bytes())
    collection = rd.build_collection_from_table(record_table([single(path, rid="m")]), name="f")
    collection = collection.enrich(progress=False).collection
    epsg, t, (h, w) = file_info(path)
    box = pixel_box(t, 5.5, 5.5, w - 5.5, h - 5.5)
    path.unlink()
    os.mkfifo(path)
    started = time.monotonic()
    with pytest.raises(RasterReadError, match="record 'm', band 'B1'.*FIFO"):
        collection.get_xarray(box, ["B1"], geometry_crs=epsg).compute()
    with caplog.at_level(logging.WARNING, logger="rasteret_dask.read"):
        ds = collection.get_xarray(box, ["B1"], geometry_crs=epsg, errors="nodata").compute()
    assert time.monotonic() - started < 5
    assert np.all(ds["B1"].values == 0) and "FIFO" in ds.attrs["read_errors"][0]


def test_a_read_of_a_stalled_path_ends_within_its_timeouts(cogs: Path) -> None:
    local = rd.build_collection_from_table(record_table([single(cogs / "c1.tif", rid="s")]),
                                           name="s").enrich(progress=False).collection
    metadata = local.to_table()[S.metadata_column("B1")]
    table = record_table([single(cogs / "c1.tif", href="stalled://mount/c1.tif", rid="s")])
    moved = rd.build_collection_from_table(
        table.append_column(S.metadata_column("B1"), metadata), name="s")
    epsg, t, (h, w) = file_info(cogs / "c1.tif")
    box = pixel_box(t, 5.5, 5.5, w - 5.5, h - 5.5)
    started = time.monotonic()
    with dask.config.set(SHORT):
        values = moved.get_xarray(box, ["B1"], geometry_crs=epsg, errors="nodata").compute()
        with pytest.raises(RasterReadError, match="stalled://mount/c1.tif.*TimeoutError"):
            moved.get_xarray(box, ["B1"], geometry_crs=epsg).compute()
    assert time.monotonic() - started < 8
    assert np.all(values["B1"].values == 0)
    assert values.attrs["read_errors"] and "TimeoutError" in values.attrs["read_errors"][0]


EXIT_SCRIPT = textwrap.dedent("""
    import os, sys, tempfile, threading
    import dask.config, fsspec
    from fsspec.spec import AbstractFileSystem
    from rasteret_dask.io import ByteRange, FetchError, RangeReader

    class Stalled(AbstractFileSystem):
        protocol = "stalled"
        def cat_file(self, path, start=None, end=None, **kwargs):
            threading.Event().wait()  # for ever

    fsspec.register_implementation("stalled", Stalled, clobber=True)
    fifo = os.path.join(tempfile.mkdtemp(), "pipe.tif")
    os.mkfifo(fifo)
    reader = RangeReader(timeout=0.2, retries=2, backoff_base=0.01, backoff_max=0.01)
    outcomes = reader.fetch([ByteRange("stalled://m/a.tif", 0, 10), ByteRange(fifo, 0, 10)],
                            return_exceptions=True)
    assert all(isinstance(o, FetchError) for o in outcomes), outcomes
    print("stuck threads:", sum(t.name.startswith("rd-io") and t.is_alive()
                                for t in threading.enumerate()), flush=True)
""")


def test_the_process_exits_while_a_local_read_is_still_blocked() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert "stuck threads: 2" in done.stdout  # both attempts still blocked, yet the exit came
    assert time.monotonic() - started < 30
