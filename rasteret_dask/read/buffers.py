"""Shared band buffers: a band's chunks decoded in place into one (time, y, x) array per process.

Each chunk's task claims its region of the buffer; when every chunk of a computed band lies in
one buffer, ``compute`` returns that buffer instead of concatenating copies of the chunks. Not
used on distributed workers, whose memory accounting sees chunks only.

Only a computation of the whole band array uses the buffer: ``compute``/``load``/``persist``
of the array or of a Dataset holding it (``SharedBandArray.__dask_postcompute__`` marks the
band for the length of that computation). Anything else that consumes the chunks one by one
(``to_zarr``, ``to_netcdf``, ``dask.array.store``, slices, reductions) gets an array per
chunk, so memory is released as chunks are written instead of a whole band staying resident.
The dask config key ``rasteret_dask.shared-band-buffers: false`` turns the buffers off
altogether (what the command line's streaming writes set).
"""

from __future__ import annotations

import sys
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.array.core import finalize

__all__ = ["Placement", "SharedBandArray", "claim", "on_distributed_worker", "SHARED_BUFFERS_KEY"]

SHARED_BUFFERS_KEY = "rasteret_dask.shared-band-buffers"
"""Dask config key: ``False`` decodes every chunk into its own array (streaming writes)."""


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
_whole: dict[str, int] = {}  # band arrays being computed whole: name -> computations


def _forget(name: str, entry: _Shared) -> None:
    with _shared_lock:
        if _shared.get(name) is entry:
            del _shared[name]


def on_distributed_worker() -> bool:
    """Whether this thread runs a task of a dask.distributed worker."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def claim(placement: Placement, shape: tuple[int, int]) -> np.ndarray | None:
    """The chunk's (1, h, w) region of this process's buffer for its band (a new buffer when
    there is none alive, or when this chunk was already written: a new computation); None
    when the band is not being computed whole, or buffers are off (:data:`SHARED_BUFFERS_KEY`): the
    caller decodes into an array of its own."""
    if placement.name not in _whole or not dask.config.get(SHARED_BUFFERS_KEY, True):
        return None
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
        _computed_whole(name)
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


def _computing_whole(name: str) -> None:
    with _shared_lock:
        _whole[name] = _whole.get(name, 0) + 1


def _computed_whole(name: str) -> None:
    with _shared_lock:
        count = _whole.pop(name, 0) - 1
        if count > 0:
            _whole[name] = count


class SharedBandArray(da.Array):
    """A band's dask array whose compute returns the buffer its chunks were decoded into.

    Dask asks a collection for its ``__dask_postcompute__`` when it computes or persists the
    collection itself (xarray's ``compute``/``load``/``values`` included), never when it only
    consumes its chunks (``store``, ``to_zarr``, derived arrays): that call marks the band so
    its chunks claim the shared buffer; the finalize (or, for ``persist``, the rebuild of the
    persisted array) unmarks it.
    """

    __slots__ = ()

    def __dask_postcompute__(self) -> tuple[Any, tuple[Any, ...]]:
        _computing_whole(self.name)
        return _finalize_shared, (self.name,)

    def __dask_postpersist__(self) -> tuple[Any, tuple[Any, ...]]:
        _computed_whole(self.name)  # asked once the persisted chunks are in
        return super().__dask_postpersist__()
