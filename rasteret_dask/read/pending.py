"""A fetch group's tile bytes, arriving in the background, and the decoding of its chunks.

Requests of one group run concurrently and finish in any order, while a scheduler runs the
group's decode tasks in an order of its own. So a decode task whose tiles are still in flight
does not idle: it decodes another chunk of the same group whose tiles have all arrived and
leaves the result for that chunk's task, which then returns at once. Every chunk is decoded
once; a chunk's errors are raised by its own task.

A chunk is decoded tile by tile (:mod:`.scatter`): a tile that several chunks of the group crop
from (it straddles chunk edges) is decoded once in this process and its pieces copied into each
of them; chunks of later groups that borrow it read it from this group's
:class:`.shared_tiles.SharedTiles` (their tasks are handed the lending groups' payloads too).

Helping only happens while a task would otherwise wait, so it costs no wall time; when a
computation needs only some chunks of a group (a culled graph), the others may still be decoded
in that idle time and are dropped with the group once its last needed chunk is done.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from ..io import FetchError
from ..io.fetch import Payload
from .buffers import Placement
from .chunks import REFRESH_HINT, ObjectChangedReadError, RasterReadError, decode_chunk
from .failures import TileFailures
from .plan import ChunkWork
from .scatter import GroupTiles
from .shared_tiles import SharedTiles, TileMemo

__all__ = ["ChunkJob", "PendingPayloads"]

ChunkJob = tuple[ChunkWork, Placement | None]
"""One chunk of a group: its work and, for a shared band buffer, its placement."""

_IDLE, _BUSY, _DONE, _TAKEN = 0, 1, 2, 3


class PendingPayloads:
    """A fetch group's ranges (futures) and chunk jobs; :meth:`chunk` decodes one chunk.

    Pickling waits for every range, so the object can travel between processes; decoded chunks
    waiting for their tasks stay behind. With ``failures`` (``errors="nodata"``) a tile that
    fails is reported there and read as nodata.
    """

    __slots__ = ("_futures", "_labels", "_nbytes", "_jobs", "_failures", "_cond", "_state",
                 "_missing", "_users", "_ready", "_results", "_group", "_lent", "_lenders",
                 "__weakref__")

    def __init__(self, futures: list[Future], labels: tuple[str, ...], nbytes: int,
                 jobs: Sequence[ChunkJob] = (), failures: TileFailures | None = None,
                 lent: Sequence[int] = ()) -> None:
        self._futures = futures
        self._labels = labels
        self._nbytes = nbytes
        self._jobs = tuple(jobs)
        self._failures = failures
        self._cond = threading.Condition()
        self._state = [_IDLE] * len(self._jobs)
        self._results: dict[int, tuple[np.ndarray | None, BaseException | None]] = {}
        self._users: list[list[int]] = [[] for _ in futures]  # range -> chunks reading it
        self._missing = [0] * len(self._jobs)  # chunk -> ranges still in flight
        for k, (work, _) in enumerate(self._jobs):
            for index in work.payloads:
                self._users[index].append(k)
                self._missing[k] += 1
        self._ready = deque(k for k, n in enumerate(self._missing) if n == 0)
        self._lent = tuple(lent)  # range -> chunks of later groups borrowing it
        self._group = GroupTiles(self._jobs, len(futures), self._lent, failures)
        self._lenders: dict[int, tuple[PendingPayloads, ...]] = {}
        # the futures call back through a weak reference: no cycle, so the group's bytes are
        # freed as soon as the graph releases it, not at the next garbage collection
        ref = weakref.ref(self)
        for index, future in enumerate(futures):
            future.add_done_callback(functools.partial(_arrived, ref, index))

    def __len__(self) -> int:
        return len(self._futures)

    def get(self, index: int) -> Payload:
        """The bytes of range ``index``, once fetched; a failed fetch raises RasterReadError."""
        try:
            return self._futures[index].result()
        except FetchError as exc:
            if exc.object_changed:
                raise ObjectChangedReadError(
                    f"{self._labels[index]}: {exc.reason}; {REFRESH_HINT}") from exc
            raise RasterReadError(f"{self._labels[index]}: {exc}") from exc

    @property
    def shared_tiles(self) -> SharedTiles:
        """The group's decoded tiles that chunks of later groups borrow (and its mask tiles
        that several chunks read)."""
        return self._group.memo

    def chunk(self, k: int, lenders: Sequence[PendingPayloads] = ()) -> np.ndarray:
        """Chunk ``k``'s array; while its tiles are in flight, decode other arrived chunks.
        ``lenders`` are the payloads of the groups it borrows tiles from
        (``ChunkWork.lenders`` order)."""
        if lenders:
            with self._cond:  # until chunk k is decoded (by this task or a helper)
                if self._state[k] != _DONE:
                    self._lenders[k] = tuple(lenders)
        while True:
            with self._cond:
                while True:
                    if self._state[k] == _DONE:
                        return self._take(k)
                    pick = self._next(k)
                    if pick is not None:
                        again = self._state[pick] == _TAKEN
                        self._state[pick] = _BUSY
                        break
                    self._cond.wait()
            self._run(pick, own=pick == k, again=again)

    def _next(self, k: int) -> int | None:
        """The chunk to decode now (under the lock): ``k`` once its tiles are in, else the
        earliest other chunk whose tiles all arrived and that nobody decodes yet."""
        if self._state[k] in (_IDLE, _TAKEN) and self._missing[k] == 0:
            return k
        while self._ready:
            other = self._ready.popleft()
            # a chunk borrowing tiles is only decoded once its task has brought their groups
            if self._state[other] == _IDLE and (not self._jobs[other][0].borrowed
                                                or other in self._lenders):
                return other
        return None

    def _run(self, k: int, own: bool, again: bool = False) -> None:
        """Decode chunk ``k`` (tile by tile with the group; ``again``: a chunk computed a
        second time, decoded by itself) and leave its result for its task."""
        work, placement = self._jobs[k]
        value, error = None, None
        source: PendingPayloads | _Borrowing = self
        memo: TileMemo = self._group.memo
        if work.borrowed:
            with self._cond:  # the lenders are needed until this chunk is done
                lenders = self._lenders.pop(k)
            source = memo = _Borrowing(self, work.borrowed, work.lenders, lenders)
        try:
            if again:
                value = decode_chunk(source, work, placement, self._failures)
            else:
                value = self._group.decode(k, source, memo)
        except BaseException as exc:  # stored for chunk k's own task, which raises it
            error = exc
        with self._cond:
            self._results[k] = (value, error)
            self._state[k] = _DONE
            self._cond.notify_all()
        if error is not None and not own and not isinstance(error, Exception):
            raise error  # an interrupt is not a decode error: stop helping

    def _take(self, k: int) -> np.ndarray:
        value, error = self._results.pop(k)
        self._state[k] = _TAKEN  # computed again (a retried task): decoded again, by itself
        if error is not None:
            raise error
        assert value is not None
        return value

    def _arrived(self, index: int, future: Future) -> None:
        with self._cond:
            for k in self._users[index]:
                self._missing[k] -= 1
                if self._missing[k] == 0:
                    self._ready.append(k)
            self._cond.notify_all()

    def __sizeof__(self) -> int:
        return self._nbytes

    def __reduce__(self) -> tuple[Any, ...]:
        outcomes = []
        for future in self._futures:
            error = future.exception()
            outcomes.append(error if error is not None else bytes(future.result()))
        return (_completed, (outcomes, self._labels, self._nbytes, self._jobs, self._failures,
                             self._lent))


class _Borrowing:
    """A borrowing chunk's tiles and their memo: payload ``i >= 0`` is range ``i`` of its own
    group, ``-n`` the n-th borrowed (group, range), answered by that group's payloads."""

    __slots__ = ("_own", "_where")

    def __init__(self, own: PendingPayloads, borrowed: tuple[tuple[int, int], ...],
                 groups: tuple[int, ...], lenders: tuple[PendingPayloads, ...]) -> None:
        self._own = own
        by_group = dict(zip(groups, lenders, strict=True))
        self._where = [(by_group[group], index) for group, index in borrowed]

    def _at(self, index: int) -> tuple[PendingPayloads, int]:
        return (self._own, index) if index >= 0 else self._where[-index - 1]

    def get(self, index: int) -> Payload:
        payloads, i = self._at(index)
        return payloads.get(i)

    def shared(self, index: int) -> bool:
        payloads, i = self._at(index)
        return payloads.shared_tiles.shared(i)

    def tile(self, index: int, decode: Callable[[], np.ndarray]) -> np.ndarray:
        payloads, i = self._at(index)
        return payloads.shared_tiles.tile(i, decode)

    def release(self, index: int) -> None:
        payloads, i = self._at(index)
        payloads.shared_tiles.release(i)

    def first_report(self, index: int) -> bool:
        payloads, i = self._at(index)
        return payloads.shared_tiles.first_report(i)


def _arrived(ref: weakref.ref, index: int, future: Future) -> None:
    payloads = ref()
    if payloads is not None:
        payloads._arrived(index, future)


def _completed(outcomes: list[bytes | BaseException], labels: tuple[str, ...], nbytes: int,
               jobs: tuple[ChunkJob, ...] = (), failures: TileFailures | None = None,
               lent: tuple[int, ...] = ()) -> PendingPayloads:
    futures: list[Future] = []
    for outcome in outcomes:
        future: Future = Future()
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
        futures.append(future)
    return PendingPayloads(futures, labels, nbytes, jobs, failures, lent)
