"""Byte-range fetching over local files, file://, HTTP (RangeServer) and S3 (moto)."""

from __future__ import annotations

import asyncio
import pickle
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import dask.config
import pytest
from fsspec.implementations.local import LocalFileSystem

from rasteret_dask.io import ByteRange, FetchError, RangeReader, resolve, storage_options_for
from rasteret_dask.io.options import CONFIG_KEY
from rasteret_dask.io.state import close_loop_filesystems
from rasteret_dask.testing.servers import RangeServer, S3Server

pytestmark = pytest.mark.timeout(60)

SIZES = {"a.bin": 300_000, "b.bin": 70_001, "sub/c.bin": 123_457}
MANY = 40
FAST = {"backoff_base": 0.001, "backoff_max": 0.005}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("objects")
    rng = random.Random(7)
    for name, size in SIZES.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(rng.randbytes(size))
    for i in range(MANY):
        (base / "many").mkdir(exist_ok=True)
        (base / "many" / f"f{i:02d}.bin").write_bytes(rng.randbytes(4096))
    return base


@pytest.fixture(scope="module")
def http_server(root: Path) -> Iterator[RangeServer]:
    with RangeServer(root) as server:
        yield server


@pytest.fixture
def server(http_server: RangeServer) -> Iterator[RangeServer]:
    http_server.clear_faults()
    http_server.latency = 0.0
    http_server.ignore_range = False
    http_server.reset()
    yield http_server
    http_server.clear_faults()
    http_server.latency = 0.0
    http_server.ignore_range = False


@pytest.fixture(scope="module")
def s3(root: Path) -> Iterator[S3Server]:
    with S3Server() as server:
        server.create_bucket("rasters")
        server.upload_dir(root, "rasters", prefix="data")
        yield server


def _random_ranges(href: str, size: int, count: int, seed: int) -> list[ByteRange]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        start = rng.randrange(0, size - 1)
        out.append(ByteRange(href, start, min(size, start + rng.randrange(1, 20_000))))
    return out


def _expected(root: Path, names: dict[str, str], ranges: list[ByteRange]) -> list[bytes]:
    files = {href: (root / name).read_bytes() for href, name in names.items()}
    return [files[r.href][r.start : r.end] for r in ranges]


def _mixed_ranges(make_href, seed: int = 0) -> tuple[dict[str, str], list[ByteRange]]:
    names = {make_href(name): name for name in SIZES}
    ranges: list[ByteRange] = []
    for i, (href, name) in enumerate(names.items()):
        ranges += _random_ranges(href, SIZES[name], 60, seed + i)
    random.Random(seed).shuffle(ranges)
    return names, ranges


# --- correctness over every backend --------------------------------------------------------


@pytest.mark.parametrize("style", ["path", "file_url"])
def test_local_fetch_matches_slices(root: Path, style: str) -> None:
    def make(name: str) -> str:
        return str(root / name) if style == "path" else (root / name).as_uri()

    names, ranges = _mixed_ranges(make)
    assert RangeReader().fetch(ranges) == _expected(root, names, ranges)


def test_http_fetch_matches_slices(root: Path, server: RangeServer) -> None:
    names, ranges = _mixed_ranges(server.href, seed=3)
    assert RangeReader().fetch(ranges) == _expected(root, names, ranges)
    unmerged = RangeReader(merge_gap=0, max_merged_size=0)
    assert unmerged.fetch(ranges) == _expected(root, names, ranges)


def test_s3_fetch_matches_slices(root: Path, s3: S3Server) -> None:
    names, ranges = _mixed_ranges(lambda name: f"s3://rasters/data/{name}", seed=5)
    reader = RangeReader(storage_options=s3.storage_options)
    assert reader.fetch(ranges) == _expected(root, names, ranges)


def test_s3_options_from_dask_config(root: Path, s3: S3Server) -> None:
    href = "s3://rasters/data/b.bin"
    with dask.config.set({CONFIG_KEY: {"s3": s3.storage_options}}):
        (data,) = RangeReader().fetch([ByteRange(href, 10, 1000)])
    assert data == (root / "b.bin").read_bytes()[10:1000]


def test_server_ignoring_range_returns_the_right_slice(root: Path, server: RangeServer) -> None:
    server.ignore_range = True
    names, ranges = _mixed_ranges(server.href, seed=9)
    ranges = ranges[:20]
    assert RangeReader(merge_gap=0).fetch(ranges) == _expected(root, names, ranges)
    assert {r.status for r in server.requests} == {200}


# --- coalescing and concurrency ------------------------------------------------------------


def test_merging_reduces_requests(root: Path, server: RangeServer) -> None:
    href = server.href("a.bin")
    ranges = [ByteRange(href, i * 1000, i * 1000 + 600) for i in range(50)]
    expected = _expected(root, {href: "a.bin"}, ranges)
    assert RangeReader().fetch(ranges) == expected
    assert server.count() == 1
    server.reset()
    assert RangeReader(merge_gap=0).fetch(ranges) == expected
    assert server.count() == 50
    server.reset()
    assert RangeReader(max_merged_size=10_000).fetch(ranges) == expected
    assert server.count() == 5


def test_many_objects_are_fetched_concurrently(server: RangeServer) -> None:
    server.latency = 0.05
    ranges = [ByteRange(server.href(f"many/f{i:02d}.bin"), 100, 200) for i in range(MANY)]
    assert len(RangeReader().fetch(ranges)) == MANY
    assert server.count() == MANY
    assert server.max_in_flight > 8


def test_max_concurrent_bounds_requests_in_flight(server: RangeServer) -> None:
    server.latency = 0.01
    ranges = [ByteRange(server.href(f"many/f{i:02d}.bin"), 0, 10) for i in range(20)]
    RangeReader(max_concurrent=3).fetch(ranges)
    assert 1 <= server.max_in_flight <= 3


def test_local_reads_run_concurrently(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    barrier = threading.Barrier(4, timeout=10)
    original = LocalFileSystem.cat_file

    def waiting_cat_file(self, path, start=None, end=None, **kwargs):  # type: ignore[no-untyped-def]
        barrier.wait()  # breaks (and fails the fetch) unless 4 reads are in flight together
        return original(self, path, start=start, end=end, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "cat_file", waiting_cat_file)
    ranges = [ByteRange(str(root / "many" / f"f{i:02d}.bin"), 0, 64) for i in range(8)]
    out = RangeReader(retries=1).fetch(ranges)
    assert out == [(root / "many" / f"f{i:02d}.bin").read_bytes()[:64] for i in range(8)]


def test_fetch_in_dask_threaded_tasks(root: Path, server: RangeServer) -> None:
    names, ranges = _mixed_ranges(server.href, seed=17)
    expected = _expected(root, names, ranges)
    reader = RangeReader()
    parts = [dask.delayed(reader.fetch)(ranges[i::4]) for i in range(4)]
    results = dask.compute(*parts, scheduler="threads")
    assert [results[i % 4][i // 4] for i in range(len(ranges))] == expected


def test_fetch_from_many_threads(root: Path, server: RangeServer) -> None:
    names, ranges = _mixed_ranges(server.href, seed=11)
    expected = _expected(root, names, ranges)
    reader = RangeReader()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: reader.fetch(ranges), range(4)))
    assert all(result == expected for result in results)


# --- retries and failures ------------------------------------------------------------------


def test_fail_first_is_retried(root: Path, server: RangeServer) -> None:
    server.fail_first = 2
    names = {server.href(name): name for name in SIZES}
    ranges = [ByteRange(href, 5, 5000) for href in names]
    assert RangeReader(**FAST).fetch(ranges) == _expected(root, names, ranges)
    for name in SIZES:
        assert server.count(path=name) == 3
    assert [r.status for r in server.requests].count(503) == 2 * len(SIZES)


def test_random_failures_still_give_identical_bytes(root: Path, server: RangeServer) -> None:
    server.fail_rate = 0.2
    names, ranges = _mixed_ranges(server.href, seed=13)
    reader = RangeReader(merge_gap=0, max_merged_size=0, retries=10, **FAST)
    assert reader.fetch(ranges) == _expected(root, names, ranges)
    statuses = [r.status for r in server.requests]
    assert 503 in statuses and statuses.count(206) == len(set(ranges))


def test_persistent_503_fails_after_exactly_retries_attempts(server: RangeServer) -> None:
    server.set_status("b.bin", 503)
    href = server.href("b.bin")
    with pytest.raises(FetchError) as info:
        RangeReader(retries=3, **FAST).fetch([ByteRange(href, 1024, 2048)])
    error = info.value
    assert (error.href, error.start, error.end, error.attempts) == (href, 1024, 2048, 3)
    assert error.status == 503
    assert str(error) == f"bytes 1024-2047 of {href}: HTTP 503 after 3 attempts"
    assert server.count(path="b.bin") == 3


def test_persistent_429_is_retried(server: RangeServer) -> None:
    server.set_status("b.bin", 429)
    with pytest.raises(FetchError, match="HTTP 429 after 4 attempts"):
        RangeReader(retries=4, **FAST).fetch([ByteRange(server.href("b.bin"), 0, 10)])
    assert server.count(path="b.bin") == 4


@pytest.mark.parametrize("status", [404, 403])
def test_not_found_and_forbidden_fail_immediately(server: RangeServer, status: int) -> None:
    server.set_status("a.bin", status)
    with pytest.raises(FetchError) as info:
        RangeReader(**FAST).fetch([ByteRange(server.href("a.bin"), 0, 10)])
    assert info.value.attempts == 1 and info.value.status == status
    assert server.count(path="a.bin") == 1


def test_missing_local_file_fails_immediately(root: Path) -> None:
    with pytest.raises(FetchError, match="not found") as info:
        RangeReader().fetch([ByteRange(str(root / "nope.bin"), 0, 10)])
    assert info.value.attempts == 1


def test_missing_s3_key_fails_immediately(s3: S3Server) -> None:
    reader = RangeReader(storage_options=s3.storage_options, **FAST)
    with pytest.raises(FetchError) as info:
        reader.fetch([ByteRange("s3://rasters/data/nope.bin", 0, 10)])
    assert info.value.attempts == 1


@pytest.mark.parametrize("disconnect", [False, True])
def test_truncated_response_is_retried_then_fails(server: RangeServer, disconnect: bool) -> None:
    server.set_truncate("a.bin", 100, disconnect=disconnect)
    href = server.href("a.bin")
    with pytest.raises(FetchError) as info:
        RangeReader(retries=3, **FAST).fetch([ByteRange(href, 0, 1000)])
    assert info.value.attempts == 3 and href in str(info.value)
    assert server.count(path="a.bin") == 3


def test_truncation_that_recovers(root: Path, server: RangeServer) -> None:
    server.set_truncate("a.bin", 10)
    href = server.href("a.bin")
    reader = RangeReader(retries=50, backoff_base=0.02, backoff_max=0.02)
    outcome: list[bytes] = []
    worker = threading.Thread(target=lambda: outcome.extend(reader.fetch([ByteRange(href, 0, 99)])))
    worker.start()
    while server.count(path="a.bin") < 2:
        threading.Event().wait(0.005)
    server.set_truncate("a.bin", None)
    worker.join(timeout=20)
    assert outcome == [(root / "a.bin").read_bytes()[:99]]


# --- end of object -------------------------------------------------------------------------


def _past_end_hrefs(root: Path, server: RangeServer, s3: S3Server) -> list[tuple[str, dict]]:
    return [
        (str(root / "b.bin"), {}),
        (server.href("b.bin"), {}),
        ("s3://rasters/data/b.bin", s3.storage_options),
    ]


def test_allow_short_returns_what_exists(root: Path, server: RangeServer, s3: S3Server) -> None:
    tail = (root / "b.bin").read_bytes()[-10:]
    size = SIZES["b.bin"]
    for href, options in _past_end_hrefs(root, server, s3):
        reader = RangeReader(storage_options=options, **FAST)
        got = reader.fetch(
            [ByteRange(href, size - 10, size + 500), ByteRange(href, size + 100, size + 200)],
            allow_short=True,
        )
        assert got == [tail, b""], href


def test_past_end_without_allow_short_is_an_error(
    root: Path, server: RangeServer, s3: S3Server
) -> None:
    size = SIZES["b.bin"]
    for href, options in _past_end_hrefs(root, server, s3):
        reader = RangeReader(storage_options=options, retries=3, **FAST)
        good, bad = reader.fetch(
            [ByteRange(href, 0, 10), ByteRange(href, size - 10, size + 500)],
            return_exceptions=True,
        )
        assert good == (root / "b.bin").read_bytes()[:10]
        assert isinstance(bad, FetchError) and "past the end" in str(bad), href


# --- error reporting -----------------------------------------------------------------------


def test_return_exceptions_keeps_good_results(root: Path, server: RangeServer) -> None:
    server.set_status("b.bin", 404)
    ranges = [
        ByteRange(server.href("a.bin"), 0, 100),
        ByteRange(server.href("b.bin"), 0, 100),
        ByteRange(server.href("a.bin"), 200, 300),
        ByteRange(server.href("b.bin"), 50, 60),
        ByteRange(server.href("a.bin"), 7, 7),
    ]
    out = RangeReader(**FAST).fetch(ranges, return_exceptions=True)
    data = (root / "a.bin").read_bytes()
    assert out[0] == data[:100] and out[2] == data[200:300] and out[4] == b""
    assert isinstance(out[1], FetchError) and (out[1].start, out[1].end) == (0, 100)
    assert isinstance(out[3], FetchError) and (out[3].start, out[3].end) == (50, 60)
    with pytest.raises(FetchError) as info:
        RangeReader(**FAST).fetch(ranges)
    assert (info.value.start, info.value.end) == (0, 100)


def test_unknown_protocol_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match="cannot open filesystem"):
        RangeReader().fetch([ByteRange("nosuchprotocol://x/y.tif", 0, 10)])


def test_reader_and_error_pickle(root: Path, server: RangeServer) -> None:
    reader = pickle.loads(pickle.dumps(RangeReader(retries=2, storage_options={"x": {}})))
    assert reader.retries == 2
    clean = pickle.loads(pickle.dumps(RangeReader(merge_gap=7)))
    href = server.href("a.bin")
    assert clean.fetch([ByteRange(href, 1, 9)]) == [(root / "a.bin").read_bytes()[1:9]]
    error = pickle.loads(pickle.dumps(FetchError(href, 0, 10, 3, "HTTP 503", 503)))
    assert (error.href, error.attempts, error.status, str(error)) == (
        href,
        3,
        503,
        f"bytes 0-9 of {href}: HTTP 503 after 3 attempts",
    )


def test_fetch_inside_a_running_event_loop(root: Path, server: RangeServer) -> None:
    href = server.href("a.bin")
    expected = (root / "a.bin").read_bytes()[100:200]

    async def blocking_call() -> list:
        return RangeReader().fetch([ByteRange(href, 100, 200)])

    async def awaited_call() -> list:
        try:
            return await RangeReader().fetch_async([ByteRange(href, 100, 200)])
        finally:
            await close_loop_filesystems()

    assert asyncio.run(blocking_call()) == [expected]
    assert asyncio.run(awaited_call()) == [expected]


# --- filesystem resolution -----------------------------------------------------------------


def test_storage_options_merge_config_and_explicit() -> None:
    config = {"s3": {"anon": True, "client_kwargs": {"endpoint_url": "http://a", "x": 1}}}
    with dask.config.set({CONFIG_KEY: config}):
        merged = storage_options_for(
            "s3://b/k", {"client_kwargs": {"endpoint_url": "http://b"}, "requester_pays": True}
        )
        keyed = storage_options_for("s3://b/k", {"s3": {"anon": False}, "http": {"h": 1}})
        http = storage_options_for("https://host/x", {"http": {"headers": {"A": "1"}}})
    assert merged == {
        "anon": True,
        "requester_pays": True,
        "client_kwargs": {"endpoint_url": "http://b", "x": 1},
    }
    assert keyed == {"anon": False, "client_kwargs": {"endpoint_url": "http://a", "x": 1}}
    assert http == {"headers": {"A": "1"}}


def test_resolve_caches_instances(root: Path) -> None:
    fs1, path1 = resolve(str(root / "a.bin"))
    fs2, path2 = resolve((root / "a.bin").as_uri())
    assert fs1 is fs2 and path1 == path2 == (root / "a.bin").as_posix()
    h1, url = resolve("http://127.0.0.1:1/x.tif")
    h2, _ = resolve("http://127.0.0.1:1/y.tif")
    assert h1 is h2 and url == "http://127.0.0.1:1/x.tif"

    async def bound() -> tuple:
        a, _ = resolve("http://127.0.0.1:1/x.tif", asynchronous=True)
        b, _ = resolve("http://127.0.0.1:1/z.tif", asynchronous=True)
        await close_loop_filesystems()
        return a, b

    a, b = asyncio.run(bound())
    assert a is b and a is not h1 and a.asynchronous


# --- non-blocking submit -------------------------------------------------------------------


def test_submit_resolves_each_range_as_it_arrives(root: Path, server: RangeServer) -> None:
    server.set_status("b.bin", 404)
    server.latency = 0.05
    ranges = [
        ByteRange(server.href("a.bin"), 0, 100),
        ByteRange(server.href("b.bin"), 0, 100),
        ByteRange(server.href("a.bin"), 120, 300),
        ByteRange(server.href("a.bin"), 5, 5),
    ]
    started = time.perf_counter()
    futures = RangeReader(**FAST).submit(ranges)
    assert time.perf_counter() - started < 0.05  # returned before any answer
    data = (root / "a.bin").read_bytes()
    assert futures[0].result(timeout=10) == data[:100]
    assert futures[2].result(timeout=10) == data[120:300]
    assert futures[3].result(timeout=10) == b""
    with pytest.raises(FetchError, match="HTTP 404"):
        futures[1].result(timeout=10)
    assert RangeReader().submit([]) == []


def test_merged_ranges_are_zero_copy_views(root: Path, server: RangeServer) -> None:
    href = server.href("a.bin")
    first, second = RangeReader().fetch([ByteRange(href, 0, 1000), ByteRange(href, 1000, 3000)])
    assert isinstance(first, memoryview) and isinstance(second, memoryview)
    assert first.obj is second.obj  # both cut from the one merged payload
    assert bytes(first) + bytes(second) == (root / "a.bin").read_bytes()[:3000]


def test_submit_hands_over_each_range_while_the_merged_body_streams(
    root: Path, server: RangeServer
) -> None:
    """Two ranges merged into one request: the first resolves while the rest is stalled."""
    server.set_stall("a.bin", 150_000, seconds=1.0)
    href = server.href("a.bin")
    data = (root / "a.bin").read_bytes()
    started = time.perf_counter()
    first, second = RangeReader(**FAST).submit([ByteRange(href, 0, 100_000),
                                                ByteRange(href, 120_000, 250_000)])
    assert first.result(timeout=10) == data[:100_000]
    assert time.perf_counter() - started < 0.8 and not second.done()
    assert second.result(timeout=10) == data[120_000:250_000]
    assert time.perf_counter() - started >= 1.0
    assert server.count(path="a.bin") == 1  # one merged request


def test_streamed_range_is_kept_when_the_rest_of_its_request_fails(
    root: Path, server: RangeServer
) -> None:
    """A disconnect after the first range arrived: that range is delivered once, the other
    fails after its attempts, naming its own bytes."""
    server.set_truncate("a.bin", 150_000, disconnect=True)
    href = server.href("a.bin")
    first, second = RangeReader(retries=3, **FAST).submit(
        [ByteRange(href, 0, 100_000), ByteRange(href, 120_000, 250_000)]
    )
    assert first.result(timeout=10) == (root / "a.bin").read_bytes()[:100_000]
    with pytest.raises(FetchError, match="bytes 120000-249999") as info:
        second.result(timeout=10)
    assert info.value.attempts == 3 and server.count(path="a.bin") == 3


def test_submitted_bodies_share_one_buffer(root: Path, server: RangeServer) -> None:
    """Streamed bodies land in one arena (no per-request allocation); views stay correct."""
    hrefs = [server.href("a.bin"), server.href("sub/c.bin")]
    futures = RangeReader(merge_gap=0).submit(
        [ByteRange(hrefs[0], 0, 5000), ByteRange(hrefs[1], 10, 4000),
         ByteRange(hrefs[0], 100_000, 100_300)]
    )
    got = [f.result(timeout=10) for f in futures]
    assert len({id(view.obj) for view in got}) == 1
    a, c = (root / "a.bin").read_bytes(), (root / "sub/c.bin").read_bytes()
    assert [bytes(v) for v in got] == [a[:5000], c[10:4000], a[100_000:100_300]]
