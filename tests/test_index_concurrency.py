"""Writers killed at random points, readers beside writers, and concurrent writers.

Every writer and reader here is its own process (SIGKILL is real); the index stays readable
with no row lost, a reader through the API sees whole versions only, and of two enrichments
started together both bands end complete or one fails with a clear error.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.testing.tables import synthetic_table

from .index_helpers import cog_table, fingerprint
from .test_ingest_stac import BBOX, ES, _expected, cog_server, items, s2_cogs, stac  # noqa: F401

_PRELUDE = """
import json, os, sys, time
import dask
import rasteret_dask as rd
options = json.loads(sys.argv[-1]) or None
"""

_EXPORT = _PRELUDE + """
import pyarrow.parquet as pq
root, source = sys.argv[1], sys.argv[2]
collection = rd.build_collection_from_table(pq.read_table(source), name="x")
print("ready", flush=True)
collection.export(root, overwrite=True, storage_options=options)
print("done", flush=True)
"""

_ENRICH = _PRELUDE + """
root, bands, go = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
print("ready", flush=True)
while go != "-" and not os.path.exists(go):
    time.sleep(0.001)
try:
    report = rd.load(root, storage_options=options).enrich(bands, progress=False)
except rd.ConcurrentWriteError as exc:
    print("conflict", exc, flush=True)
    sys.exit(3)
print("done", report.enriched, flush=True)
"""

_READER = _PRELUDE + """
from tests.index_helpers import fingerprint
root, stop = sys.argv[1], sys.argv[2]
while not os.path.exists(stop):
    try:
        table = rd.load(root, storage_options=options).to_table()
    except rd.IndexChangedError:
        print(json.dumps("changed"), flush=True)
        continue
    print(json.dumps(fingerprint(table)), flush=True)
"""


def _start(script: str, *args, options=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args),
                             json.dumps(options)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)


def _wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline().strip()
    assert line == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")


def _kill_after(proc: subprocess.Popen, delay: float) -> tuple[bool, float]:
    """SIGKILL ``proc`` after ``delay`` s unless it ended: (whether it was killed, seconds it
    ran after ``ready``)."""
    started = time.perf_counter()
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    elapsed = time.perf_counter() - started
    out, err = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode == -signal.SIGKILL, elapsed


def _timed(proc: subprocess.Popen) -> float:
    """Seconds from ``ready`` to the end of a process left to finish (the kill budget)."""
    _wait_ready(proc)
    started = time.perf_counter()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return time.perf_counter() - started


class _KillSchedule:
    """Kill delays: one random delay in each of ``runs`` equal slices of ``[0, budget)``
    (shuffled), then more runs while fewer than ``kills`` writers were killed, at most
    ``limit`` runs. A writer that ends before its delay (a quieter machine than the probe's)
    shrinks the budget to 90% of its run, so the next delays land inside a run."""

    def __init__(self, budget: float, runs: int, kills: int, seed: int, limit: int = 25) -> None:
        self.rng = random.Random(seed)
        self.budget, self.runs, self.kills, self.limit = budget, runs, kills, limit
        self.slices = [(k + self.rng.random()) / runs for k in range(runs)]
        self.rng.shuffle(self.slices)
        self.killed = 0

    def __iter__(self):
        run = 0
        while run < self.runs or (self.killed < self.kills and run < self.limit):
            share = self.slices[run] if run < self.runs else self.rng.uniform(0.1, 0.8)
            yield run, self.budget * share
            run += 1

    def record(self, outcome: tuple[bool, float]) -> None:
        killed, elapsed = outcome
        self.killed += killed
        if not killed:
            self.budget = min(self.budget, 0.9 * elapsed)


def _exactly_once(table: pa.Table, ids: set[str]) -> None:
    got = table[S.ID].to_pylist()
    assert len(got) == len(set(got)) and set(got) == ids


def test_sigkill_during_export_never_loses_a_row(tmp_path):
    root = tmp_path / "index"
    old = synthetic_table(20_000, months=24, seed=7)
    new = old.set_column(old.schema.get_field_index("eo:cloud_cover"), "eo:cloud_cover",
                         pc.add(old["eo:cloud_cover"], 1000.0))
    sources = {"old": tmp_path / "old.parquet", "new": tmp_path / "new.parquet"}
    pq.write_table(old, sources["old"])
    pq.write_table(new, sources["new"])
    rd.build_collection_from_table(old, name="x").export(root)
    fingerprints = {fingerprint(rd.load(root).to_table())}
    budget = 1.2 * _timed(_start(_EXPORT, tmp_path / "probe", sources["new"]))
    fingerprints.add(fingerprint(rd.load(tmp_path / "probe").to_table()))
    ids, schedule = set(old[S.ID].to_pylist()), _KillSchedule(budget, 10, kills=5, seed=16)
    for run, delay in schedule:
        target = "new" if run % 2 == 0 else "old"
        proc = _start(_EXPORT, root, sources[target])
        _wait_ready(proc)
        schedule.record(_kill_after(proc, delay))
        table = rd.load(root).to_table()
        _exactly_once(table, ids)
        assert fingerprint(table) in fingerprints, run
    assert schedule.killed >= 5
    rd.vacuum(root, older_than=0)  # what the dead writers left
    count = duckdb.connect().sql(f"SELECT count(*), count(DISTINCT id) FROM read_parquet("
                                 f"'{root}/**/*.parquet', hive_partitioning=true)").fetchall()
    assert count == [(20_000, 20_000)]


def test_sigkill_during_enrichment_keeps_old_or_new_metadata(tmp_path, cog_dir):
    root = tmp_path / "index"
    table = cog_table(f"{cog_dir}/", n=600, months=6)
    collection = rd.build_collection_from_table(table, name="e")
    collection.export(root)
    budget = 1.2 * _timed(_start(_ENRICH, root, "B04,B08", "-"))
    ids, outcomes = set(table[S.ID].to_pylist()), set()
    schedule = _KillSchedule(budget, 10, kills=3, seed=61)
    for _, delay in schedule:
        collection.export(root, overwrite=True)  # not enriched again
        proc = _start(_ENRICH, root, "B04,B08", "-")
        _wait_ready(proc)
        schedule.record(_kill_after(proc, delay))
        after = rd.load(root).to_table()
        _exactly_once(after, ids)
        for month in set(after["month"].to_pylist()):
            rows = after.filter(pc.equal(after["month"], month))
            for band in ("B04", "B08"):
                column = S.metadata_column(band)
                nulls = rows[column].null_count if column in rows.column_names else rows.num_rows
                assert nulls in (0, rows.num_rows), (month, band)
                outcomes.add(nulls == 0)
    assert schedule.killed >= 3 and outcomes == {True, False}


def test_readers_see_whole_versions_beside_writers(tmp_path, cog_dir):
    root, stop = tmp_path / "index", tmp_path / "stop"
    first = cog_table(f"{cog_dir}/", n=4000, months=12, seed=1)
    second = first.set_column(first.schema.get_field_index("eo:cloud_cover"), "eo:cloud_cover",
                              pc.add(first["eo:cloud_cover"], 500.0)).slice(0, 3000)
    versions = {fingerprint(rd.build_collection_from_table(first, name="r").export(root)
                            .to_table())}
    reader = _start(_READER, root, stop)
    while not reader.stdout.readline():
        pass
    for round_ in range(6):
        source = second if round_ % 2 == 0 else first
        loaded = rd.build_collection_from_table(source, name="r").export(root, overwrite=True)
        versions.add(fingerprint(loaded.to_table()))
        time.sleep(0.05)
    report = rd.load(root).enrich(["B04"], progress=False)
    versions.add(fingerprint(report.collection.to_table()))
    time.sleep(0.2)
    stop.write_text("stop")
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    seen = [json.loads(line) for line in out.splitlines() if line.strip()]
    reads = [tuple(s) for s in seen if s != "changed"]
    assert len(reads) >= 10
    unknown = [r for r in reads if r not in versions]
    assert not unknown, unknown[:3]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_enrichments_of_different_bands_never_lose_one(tmp_path, cog_dir, where, s3_server):
    options = None
    if where == "s3":
        s3_server.create_bucket("concurrent-enrich")
        root, options = "s3://concurrent-enrich/index", {"s3": s3_server.storage_options}
    else:
        root = tmp_path / "index"
    table = cog_table(f"{cog_dir}/", n=400, months=4, seed=5)
    collection = rd.build_collection_from_table(table, name="c")
    results = []
    for round_ in range(3):
        collection.export(root, overwrite=round_ > 0, storage_options=options)
        go = tmp_path / f"go-{round_}"
        procs = {band: _start(_ENRICH, root, band, go, options=options)
                 for band in ("B04", "B08")}
        for proc in procs.values():
            _wait_ready(proc)
        go.write_text("go")
        codes = {}
        for band, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode in (0, 3), err
            if proc.returncode == 3:
                assert "kept changing" in out and str(root) in out
            codes[band] = proc.returncode
        final = rd.load(root, storage_options=options).to_table()
        for band, code in codes.items():
            column = S.metadata_column(band)
            if code == 0:
                assert column in final.column_names and final[column].null_count == 0, band
        assert 0 in codes.values()
        results.append(tuple(codes.values()))
    assert results


def test_an_ingest_racing_an_enrichment_redoes_its_appends_on_the_new_files(
        stac, items, tmp_path, monkeypatch):  # noqa: F811 - shared fixtures
    from rasteret_dask.ingest import stac_build

    kwargs = dict(name="s2", stac_api=stac.url, collection="sentinel-2-l2a", data_source=ES, bbox=BBOX,
                  workspace_dir=tmp_path, enrich_cog=False, progress=False)
    rd.build_from_stac(date_range=("2024-01-01", "2024-01-31"), max_items=5, **kwargs)
    root = tmp_path / "s2"
    real, rivals = stac_build.commit_changes, []

    def racing(store, changes, **options):
        if not rivals:  # an enrichment of the first five items commits first
            rivals.append("running")
            rivals[0] = rd.load(root).enrich(["B04"], progress=False)
        return real(store, changes, **options)

    monkeypatch.setattr(stac_build, "commit_changes", racing)
    grown = rd.build_from_stac(date_range=("2024-01-01", "2024-02-29"), **kwargs)
    assert rivals[0].enriched == 5
    expected = _expected(items, "2024-01-01", "2024-02-29")
    table = grown.to_table()
    assert sorted(table["id"].to_pylist()) == sorted(set().union(*expected.values()))
    assert table.num_rows - table["B04_metadata"].null_count == 5  # the rival's work is kept
    assert grown.version == 3 and grown.info.extra["stac"]["searched"][0][1] >= "2024-02-29"
