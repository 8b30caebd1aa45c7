"""A minimal driver for the sans-I/O parser: one file, a caller-supplied range reader."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .buffer import NeedBytes, SparseBuffer, TiffError
from .header import TiffHeader, parse_tiff_header
from .ifd import IFD_READAHEAD

__all__ = ["ReadRanges", "read_tiff_header"]

ReadRanges = Callable[[Sequence[tuple[int, int]]], Sequence[bytes]]


def read_tiff_header(
    read_ranges: ReadRanges,
    *,
    prefix_size: int = 65536,
    max_rounds: int = 8,
    readahead: int = IFD_READAHEAD,
) -> TiffHeader:
    """Parse a TIFF header through ``read_ranges`` (ranges -> bytes), fetching a prefix first and
    then exactly the ranges the parser reports missing; a short answer means end of file.

    ``read_ranges`` must accept ranges that run past the end of the file and answer them short
    (as a file read or an HTTP Range request does); see `parse_tiff_header` for ``readahead``.
    """
    if prefix_size <= 0:
        raise ValueError(f"prefix_size must be positive, got {prefix_size}")
    buf = SparseBuffer()
    ranges: list[tuple[int, int]] = [(0, prefix_size)]
    for _ in range(max_rounds):
        answers = read_ranges(ranges)
        if len(answers) != len(ranges):
            raise ValueError(f"read_ranges returned {len(answers)} answers for {len(ranges)}")
        for (start, end), data in zip(ranges, answers):
            buf.add(start, data, requested=end - start)
        try:
            return parse_tiff_header(buf, readahead=readahead)
        except NeedBytes as need:
            ranges = list(need.ranges)
    raise TiffError(f"TIFF header not parsed within {max_rounds} read rounds")
