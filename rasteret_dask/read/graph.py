"""Dask graph of a read plan: fetch-group tasks (many ranges each) feeding per-chunk decode tasks.

The graph carries only frozen plan values and a picklable ``RangeReader`` (configuration, no
live clients): each worker process opens its own filesystems.
"""

from __future__ import annotations

import uuid

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from ..decode import DecodeError, decode_tile
from ..io import FetchError, RangeReader
from .plan import BandPlan, ChunkWork, FetchGroup, ReadPlan

__all__ = ["RasterReadError", "fetch_group", "decode_chunk", "band_array"]


class RasterReadError(OSError):
    """A tile could not be fetched or decoded; the message names record, band and href."""


def fetch_group(reader: RangeReader, group: FetchGroup) -> list[bytes]:
    """Fetch every byte range of a group concurrently (one task, many requests in flight)."""
    results = reader.fetch(group.ranges, return_exceptions=True)
    for label, result in zip(group.labels, results, strict=True):
        if isinstance(result, FetchError):
            raise RasterReadError(f"{label}: {result}") from result
    return results


def decode_chunk(payloads: list[bytes], work: ChunkWork) -> np.ndarray:
    """Decode the chunk's tiles, crop them and place them into a (1, h, w) array."""
    dtype = np.dtype(work.spec.dtype).newbyteorder("=")
    covered = sum((r.dst[1] - r.dst[0]) * (r.dst[3] - r.dst[2]) for r in work.tiles)
    if covered == work.shape[0] * work.shape[1]:
        out = np.empty(work.shape, dtype=dtype)  # tiles tile the chunk exactly
    else:
        out = np.full(work.shape, work.fill, dtype=dtype)
    for read in work.tiles:
        try:
            tile = decode_tile(payloads[read.payload], work.spec)
        except DecodeError as exc:
            raise RasterReadError(f"{work.label}: {exc}") from exc
        s0, s1, s2, s3 = read.src
        d0, d1, d2, d3 = read.dst
        out[d0:d1, d2:d3] = tile[s0:s1, s2:s3, work.sample]
    return out[np.newaxis]


def band_array(plan: ReadPlan, band: BandPlan, reader: RangeReader) -> da.Array:
    """A lazy (time, y, x) dask array for one band, chunked along the tile grid."""
    token = uuid.uuid4().hex[:12]
    fetch_name = f"fetch-{band.band}-{token}"
    name = f"read-{band.band}-{token}"
    fetch_layer = {(fetch_name, g): (fetch_group, reader, group)
                   for g, group in enumerate(band.groups)}
    read_layer = {(name, t, i, j): (decode_chunk, (fetch_name, g), work)
                  for (t, i, j), (g, work) in band.chunks.items()}
    graph = HighLevelGraph(
        {fetch_name: fetch_layer, name: read_layer},
        {fetch_name: set(), name: {fetch_name}},
    )
    chunks = ((1,) * len(plan.times), band.row_chunks, band.col_chunks)
    return da.Array(graph, name, chunks, dtype=band.dtype)
