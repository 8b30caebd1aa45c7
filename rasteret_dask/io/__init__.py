"""Byte-range I/O over fsspec: coalescing, concurrent fetching, retries."""

from rasteret_dask.io.errors import FetchError
from rasteret_dask.io.fetch import RangeReader
from rasteret_dask.io.options import storage_options_for
from rasteret_dask.io.ranges import ByteRange, MergedRange, coalesce, split_payloads
from rasteret_dask.io.state import close_loop_filesystems, resolve

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
