"""Byte bookkeeping for the sans-I/O parser: the bytes known so far and what is still missing.

The parser never performs I/O. It reads from a `SparseBuffer`; when bytes are absent it raises
`NeedBytes` naming every range it needs, a driver fetches them, adds them and parses again.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

__all__ = ["TiffError", "NeedBytes", "SparseBuffer", "merge_ranges"]


class TiffError(ValueError):
    """The bytes are not a TIFF this package can read (bad file, unsupported layout, truncated)."""


class NeedBytes(Exception):
    """The parse needs more bytes: ``ranges`` are absolute, sorted, disjoint ``[start, end)``.

    The ranges never overlap bytes already held. An IFD not yet held is requested with a
    bounded read-ahead (see `parse_tiff_header`), so one round usually brings its entries and
    values; before the file size is known such a range may run past the end of the file.
    """

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        self.ranges: tuple[tuple[int, int], ...] = tuple(merge_ranges(ranges))
        text = ", ".join(f"[{a}, {b})" for a, b in self.ranges[:8])
        more = f" and {len(self.ranges) - 8} more" if len(self.ranges) > 8 else ""
        super().__init__(f"need bytes {text}{more}")


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort ``[start, end)`` ranges and merge the ones that overlap or touch; drop empty ones."""
    out: list[tuple[int, int]] = []
    for start, end in sorted((int(a), int(b)) for a, b in ranges if b > a):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


class SparseBuffer:
    """Byte segments of one file known so far, and the file size once it is known (``eof``)."""

    def __init__(self, eof: int | None = None) -> None:
        self._starts: list[int] = []
        self._chunks: list[bytes] = []
        self.eof: int | None = eof

    def __repr__(self) -> str:
        return f"SparseBuffer(segments={self.segments}, eof={self.eof})"

    @property
    def segments(self) -> list[tuple[int, int]]:
        """The ``[start, end)`` ranges held, sorted and disjoint."""
        return [(s, s + len(c)) for s, c in zip(self._starts, self._chunks)]

    @property
    def nbytes(self) -> int:
        """Total number of bytes held."""
        return sum(len(c) for c in self._chunks)

    def add(self, start: int, data: bytes, requested: int | None = None) -> None:
        """Record ``data`` found at ``start``; when ``requested`` is given and more than
        ``len(data)``, the short answer means the file ends at ``start + len(data)``."""
        if start < 0:
            raise ValueError(f"negative offset {start}")
        data = bytes(data)
        if requested is not None and len(data) < requested:
            end = start + len(data)
            self.eof = end if self.eof is None else min(self.eof, end)
        if not data:
            return
        end = start + len(data)
        # segments that overlap or touch [start, end) are merged into one
        lo = bisect.bisect_left(self._starts, start)
        if lo > 0 and self._starts[lo - 1] + len(self._chunks[lo - 1]) >= start:
            lo -= 1
        hi = bisect.bisect_right(self._starts, end)
        if lo == hi:
            self._starts.insert(lo, start)
            self._chunks.insert(lo, data)
            return
        new_start = min(start, self._starts[lo])
        last_end = self._starts[hi - 1] + len(self._chunks[hi - 1])
        merged = bytearray()
        # keep existing bytes before `start` and after `end`; the new data wins in between
        first = self._chunks[lo]
        if self._starts[lo] < start:
            merged += first[: start - self._starts[lo]]
        merged += data
        if last_end > end:
            last = self._chunks[hi - 1]
            merged += last[end - self._starts[hi - 1] :]
        self._starts[lo:hi] = [new_start]
        self._chunks[lo:hi] = [bytes(merged)]

    def missing(self, start: int, end: int) -> list[tuple[int, int]]:
        """The sub-ranges of ``[start, end)`` not held (ignores ``eof``)."""
        gaps: list[tuple[int, int]] = []
        pos = start
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        while pos < end and i < len(self._starts):
            s = self._starts[i]
            e = s + len(self._chunks[i])
            if e <= pos:
                i += 1
                continue
            if s >= end:
                break
            if s > pos:
                gaps.append((pos, s))
            pos = max(pos, e)
            i += 1
        if pos < end:
            gaps.append((pos, end))
        return gaps

    def covers(self, start: int, end: int) -> bool:
        """Whether every byte of ``[start, end)`` is held."""
        return not self.missing(start, end)

    def read(self, start: int, length: int) -> bytes:
        """The bytes ``[start, start + length)``; `NeedBytes` when not all held, `TiffError` when
        the range runs past the known end of the file."""
        end = start + length
        if self.eof is not None and end > self.eof:
            raise TiffError(
                f"truncated TIFF: needs bytes [{start}, {end}) but the file has only "
                f"{self.eof} bytes"
            )
        if length <= 0:
            return b""
        i = bisect.bisect_right(self._starts, start) - 1
        if i >= 0:
            s = self._starts[i]
            chunk = self._chunks[i]
            if s + len(chunk) >= end:
                return chunk[start - s : end - s]
        raise NeedBytes(self.missing(start, end))
