"""Byte-range I/O over fsspec: coalescing, concurrent fetching, retries."""

from rasteret_dask.io.fetch import FetchError, RangeReader
from rasteret_dask.io.filesystems import close_loop_filesystems, resolve, storage_options_for
from rasteret_dask.io.ranges import ByteRange, MergedRange, coalesce, split_payloads

__all__ = [
    "ByteRange",
    "FetchError",
    "MergedRange",
    "RangeReader",
    "close_loop_filesystems",
    "coalesce",
    "resolve",
    "split_payloads",
    "storage_options_for",
]
