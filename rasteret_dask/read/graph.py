"""Dask graph of a read plan: fetch-group tasks (many ranges each) feeding per-chunk decode tasks.

A fetch-group task only starts its requests and returns a :class:`PendingPayloads` at once; each
decode task waits for its own tiles, so decoding overlaps the requests still in flight, and
while it waits it decodes the group's chunks that have arrived (see :mod:`.pending`). The graph
carries only frozen plan values and a picklable ``RangeReader`` (configuration, no live clients):
each worker process opens its own filesystems.

Bands of at most :data:`SHARED_OUTPUT_BYTES` are decoded in place into one (time, y, x) buffer
per band and process (see :mod:`.buffers`); each chunk is a view of it.
"""

from __future__ import annotations

import uuid

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from ..io import RangeReader
from .buffers import Placement, SharedBandArray
from .chunks import RasterReadError, decode_chunk
from .failures import TileFailures
from .pending import ChunkJob, PendingPayloads
from .plan import NO_GROUP, BandPlan, FetchGroup, ReadPlan
from .prefetch import NATIVE_FETCH_PREFIX

__all__ = ["RasterReadError", "PendingPayloads", "SHARED_OUTPUT_BYTES", "fetch_group",
           "read_chunk", "decode_chunk", "band_array"]

SHARED_OUTPUT_BYTES = 256 * 1024 * 1024
"""Largest band (bytes) decoded into one shared buffer. A buffer lives while any of its chunks
does, so larger bands get one array per chunk: releasing chunks frees memory as a computation
goes (out-of-core reductions)."""


def fetch_group(reader: RangeReader, group: FetchGroup, jobs: tuple[ChunkJob, ...] = (),
                failures: TileFailures | None = None, lent: tuple[int, ...] = ()
                ) -> PendingPayloads:
    """Start fetching every byte range of a group concurrently; returns without waiting.
    With ``failures`` its chunks read failed tiles as nodata and report them there; ``lent``
    counts per range the chunks of later groups that borrow it."""
    nbytes = sum(r.end - r.start for r in group.ranges)
    return PendingPayloads(reader.submit(group.ranges), group.labels, nbytes, jobs, failures,
                           lent)


def read_chunk(payloads: PendingPayloads, k: int,
               lenders: list[PendingPayloads] | None = None) -> np.ndarray:
    """Decode task: the (1, h, w) array of chunk ``k`` of a fetch group; ``lenders`` are
    the payloads of the earlier groups it borrows tiles from."""
    return payloads.chunk(k, lenders or ())


def band_array(plan: ReadPlan, band: BandPlan, reader: RangeReader,
               failures: TileFailures | None = None) -> da.Array:
    """A lazy (time, y, x) dask array for one band, in the plan's regular chunks; with
    ``failures`` a tile that cannot be fetched or decoded is read as nodata and reported."""
    token = uuid.uuid4().hex[:12]
    fetch_name = f"{NATIVE_FETCH_PREFIX}{band.band}-{token}"
    name = f"read-{band.band}-{token}"
    shape = (len(plan.times), sum(band.row_chunks), sum(band.col_chunks))
    shared = int(np.prod(shape)) * band.dtype.itemsize <= SHARED_OUTPUT_BYTES
    rows = np.concatenate([[0], np.cumsum(band.row_chunks)]).tolist()
    cols = np.concatenate([[0], np.cumsum(band.col_chunks)]).tolist()
    jobs: list[list[ChunkJob]] = [[] for _ in band.groups]
    lent = [[0] * len(group.ranges) for group in band.groups]
    read_layer: dict = {}
    for (t, i, j), (g, work) in band.chunks.items():
        placement = Placement(name, shape, band.dtype.str, (t, rows[i], cols[j])) if shared \
            else None
        if g == NO_GROUP:  # no tile of the record here: a fill, without a fetch
            read_layer[(name, t, i, j)] = (decode_chunk, None, work, placement)
            continue
        task: tuple = (read_chunk, (fetch_name, g), len(jobs[g]))
        if work.borrowed:  # tiles of earlier groups: their fetch tasks are inputs too
            task += ([(fetch_name, lender) for lender in work.lenders],)
            for lender, index in work.borrowed:
                lent[lender][index] += 1
        read_layer[(name, t, i, j)] = task
        jobs[g].append((work, placement))
    fetch_layer = {(fetch_name, g): (fetch_group, reader, group, tuple(jobs[g]), failures,
                                     tuple(lent[g]) if any(lent[g]) else ())
                   for g, group in enumerate(band.groups)}
    layers = {fetch_name: fetch_layer, name: read_layer} if fetch_layer else {name: read_layer}
    graph = HighLevelGraph(layers, {fetch_name: set(), name: {fetch_name}} if fetch_layer
                           else {name: set()})
    chunks = ((1,) * len(plan.times), band.row_chunks, band.col_chunks)
    cls = SharedBandArray if shared else da.Array
    return cls(graph, name, chunks, dtype=band.dtype)
