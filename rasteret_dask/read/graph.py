"""Dask graph of a read plan: fetch-group tasks (many ranges each) feeding per-chunk decode tasks.

A fetch-group task only starts its requests and returns a :class:`PendingPayloads` at once; each
decode task waits for its own tiles, so decoding overlaps the requests still in flight. The graph
carries only frozen plan values and a picklable ``RangeReader`` (configuration, no live clients):
each worker process opens its own filesystems.

Bands of at most :data:`SHARED_OUTPUT_BYTES` are decoded in place into one (time, y, x) buffer
per band and process (not on distributed workers, whose memory accounting sees chunks only);
each chunk is a view of it. When every chunk of a computed band is in one buffer, ``compute``
returns that buffer instead of concatenating copies of the chunks.
"""

from __future__ import annotations

import sys
import threading
import uuid
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
from dask.array.core import finalize
from dask.highlevelgraph import HighLevelGraph

from ..decode import DecodeError, DecodeSpec, decode_tile
from ..io import FetchError, RangeReader
from ..io.fetch import Payload
from .plan import BandPlan, ChunkWork, FetchGroup, ReadPlan, TileRead

__all__ = ["RasterReadError", "PendingPayloads", "SHARED_OUTPUT_BYTES", "fetch_group",
           "decode_chunk", "band_array"]

SHARED_OUTPUT_BYTES = 256 * 1024 * 1024
"""Largest band (bytes) decoded into one shared buffer. A buffer lives while any of its chunks
does, so larger bands get one array per chunk: releasing chunks frees memory as a computation
goes (out-of-core reductions)."""


class RasterReadError(OSError):
    """A tile could not be fetched or decoded; the message names record, band and href."""


# --- fetch --------------------------------------------------------------------------------------

class PendingPayloads:
    """A fetch group's tile bytes, arriving in the background; :meth:`get` waits for one.

    Pickling waits for every range, so the object can travel between processes.
    """

    __slots__ = ("_futures", "_labels", "_nbytes")

    def __init__(self, futures: list[Future], labels: tuple[str, ...], nbytes: int) -> None:
        self._futures = futures
        self._labels = labels
        self._nbytes = nbytes

    def __len__(self) -> int:
        return len(self._futures)

    def get(self, index: int) -> Payload:
        """The bytes of range ``index``, once fetched; a failed fetch raises RasterReadError."""
        try:
            return self._futures[index].result()
        except FetchError as exc:
            raise RasterReadError(f"{self._labels[index]}: {exc}") from exc

    def __sizeof__(self) -> int:
        return self._nbytes

    def __reduce__(self) -> tuple[Any, ...]:
        outcomes = []
        for future in self._futures:
            error = future.exception()
            outcomes.append(error if error is not None else bytes(future.result()))
        return (_completed, (outcomes, self._labels, self._nbytes))


def _completed(outcomes: list[bytes | BaseException], labels: tuple[str, ...],
               nbytes: int) -> PendingPayloads:
    futures: list[Future] = []
    for outcome in outcomes:
        future: Future = Future()
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
        futures.append(future)
    return PendingPayloads(futures, labels, nbytes)


def fetch_group(reader: RangeReader, group: FetchGroup) -> PendingPayloads:
    """Start fetching every byte range of a group concurrently; returns without waiting."""
    nbytes = sum(r.end - r.start for r in group.ranges)
    return PendingPayloads(reader.submit(group.ranges), group.labels, nbytes)


# --- shared band buffers ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Placement:
    """Where a chunk goes in its band's shared buffer: band array name, shape and offset."""

    name: str
    shape: tuple[int, int, int]
    dtype: str
    origin: tuple[int, int, int]


@dataclass(eq=False)
class _Shared:
    array: weakref.ref
    written: set = field(default_factory=set)
    sealed: bool = False


_shared_lock = threading.RLock()  # re-entrant: a buffer may be freed (and forgotten) under it
_shared: dict[str, _Shared] = {}


def _forget(name: str, entry: _Shared) -> None:
    with _shared_lock:
        if _shared.get(name) is entry:
            del _shared[name]


def _on_distributed_worker() -> bool:
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def _claim(placement: Placement, shape: tuple[int, int]) -> np.ndarray:
    """The chunk's (1, h, w) region of this process's buffer for its band (a new buffer when
    there is none alive, or when this chunk was already written: a new computation)."""
    with _shared_lock:
        entry = _shared.get(placement.name)
        array = entry.array() if entry is not None else None
        if array is None or entry.sealed or placement.origin in entry.written:
            array = np.empty(placement.shape, np.dtype(placement.dtype))
            entry = _Shared(weakref.ref(array))
            _shared[placement.name] = entry
            weakref.finalize(array, _forget, placement.name, entry)
        entry.written.add(placement.origin)
    t, r, c = placement.origin
    return array[t:t + 1, r:r + shape[0], c:c + shape[1]]


def _finalize_shared(results: Any, name: str) -> np.ndarray:
    """The band's buffer when every result is its chunk's view in it; else dask's finalize."""
    with _shared_lock:
        entry = _shared.get(name)
        array = entry.array() if entry is not None else None
        if array is not None and not entry.sealed and _all_in_place(results, array):
            entry.sealed = True  # later computations write into a new buffer
            del _shared[name]
            return array
    return finalize(results)


def _all_in_place(results: Any, array: np.ndarray) -> bool:
    """Whether the nested (time, row, column) chunk results are views of ``array`` lying
    where they belong in it."""
    start = array.__array_interface__["data"][0]
    step_t, step_r, step_c = array.strides
    if len(results) != array.shape[0]:
        return False
    for t, plane in enumerate(results):
        r = 0
        for row in plane:
            c = 0
            for chunk in row:
                if not isinstance(chunk, np.ndarray) or chunk.base is not array:
                    return False
                offset = t * step_t + r * step_r + c * step_c
                if chunk.__array_interface__["data"][0] - start != offset:
                    return False
                c += chunk.shape[2]
            if c != array.shape[2]:
                return False
            r += row[0].shape[1]
        if r != array.shape[1]:
            return False
    return True


class _SharedBandArray(da.Array):
    """A band's dask array whose compute returns the buffer its chunks were decoded into."""

    __slots__ = ()

    def __dask_postcompute__(self) -> tuple[Any, tuple[Any, ...]]:
        return _finalize_shared, (self.name,)


# --- decode -------------------------------------------------------------------------------------

_scratch = threading.local()


_SCRATCH_BYTES = 16 * 1024 * 1024


def _scratch_tile(spec: DecodeSpec) -> np.ndarray:
    """A buffer to decode a tile of ``spec`` into: this thread's reusable one (kept between
    tasks, so hot in cache and without page faults) unless the tile is very large."""
    native = np.dtype(spec.dtype).newbyteorder("=")
    buffer = getattr(_scratch, "tile", None)
    if buffer is None or buffer.shape != spec.shape or buffer.dtype != native:
        buffer = np.empty(spec.shape, native)
        if buffer.nbytes <= _SCRATCH_BYTES:
            _scratch.tile = buffer
    return buffer


def _decode(payloads: PendingPayloads, read: TileRead, work: ChunkWork,
            out: np.ndarray) -> np.ndarray:
    data = payloads.get(read.payload)
    try:
        return decode_tile(data, work.spec, out)
    except DecodeError as exc:
        raise RasterReadError(f"{work.label}: {exc}") from exc


def decode_chunk(payloads: PendingPayloads, work: ChunkWork,
                 placement: Placement | None = None) -> np.ndarray:
    """Decode the chunk's tiles (each as soon as it has arrived), crop them and place them into
    a (1, h, w) array: its region of the band's shared buffer, or a new array."""
    covered = sum((r.dst[1] - r.dst[0]) * (r.dst[3] - r.dst[2]) for r in work.tiles)
    full = covered == work.shape[0] * work.shape[1]  # the tiles tile the chunk exactly
    if placement is not None and not _on_distributed_worker():
        out = _claim(placement, work.shape)
        if not full:
            out.fill(work.fill)
    else:
        dtype = np.dtype(work.spec.dtype).newbyteorder("=")
        shape = (1, *work.shape)
        out = np.empty(shape, dtype) if full else np.full(shape, work.fill, dtype)
        whole = (0, work.shape[0], 0, work.shape[1])
        if (len(work.tiles) == 1 and work.spec.shape == (*work.shape, 1)
                and work.tiles[0].src == whole and work.tiles[0].dst == whole):
            # the chunk is one whole single-sample tile: decode straight into it
            _decode(payloads, work.tiles[0], work, out.reshape(work.spec.shape))
            return out
    scratch = _scratch_tile(work.spec)
    for read in work.tiles:
        tile = _decode(payloads, read, work, scratch)
        s0, s1, s2, s3 = read.src
        d0, d1, d2, d3 = read.dst
        out[0, d0:d1, d2:d3] = tile[s0:s1, s2:s3, work.sample]
    return out


def band_array(plan: ReadPlan, band: BandPlan, reader: RangeReader) -> da.Array:
    """A lazy (time, y, x) dask array for one band, chunked along the tile grid."""
    token = uuid.uuid4().hex[:12]
    fetch_name = f"fetch-{band.band}-{token}"
    name = f"read-{band.band}-{token}"
    shape = (len(plan.times), sum(band.row_chunks), sum(band.col_chunks))
    shared = int(np.prod(shape)) * band.dtype.itemsize <= SHARED_OUTPUT_BYTES
    rows = np.concatenate([[0], np.cumsum(band.row_chunks)]).tolist()
    cols = np.concatenate([[0], np.cumsum(band.col_chunks)]).tolist()
    fetch_layer = {(fetch_name, g): (fetch_group, reader, group)
                   for g, group in enumerate(band.groups)}
    read_layer: dict = {}
    for (t, i, j), (g, work) in band.chunks.items():
        task: tuple = (decode_chunk, (fetch_name, g), work)
        if shared:
            task += (Placement(name, shape, band.dtype.str, (t, rows[i], cols[j])),)
        read_layer[(name, t, i, j)] = task
    graph = HighLevelGraph(
        {fetch_name: fetch_layer, name: read_layer},
        {fetch_name: set(), name: {fetch_name}},
    )
    chunks = ((1,) * len(plan.times), band.row_chunks, band.col_chunks)
    cls = _SharedBandArray if shared else da.Array
    return cls(graph, name, chunks, dtype=band.dtype)
