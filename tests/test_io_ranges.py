"""Pure properties of byte-range coalescing and split-back."""

from __future__ import annotations

import random

import pytest

from rasteret_dask.io.ranges import ByteRange, MergedRange, coalesce, split_payloads

DATA = {
    "a": bytes(random.Random(1).randrange(256) for _ in range(4096)),
    "b": bytes(random.Random(2).randrange(256) for _ in range(4096)),
}


def _roundtrip(ranges: list[ByteRange], merged: list[MergedRange]) -> list[bytes]:
    payloads = [DATA[m.href][m.start : m.end] for m in merged]
    return split_payloads(merged, payloads, len(ranges))


def _expected(ranges: list[ByteRange]) -> list[bytes]:
    return [DATA[r.href][r.start : r.end] for r in ranges]


def test_adjacent_ranges_merge_with_zero_gap() -> None:
    ranges = [ByteRange("a", 0, 10), ByteRange("a", 10, 20), ByteRange("a", 20, 35)]
    merged = coalesce(ranges, gap=0, max_size=1 << 20)
    assert [(m.start, m.end) for m in merged] == [(0, 35)]
    assert _roundtrip(ranges, merged) == _expected(ranges)


def test_gap_threshold_is_inclusive() -> None:
    ranges = [ByteRange("a", 0, 10), ByteRange("a", 15, 20), ByteRange("a", 26, 30)]
    merged = coalesce(ranges, gap=5, max_size=1 << 20)
    assert [(m.start, m.end) for m in merged] == [(0, 20), (26, 30)]
    assert _roundtrip(ranges, merged) == _expected(ranges)


def test_overlapping_and_duplicate_ranges() -> None:
    ranges = [
        ByteRange("a", 100, 200),
        ByteRange("a", 150, 180),
        ByteRange("a", 100, 200),
        ByteRange("a", 190, 260),
    ]
    merged = coalesce(ranges, gap=0, max_size=1 << 20)
    assert [(m.start, m.end) for m in merged] == [(100, 260)]
    assert len(merged[0].members) == 4
    assert _roundtrip(ranges, merged) == _expected(ranges)


def test_multiple_hrefs_never_merge_and_keep_input_order() -> None:
    ranges = [ByteRange("b", 0, 8), ByteRange("a", 0, 8), ByteRange("b", 8, 16)]
    merged = coalesce(ranges, gap=1024, max_size=1 << 20)
    assert [(m.href, m.start, m.end) for m in merged] == [("b", 0, 16), ("a", 0, 8)]
    assert _roundtrip(ranges, merged) == _expected(ranges)


def test_max_size_limits_merges_but_keeps_large_ranges_whole() -> None:
    ranges = [ByteRange("a", i * 100, i * 100 + 100) for i in range(10)]
    merged = coalesce(ranges, gap=0, max_size=300)
    assert [m.size for m in merged] == [300, 300, 300, 100]
    assert all(m.size <= 300 for m in merged)
    big = [ByteRange("a", 0, 1000), ByteRange("a", 1000, 1010)]
    merged_big = coalesce(big, gap=0, max_size=500)
    assert [(m.start, m.end) for m in merged_big] == [(0, 1000), (1000, 1010)]
    assert _roundtrip(big, merged_big) == _expected(big)


def test_unsorted_input_is_sorted_per_href() -> None:
    ranges = [ByteRange("a", 500, 510), ByteRange("a", 0, 10), ByteRange("a", 20, 30)]
    merged = coalesce(ranges, gap=10, max_size=1 << 20)
    assert [(m.start, m.end) for m in merged] == [(0, 30), (500, 510)]
    assert [i for i, _ in merged[0].members] == [1, 2]
    assert _roundtrip(ranges, merged) == _expected(ranges)


def test_random_ranges_roundtrip_and_cover_every_input_once() -> None:
    rng = random.Random(42)
    for _ in range(50):
        ranges = []
        for _ in range(rng.randrange(1, 40)):
            href = rng.choice("ab")
            start = rng.randrange(0, 4000)
            ranges.append(ByteRange(href, start, start + rng.randrange(1, 96)))
        gap, max_size = rng.choice([0, 7, 64, 512]), rng.choice([1, 128, 1024, 1 << 20])
        merged = coalesce(ranges, gap=gap, max_size=max_size)
        covered = sorted(i for m in merged for i, _ in m.members)
        assert covered == list(range(len(ranges)))
        for m in merged:
            assert all(m.start <= r.start and r.end <= m.end for _, r in m.members)
            assert m.size <= max_size or len(m.members) == 1
        assert _roundtrip(ranges, merged) == _expected(ranges)


def test_split_of_short_payload_truncates_members() -> None:
    ranges = [ByteRange("a", 0, 10), ByteRange("a", 10, 20)]
    (merged,) = coalesce(ranges, gap=0, max_size=100)
    assert merged.split(DATA["a"][:15]) == [(0, DATA["a"][:10]), (1, DATA["a"][10:15])]


def test_invalid_ranges_and_arguments() -> None:
    with pytest.raises(ValueError):
        ByteRange("a", 10, 5)
    with pytest.raises(ValueError):
        ByteRange("a", -1, 5)
    with pytest.raises(ValueError):
        coalesce([ByteRange("a", 0, 1)], gap=-1, max_size=10)
    assert coalesce([], gap=0, max_size=10) == []
    assert ByteRange("x", 1024, 2048).describe() == "bytes 1024-2047 of x"


def test_split_is_zero_copy() -> None:
    payload = DATA["a"][:30]
    whole, = coalesce([ByteRange("a", 0, 30)], gap=0, max_size=100)
    assert whole.split(payload)[0][1] is payload  # one member covering the payload: itself
    ranges = [ByteRange("a", 0, 10), ByteRange("a", 5, 25)]
    (merged,) = coalesce(ranges, gap=0, max_size=100)
    parts = merged.split(payload)
    assert all(isinstance(part, memoryview) and part.obj is payload for _, part in parts)
    assert [bytes(part) for _, part in parts] == [payload[:10], payload[5:25]]
