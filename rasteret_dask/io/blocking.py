"""Blocking calls (local and other synchronous filesystem reads) on daemon threads that a
timeout can give up on.

A read of a stalled mount or of a FIFO blocks in the kernel and cannot be interrupted. The
event loop awaiting it stops waiting when its timeout expires; :meth:`BlockingCalls.abandon`
then frees the call's slot, so the next calls get a fresh thread instead of queueing behind the
stuck one. The threads are daemon threads, so a stuck one never blocks interpreter exit (a
``concurrent.futures.ThreadPoolExecutor`` joins its threads at exit). A stuck thread that
finally returns goes back to work, or ends when the pool is full again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from rasteret_dask.io.errors import BlockedCallsError

__all__ = ["BlockingCalls"]


class BlockingCalls:
    """Run blocking callables on up to ``threads`` daemon threads, plus those abandoned.

    Parameters
    ----------
    threads
        Threads working at once (abandoned threads do not count).
    max_stalled
        Abandoned calls still blocked beyond which :meth:`submit` refuses new calls.
    name
        Prefix of the thread names.
    """

    def __init__(self, threads: int, max_stalled: int, name: str) -> None:
        if threads < 1 or max_stalled < 1:
            raise ValueError("threads and max_stalled must be >= 1")
        self._threads = threads
        self._max_stalled = max_stalled
        self._name = name
        self._cond = threading.Condition()
        self._queue: deque[tuple[Future, Callable[..., Any], tuple[Any, ...]]] = deque()
        self._running: dict[Future, bool] = {}  # running call -> abandoned
        self._workers = 0  # threads counted against ``threads`` (idle or on a live call)
        self._idle = 0
        self._stalled = 0
        self._serial = 0

    @property
    def stalled(self) -> int:
        """Abandoned calls whose threads are still blocked."""
        with self._cond:
            return self._stalled

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Queue ``fn(*args)``; its future resolves on one of the pool's daemon threads.

        Raises
        ------
        BlockedCallsError
            When ``max_stalled`` abandoned calls are still blocked.
        """
        future: Future = Future()
        with self._cond:
            if self._stalled >= self._max_stalled:
                raise BlockedCallsError(
                    f"{self._stalled} blocking reads are still stuck after their timeout "
                    "(a stalled mount or a FIFO?); not starting another"
                )
            self._queue.append((future, fn, args))
            if len(self._queue) > self._idle and self._workers < self._threads:
                self._spawn()
            else:
                self._cond.notify()
        return future

    def abandon(self, future: Future) -> None:
        """The caller stopped waiting for ``future``: drop it if queued, else free its slot."""
        if future.cancel():
            return
        with self._cond:
            if self._running.get(future) is False:
                self._running[future] = True
                self._workers -= 1
                self._stalled += 1
                if len(self._queue) > self._idle and self._workers < self._threads:
                    self._spawn()

    def _spawn(self) -> None:
        """Start a worker thread (under the lock)."""
        self._workers += 1
        self._serial += 1
        thread = threading.Thread(target=self._work, name=f"{self._name}-{self._serial}",
                                  daemon=True)
        try:
            thread.start()
        except BaseException:
            self._workers -= 1
            raise

    def _work(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._queue:
                    self._cond.wait()
                self._idle -= 1
                future, fn, args = self._queue.popleft()
                if not future.set_running_or_notify_cancel():
                    continue
                self._running[future] = False
            _call(future, fn, args)
            with self._cond:
                abandoned = self._running.pop(future)
                del future, fn, args  # an idle thread holds nothing of its last call
                if abandoned:  # it no longer held a slot
                    self._stalled -= 1
                    if self._workers >= self._threads:
                        return
                    self._workers += 1


def _call(future: Future, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result = fn(*args)
    except BaseException as exc:  # handed to the waiter, as an executor does
        future.set_exception(exc)
    else:
        future.set_result(result)
