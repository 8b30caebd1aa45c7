"""The one owner of the I/O layer's per-process state.

A process keeps:

- the event loop synchronous callers run their requests on (fsspec's IO loop, :func:`io_loop`);
- filesystem instances (and so their HTTP sessions and S3 clients), cached per options and,
  for asynchronous ones, per event loop (:func:`resolve`, :func:`clear_cache`,
  :func:`close_loop_filesystems`);
- the semaphores that bound requests in flight per event loop (:func:`semaphore`);
- the daemon threads that read synchronous filesystems (:func:`local_pool`).

Nothing of it crosses a fork: a child process finds every cache empty and builds its own
(sessions and threads belong to the parent). Objects that travel to Dask workers carry only
options, never anything kept here.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import fsspec
import fsspec.asyn
from fsspec.spec import AbstractFileSystem

from rasteret_dask.io.blocking import BlockingCalls
from rasteret_dask.io.options import href_protocol, storage_options_for

__all__ = [
    "clear_cache",
    "close_loop_filesystems",
    "io_loop",
    "local_pool",
    "resolve",
    "semaphore",
]

_LOCAL_IO_THREADS = 16
_MAX_STALLED_READS = 64

_lock = threading.RLock()
_pid = os.getpid()
_sync_cache: dict[tuple[Any, ...], AbstractFileSystem] = {}
_loop_cache: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], AbstractFileSystem]
] = weakref.WeakKeyDictionary()
_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)
_pool: list[BlockingCalls] = []


def _check_pid() -> None:
    """Forget everything a parent process made (under the lock): the fork reset."""
    global _pid
    if os.getpid() != _pid:
        _sync_cache.clear()
        _loop_cache.clear()
        _semaphores.clear()
        _pool.clear()
        _pid = os.getpid()


def io_loop() -> asyncio.AbstractEventLoop:
    """The event loop synchronous callers run requests on: fsspec's IO loop (a daemon thread
    that fsspec starts on first use and renews after a fork)."""
    return fsspec.asyn.get_loop()


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        items = [_freeze(v) for v in value]
        return (
            tuple(sorted(items, key=repr)) if isinstance(value, set | frozenset) else tuple(items)
        )
    try:
        hash(value)
    except TypeError:
        return ("<unhashable>", repr(value))
    return value


def resolve(
    href: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    asynchronous: bool = False,
    loop: asyncio.AbstractEventLoop | None = None,
) -> tuple[AbstractFileSystem, str]:
    """Return a cached ``(filesystem, path)`` able to read ``href``.

    Parameters
    ----------
    href
        The object to open.
    storage_options
        Explicit options, merged over the configured ones (:func:`.storage_options_for`).
    asynchronous
        Bind an async-capable filesystem to ``loop`` (default: the running loop) so its
        coroutines can be awaited there. On fsspec's own IO loop that is the ordinary
        (sync-flavoured) instance, whose session fsspec closes; sync-only filesystems are
        shared by every loop.
    loop
        The loop to bind to.

    Returns
    -------
    tuple
        The filesystem (one instance per options, and per loop when bound) and the path of
        ``href`` on it.
    """
    protocol = href_protocol(href)
    cls = fsspec.get_filesystem_class(protocol)
    options = storage_options_for(href, storage_options)
    path = cls._strip_protocol(href)
    is_async = bool(getattr(cls, "async_impl", False))
    key = (cls, _freeze(options))
    with _lock:
        _check_pid()
        bound = None
        if is_async and asynchronous:
            bound = loop if loop is not None else asyncio.get_running_loop()
            if bound is io_loop():
                bound = None
        if bound is not None:
            per_loop = _loop_cache.setdefault(bound, {})
            fs = per_loop.get(key)
            if fs is None:
                fs = cls(**options, asynchronous=True, loop=bound, skip_instance_cache=True)
                per_loop[key] = fs
        else:
            fs = _sync_cache.get(key)
            if fs is None:
                fs = cls(**options, skip_instance_cache=True)
                _sync_cache[key] = fs
    return fs, path


def clear_cache() -> None:
    """Forget every cached filesystem instance of this process (tests, credential rotation)."""
    with _lock:
        _sync_cache.clear()
        _loop_cache.clear()


async def close_loop_filesystems() -> None:
    """Close the sessions of the filesystems bound to the running loop and forget them.

    Call it before closing an event loop on which :func:`resolve` made asynchronous
    filesystems (those on fsspec's IO loop are closed by fsspec itself).
    """
    loop = asyncio.get_running_loop()
    with _lock:
        instances = list(_loop_cache.pop(loop, {}).values())
    for fs in instances:
        session = getattr(fs, "_session", None)
        if session is not None and hasattr(session, "close"):
            await session.close()
        creator = getattr(fs, "_s3creator", None)
        if creator is not None and hasattr(creator, "__aexit__"):
            await creator.__aexit__(None, None, None)
        elif getattr(fs, "_s3", None) is not None and hasattr(fs._s3, "close"):
            await fs._s3.close()


def semaphore(loop: asyncio.AbstractEventLoop, limit: int) -> asyncio.Semaphore:
    """The semaphore bounding requests in flight on ``loop`` to ``limit`` (one per loop and
    limit, shared by every reader with that limit)."""
    with _lock:
        _check_pid()
        per_loop = _semaphores.setdefault(loop, {})
        if limit not in per_loop:
            per_loop[limit] = asyncio.Semaphore(limit)
        return per_loop[limit]


def local_pool() -> BlockingCalls:
    """The daemon threads that read synchronous filesystems (local files) for every loop."""
    with _lock:
        _check_pid()
        if not _pool:
            _pool.append(BlockingCalls(_LOCAL_IO_THREADS, _MAX_STALLED_READS, "rd-io"))
        return _pool[0]
