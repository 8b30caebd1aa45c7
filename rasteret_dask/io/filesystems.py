"""fsspec filesystem resolution with per-process caching and configuration-held credentials.

Storage options are merged from ``dask.config`` key ``rasteret_dask.storage_options`` (a mapping
keyed by protocol, e.g. ``{"s3": {"anon": True}}``) under any explicit options, so credentials
live in configuration and never in an index. Filesystem instances are cached per process and per
event loop; objects that travel to Dask workers carry only options, never instances.
:func:`read_range` is the single-attempt, backend-aware read that the fetcher retries.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import dask.config
import fsspec
import fsspec.asyn
from fsspec.core import split_protocol
from fsspec.registry import known_implementations, registry
from fsspec.spec import AbstractFileSystem

__all__ = [
    "CONFIG_KEY",
    "HTTPStatusError",
    "Progress",
    "RangePayload",
    "ShortReadError",
    "clear_cache",
    "close_loop_filesystems",
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
_executor: list[ThreadPoolExecutor] = []
_LOCAL_IO_THREADS = 16
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


def _local_pool() -> ThreadPoolExecutor:
    with _lock:
        _check_pid()
        if not _executor:
            _executor.append(ThreadPoolExecutor(_LOCAL_IO_THREADS, thread_name_prefix="rd-io"))
        return _executor[0]


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``bytes a-b/N`` or ``bytes */N``; None where absent."""
    if not header or not header.startswith("bytes "):
        return None, None
    span, _, total_text = header[6:].partition("/")
    total = int(total_text) if total_text.strip().isdigit() else None
    first_text = span.split("-", 1)[0].strip()
    first = int(first_text) if first_text.isdigit() else None
    return first, total


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
            _, total = _content_range(response.headers.get("Content-Range"))
            return RangePayload(b"", total, True)
        if status >= 300:
            raise HTTPStatusError(status)
        content_range = response.headers.get("Content-Range")
        first, total = _content_range(content_range)
        if status == 206 and first is not None and first != start:
            raise ShortReadError(f"server answered Content-Range {content_range!r}")
        if status == 206 and progress is not None:
            body = await _stream_body(response, end - start, progress, buffer)
            return RangePayload(body, total, False)
        body = await response.read()
    if status == 206:
        return RangePayload(body, total, False)
    if status == 200:
        return RangePayload(body[start:end], len(body), False)
    raise HTTPStatusError(status)


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

    Async filesystems are awaited; sync-only ones (local files) run on a thread pool. Over
    HTTP the body is streamed through ``progress`` into ``buffer`` (``end - start`` bytes,
    optional); other backends return it whole.
    """
    if not is_async_filesystem(fs):
        loop = asyncio.get_running_loop()
        call = functools.partial(fs.cat_file, path, start=start, end=end)
        data = await loop.run_in_executor(_local_pool(), call)
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
