"""fsspec filesystem resolution with per-process caching and configuration-held credentials.

Storage options are merged from ``dask.config`` key ``rasteret_dask.storage_options`` (a mapping
keyed by protocol, e.g. ``{"s3": {"anon": True}}``) under any explicit options, so credentials
live in configuration and never in an index. Filesystem instances are cached per process and per
event loop; objects that travel to Dask workers carry only options, never instances.
:func:`read_range` is the single-attempt, backend-aware read that the fetcher retries (and
times out): synchronous filesystems (local files) are read on daemon threads that a timeout
abandons (:mod:`.blocking`), and a ``206`` answer is checked against the range asked before its
bytes are used.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import dask.config
import fsspec
import fsspec.asyn
from fsspec.core import split_protocol
from fsspec.implementations.local import LocalFileSystem
from fsspec.registry import known_implementations, registry
from fsspec.spec import AbstractFileSystem

from rasteret_dask.io.blocking import BlockingCalls

__all__ = [
    "CONFIG_KEY",
    "HTTPStatusError",
    "NotRegularFileError",
    "Progress",
    "RangeResponseError",
    "RangePayload",
    "ShortReadError",
    "check_partial",
    "clear_cache",
    "close_loop_filesystems",
    "content_range",
    "href_protocol",
    "is_async_filesystem",
    "read_range",
    "resolve",
    "storage_options_for",
]

CONFIG_KEY = "rasteret_dask.storage_options"

_lock = threading.RLock()
_pid = os.getpid()
_sync_cache: dict[tuple[Any, ...], AbstractFileSystem] = {}
_executor: list[BlockingCalls] = []
_LOCAL_IO_THREADS = 16
_MAX_STALLED_READS = 64
_loop_cache: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], AbstractFileSystem]
] = weakref.WeakKeyDictionary()


def href_protocol(href: str) -> str:
    """The fsspec protocol of ``href``; plain paths are ``"file"``."""
    protocol, _ = split_protocol(href)
    return protocol or "file"


def _protocol_names(cls: type[AbstractFileSystem], protocol: str) -> list[str]:
    names = cls.protocol if isinstance(cls.protocol, tuple | list) else (cls.protocol,)
    ordered = [name for name in names if name != protocol]
    ordered.append(protocol)
    return ordered


def _is_protocol_keyed(options: Mapping[str, Any]) -> bool:
    known = set(known_implementations) | set(registry)
    return bool(options) and all(
        key in known and isinstance(value, Mapping) for key, value in options.items()
    )


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        elif isinstance(value, Mapping):
            out[key] = _merge({}, value)
        else:
            out[key] = value
    return out


def storage_options_for(
    href: str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Options for the filesystem of ``href``: explicit options merged over dask.config ones.

    ``storage_options`` is either flat (fsspec style, used for this href as given) or keyed
    by protocol like the configuration. Nested dicts (``client_kwargs``, ``headers``) merge.
    """
    protocol = href_protocol(href)
    cls = fsspec.get_filesystem_class(protocol)
    names = _protocol_names(cls, protocol)
    merged: dict[str, Any] = {}
    configured = dask.config.get(CONFIG_KEY, default=None) or {}
    for name in names:
        merged = _merge(merged, configured.get(name) or {})
    explicit = storage_options or {}
    if _is_protocol_keyed(explicit):
        for name in names:
            merged = _merge(merged, explicit.get(name) or {})
    else:
        merged = _merge(merged, explicit)
    return merged


def is_async_filesystem(fs: AbstractFileSystem) -> bool:
    """Whether ``fs`` implements fsspec's coroutine API (``_cat_file`` and friends)."""
    return bool(getattr(fs, "async_impl", False))


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


def _check_pid() -> None:
    global _pid
    if os.getpid() != _pid:
        _sync_cache.clear()
        _loop_cache.clear()
        _executor.clear()
        _pid = os.getpid()


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


Progress = Callable[[memoryview, int], None]
"""Called as a streamed body arrives: (the body's buffer, bytes of it received so far)."""


class RangePayload(NamedTuple):
    """One range read: bytes from the range start and what is known of the object's end."""

    data: bytes | memoryview
    size: int | None  # the object's size, when the backend reported it
    past_end: bool  # the object is known to end at or before the range start


class HTTPStatusError(OSError):
    """An HTTP error status answered to a range request."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class ShortReadError(OSError):
    """Fewer bytes arrived than the object holds for the range (transient)."""


class RangeResponseError(OSError):
    """A ``206`` answer that is not the range asked for (transient: a CDN may err once)."""


class NotRegularFileError(OSError):
    """A local path that is not a regular file (a FIFO, a device, a directory)."""


def _local_pool() -> BlockingCalls:
    with _lock:
        _check_pid()
        if not _executor:
            _executor.append(BlockingCalls(_LOCAL_IO_THREADS, _MAX_STALLED_READS, "rd-io"))
        return _executor[0]


def content_range(header: str | None) -> tuple[int | None, int | None, int | None]:
    """(first byte, last byte, total size) of a ``Content-Range`` header (``bytes a-b/N``,
    ``bytes a-b/*`` or ``bytes */N``); None for each part that is absent or unreadable."""
    if not header or not header.startswith("bytes "):
        return None, None, None
    span, _, total_text = header[6:].partition("/")
    total = int(total_text) if total_text.strip().isdigit() else None
    first_text, _, last_text = span.partition("-")
    first = int(first_text) if first_text.strip().isdigit() else None
    last = int(last_text) if last_text.strip().isdigit() else None
    return first, last, total


def check_partial(header: str | None, length: int | None, start: int, end: int
                  ) -> tuple[int, int | None]:
    """Validate a ``206`` answer to ``Range: bytes=start-(end-1)`` before its body is used.

    Parameters
    ----------
    header
        The answer's ``Content-Range``.
    length
        Its ``Content-Length``, when given.
    start, end
        The half-open range asked for.

    Returns
    -------
    tuple
        (body bytes to expect, the object's size when the header gives it). The body may end
        before ``end`` only where the object ends.

    Raises
    ------
    RangeResponseError
        No ``Content-Range``, one naming other bytes, or a longer ``Content-Length``.
    ShortReadError
        A shorter ``Content-Length`` (transient, as any short read).
    """
    asked = f"bytes {start}-{end - 1}"
    if header is None:
        raise RangeResponseError(f"206 answer to {asked} without Content-Range")
    first, last, total = content_range(header)
    if first is None or last is None or last < first:
        raise RangeResponseError(f"206 answer to {asked} with Content-Range {header!r}")
    clamped = total is not None and last == total - 1 and total < end  # the object ends first
    if first != start or (last != end - 1 and not clamped):
        raise RangeResponseError(f"206 answer to {asked} with Content-Range {header!r}")
    span = last - first + 1
    if length is not None and length < span:
        raise ShortReadError(f"short read: {length} of {span} bytes announced (Content-Length) "
                             f"for Content-Range {header!r}")
    if length is not None and length > span:
        raise RangeResponseError(f"206 answer to {asked} of {length} bytes (Content-Length) "
                                 f"for Content-Range {header!r}")
    return span, total


async def _stream_body(
    response: Any, want: int, progress: Progress, buffer: memoryview | None = None
) -> memoryview:
    """Receive a body of (at most) ``want`` bytes into ``buffer`` (or a new one), reporting
    each arrival.

    One copy, as ``response.read()`` makes, but callers can use the first bytes (tiles) while
    the rest is still on the wire.
    """
    view = buffer if buffer is not None and buffer.nbytes == want else memoryview(bytearray(want))
    received = 0
    async for piece in response.content.iter_any():
        take = min(len(piece), want - received)
        view[received:received + take] = piece[:take] if take < len(piece) else piece
        received += take
        progress(view, received)
        if received >= want:
            break
    return view if received == want else view[:received]


async def _http_read(
    fs: Any,
    url: str,
    start: int,
    end: int,
    progress: Progress | None = None,
    buffer: memoryview | None = None,
) -> RangePayload:
    """GET one range on the HTTPFileSystem's own session, seeing the status it answers.

    fsspec's ``_cat_file`` returns any body, so a server that ignores Range (200 and the
    whole object) would go unnoticed; here 200 is sliced and 206 is checked. A 206 body is
    streamed through ``progress`` when one is given, into ``buffer`` when that fits.
    """
    session = await fs.set_session()
    kwargs = dict(fs.kwargs)
    headers = dict(kwargs.pop("headers", None) or {})
    headers["Range"] = f"bytes={start}-{end - 1}"
    async with session.get(fs.encode_url(url), headers=headers, **kwargs) as response:
        status = response.status
        if status == 416:
            _, _, total = content_range(response.headers.get("Content-Range"))
            return RangePayload(b"", total, True)
        if status not in (200, 206):
            raise HTTPStatusError(status)
        if status == 200:  # Range ignored: the whole object, sliced here
            body = await response.read()
            return RangePayload(body[start:end], len(body), False)
        span, total = check_partial(response.headers.get("Content-Range"),
                                    response.content_length, start, end)
        if progress is not None and response.content_length == span:
            # the length is announced, so the body can be handed over as it streams
            target = buffer[:span] if buffer is not None and buffer.nbytes >= span else None
            body = await _stream_body(response, span, progress, target)
            return RangePayload(body, total, False)
        body = await response.read()
    if len(body) > span:
        raise RangeResponseError(f"206 answer to bytes {start}-{end - 1} of {len(body)} bytes "
                                 f"for a {span}-byte Content-Range")
    return RangePayload(body, total, False)


def _read_blocking(fs: AbstractFileSystem, path: str, start: int, end: int) -> bytes:
    """``fs.cat_file`` of a synchronous filesystem; a local path must be a regular file (a
    FIFO would block in ``open`` until a writer comes)."""
    if isinstance(fs, LocalFileSystem):
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device")
            raise NotRegularFileError(f"{path} is {kind}, not a regular file")
    return fs.cat_file(path, start=start, end=end)


def _is_invalid_range(exc: BaseException) -> bool:
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            break
        response = getattr(current, "response", None)
        if isinstance(response, Mapping):
            code = (response.get("Error") or {}).get("Code")
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if code == "InvalidRange" or status == 416:
                return True
        current = current.__cause__ or current.__context__
    return False


async def read_range(
    fs: AbstractFileSystem,
    path: str,
    start: int,
    end: int,
    progress: Progress | None = None,
    buffer: memoryview | None = None,
) -> RangePayload:
    """Read ``[start, end)`` of ``path`` once (no retry), on the running loop.

    Async filesystems are awaited; sync-only ones (local files) run on daemon threads that a
    cancelled (timed-out) read abandons, and a local path must be a regular file. Over
    HTTP the body is streamed through ``progress`` into ``buffer`` (``end - start`` bytes,
    optional); other backends return it whole.
    """
    if not is_async_filesystem(fs):
        pool = _local_pool()
        future = pool.submit(functools.partial(_read_blocking, fs, path, start, end))
        try:
            data = await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # timed out: the thread may stay blocked, not the read
            pool.abandon(future)
            raise
        # A synchronous filesystem returns fewer bytes only at the end of the object.
        short = len(data) < end - start
        return RangePayload(data, start + len(data) if short else None, False)
    from fsspec.implementations.http import HTTPFileSystem

    if isinstance(fs, HTTPFileSystem):
        return await _http_read(fs, path, start, end, progress, buffer)
    try:
        data = await fs._cat_file(path, start=start, end=end)
    except Exception as exc:
        if _is_invalid_range(exc):
            return RangePayload(b"", None, True)
        raise
    if len(data) >= end - start:
        return RangePayload(data, None, False)
    try:
        size = int((await fs._info(path))["size"])
    except Exception:
        size = None
    return RangePayload(data, size, False)


def resolve(
    href: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    asynchronous: bool = False,
    loop: asyncio.AbstractEventLoop | None = None,
) -> tuple[AbstractFileSystem, str]:
    """Return a cached ``(filesystem, path)`` able to read ``href``.

    With ``asynchronous=True`` an async-capable filesystem is bound to ``loop`` (default: the
    running loop) so its coroutines can be awaited there. On fsspec's own IO loop that is the
    ordinary (sync-flavoured) instance, whose session fsspec closes; sync-only filesystems
    are shared by every loop.
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
            if bound is fsspec.asyn.get_loop():
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
