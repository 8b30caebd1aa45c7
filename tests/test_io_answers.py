"""HTTP answers that are not the range asked for: a 206 without Content-Range, with another
range's Content-Range, or with a longer body is rejected before its bytes are used, retried
like a transient error, then fails naming href and range; a 200 (Range ignored) is sliced."""

from __future__ import annotations

from pathlib import Path

import pytest

from rasteret_dask.io import ByteRange, FetchError, RangeReader
from rasteret_dask.io.backends import check_partial, content_range
from rasteret_dask.io.errors import RangeResponseError, ShortReadError
from rasteret_dask.testing.faulty import BAD_RANGE_KINDS, FaultyRangeServer

FAST = {"backoff_base": 0.001, "backoff_max": 0.01}
SIZE = 300_000


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("answers")
    (folder / "a.bin").write_bytes(bytes(range(256)) * (SIZE // 256) + bytes(SIZE % 256))
    return folder


@pytest.fixture(scope="module")
def server(root: Path):
    with FaultyRangeServer(root) as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(server: FaultyRangeServer):
    server.clear_faults()
    server.reset()
    yield
    server.clear_faults()


def test_content_range_parts() -> None:
    assert content_range("bytes 0-99/1000") == (0, 99, 1000)
    assert content_range("bytes 10-19/*") == (10, 19, None)
    assert content_range("bytes */1000") == (None, None, 1000)
    assert content_range(None) == (None, None, None)
    assert content_range("items 0-9/10") == (None, None, None)


def test_check_partial_accepts_the_range_asked_and_an_end_of_object_clamp() -> None:
    assert check_partial("bytes 100-199/1000", 100, 100, 200) == (100, 1000)
    assert check_partial("bytes 100-199/*", None, 100, 200) == (100, None)
    assert check_partial("bytes 900-999/1000", 100, 900, 1200) == (100, 1000)  # object ends


@pytest.mark.parametrize(("header", "length", "match"), [
    (None, 100, "without Content-Range"),
    ("bytes 101-199/1000", 99, "Content-Range 'bytes 101-199/1000'"),
    ("bytes 100-198/1000", 99, "Content-Range 'bytes 100-198/1000'"),
    ("bytes 100-299/1000", 200, "Content-Range 'bytes 100-299/1000'"),
    ("bytes 900-999/2000", 100, "Content-Range 'bytes 900-999/2000'"),  # not the end
    ("bytes garbage/1000", 100, "Content-Range"),
    ("bytes 100-199/1000", 116, "116 bytes"),
])
def test_check_partial_rejects_other_answers(header, length, match) -> None:
    start, end = (900, 1200) if header and header.startswith("bytes 900") else (100, 200)
    with pytest.raises(RangeResponseError, match=match) as info:
        check_partial(header, length, start, end)
    assert f"bytes {start}-{end - 1}" in str(info.value)


def test_check_partial_calls_a_short_length_a_short_read() -> None:
    with pytest.raises(ShortReadError, match="short read: 40 of 100"):
        check_partial("bytes 100-199/1000", 40, 100, 200)


@pytest.mark.parametrize("kind", BAD_RANGE_KINDS)
@pytest.mark.parametrize("submit", [False, True])
def test_bad_206_is_rejected_after_its_attempts(server, kind, submit) -> None:
    server.set_bad_range("a.bin", kind)
    href = server.href("a.bin")
    reader = RangeReader(retries=3, **FAST)
    wanted = ByteRange(href, 1000, 61_000)
    with pytest.raises(FetchError) as info:
        if submit:  # the streaming path of read tasks
            reader.submit([wanted])[0].result(timeout=20)
        else:
            reader.fetch([wanted])
    error = info.value
    assert error.href == href and (error.start, error.end) == (1000, 61_000)
    assert error.attempts == 3 and server.count(path="a.bin") == 3
    assert "RangeResponseError" in str(error) and f"bytes 1000-60999 of {href}" in str(error)


@pytest.mark.parametrize("kind", BAD_RANGE_KINDS)
def test_one_bad_206_is_retried_into_the_right_bytes(root, server, kind) -> None:
    server.set_bad_range("a.bin", kind, times=1)
    href = server.href("a.bin")
    data = (root / "a.bin").read_bytes()
    got = RangeReader(**FAST).submit([ByteRange(href, 5, 70_005)])[0].result(timeout=20)
    assert bytes(got) == data[5:70_005]
    assert [r.status for r in server.requests] == [206, 206]


def test_ranges_past_the_end_still_read_with_a_clamped_206(root, server) -> None:
    href = server.href("a.bin")
    got = RangeReader(**FAST).fetch([ByteRange(href, SIZE - 10, SIZE + 90)], allow_short=True)
    assert bytes(got[0]) == (root / "a.bin").read_bytes()[-10:]


def test_a_200_answer_to_a_range_request_is_sliced(root, server) -> None:
    server.ignore_range = True
    try:
        href = server.href("a.bin")
        reader = RangeReader(merge_gap=0, **FAST)
        ranges = [ByteRange(href, 7, 5007), ByteRange(href, 200_000, 200_123)]
        got = [bytes(f.result(timeout=20)) for f in reader.submit(ranges)]
    finally:
        server.ignore_range = False
    data = (root / "a.bin").read_bytes()
    assert got == [data[7:5007], data[200_000:200_123]]
    assert {r.status for r in server.requests} == {200}


def test_byte_status_fails_only_the_ranges_holding_the_byte(root, server) -> None:
    server.set_byte_status("a.bin", 50_000, 500)
    href = server.href("a.bin")
    good, bad = RangeReader(retries=2, merge_gap=0, **FAST).fetch(
        [ByteRange(href, 0, 1000), ByteRange(href, 49_000, 51_000)], return_exceptions=True)
    assert bytes(good) == (root / "a.bin").read_bytes()[:1000]
    assert isinstance(bad, FetchError) and bad.status == 500 and bad.attempts == 2
