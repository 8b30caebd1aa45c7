"""One attempt at one byte range, per backend: HTTP, other async filesystems (S3), blocking ones.

:func:`read_range` is the single-attempt read that the fetcher retries (and times out); it
dispatches on the filesystem:

- HTTP (:func:`read_http`): a ``Range`` GET on the filesystem's own session, whose answer is
  checked (:func:`check_partial`) before its bytes are used and whose body is streamed;
- S3 (:func:`read_s3`): a ranged ``GetObject`` through s3fs, whose answer names the object's
  ETag, size and Last-Modified;
- other async filesystems (:func:`read_async`): fsspec's ``_cat_file``, with an object's end
  found by asking its size;
- synchronous filesystems, local files among them (:func:`read_blocking`): on the daemon
  threads of :func:`.state.local_pool` that a timeout abandons (:mod:`.blocking`).

Where the backend has conditional requests (HTTP ``If-Match``, S3 ``IfMatch``) a range read
with an expected ETag sends it; every payload carries the identity of the object version it
came from (:class:`~.identity.ObjectIdentity`, local files: size and modification time), for
the fetcher to compare with the expected one.

Every backend returns a :class:`RangePayload` and raises the errors of :mod:`.errors` (or
its library's own), never a :class:`~.errors.FetchError`: the fetcher judges each attempt.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
from collections.abc import Callable
from typing import Any, NamedTuple

from fsspec.implementations.http import HTTPFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from rasteret_dask.io.errors import (
    HTTPStatusError,
    NotRegularFileError,
    ObjectChangedError,
    RangeResponseError,
    ShortReadError,
    is_invalid_range,
)
from rasteret_dask.io.identity import (
    ObjectIdentity,
    from_http_headers,
    from_stat,
    mismatch,
    utc,
)
from rasteret_dask.io.state import local_pool

__all__ = [
    "Progress",
    "RangePayload",
    "check_partial",
    "content_range",
    "is_async_filesystem",
    "read_async",
    "read_blocking",
    "read_http",
    "read_range",
    "read_s3",
]

Progress = Callable[[memoryview, int], None]
"""Called as a streamed body arrives: (the body's buffer, bytes of it received so far)."""


class RangePayload(NamedTuple):
    """One range read: bytes from the range start and what is known of the object's end."""

    data: bytes | memoryview
    size: int | None  # the object's size, when the backend reported it
    past_end: bool  # the object is known to end at or before the range start
    identity: ObjectIdentity | None = None  # the object version answered, when reported


def is_async_filesystem(fs: AbstractFileSystem) -> bool:
    """Whether ``fs`` implements fsspec's coroutine API (``_cat_file`` and friends)."""
    return bool(getattr(fs, "async_impl", False))


async def read_range(
    fs: AbstractFileSystem,
    path: str,
    start: int,
    end: int,
    progress: Progress | None = None,
    buffer: memoryview | None = None,
    expect: ObjectIdentity | None = None,
) -> RangePayload:
    """Read ``[start, end)`` of ``path`` once (no retry), on the running loop.

    Parameters
    ----------
    fs, path
        The filesystem and path (:func:`.state.resolve`).
    start, end
        The half-open range.
    progress
        Told of a streamed body's arrivals (HTTP only; other backends return it whole).
    buffer
        Where an HTTP body of ``end - start`` bytes may land (optional).
    expect
        The version the object must still be: its strong ETag is sent as ``If-Match`` over
        HTTP and ``IfMatch`` on S3 (other backends report their identity only, for the
        fetcher to compare); an HTTP answer is also compared before its body is read.

    Returns
    -------
    RangePayload
        The bytes read and what is known of the object's end.
    """
    if not is_async_filesystem(fs):
        return await read_blocking(fs, path, start, end)
    if isinstance(fs, HTTPFileSystem):
        return await read_http(fs, path, start, end, progress, buffer, expect)
    if _is_s3(fs):
        return await read_s3(fs, path, start, end,
                             expect.strong_etag if expect is not None else None)
    return await read_async(fs, path, start, end)


def _is_s3(fs: AbstractFileSystem) -> bool:
    return type(fs).__module__.split(".", 1)[0] == "s3fs" and hasattr(fs, "_call_s3")


# --- synchronous filesystems ----------------------------------------------------------------


def _cat_regular(fs: AbstractFileSystem, path: str, start: int, end: int
                 ) -> tuple[bytes, ObjectIdentity | None]:
    """``fs.cat_file`` of a synchronous filesystem and, for a local file, its size and
    modification time (to the microsecond); a local path must be a regular file (a FIFO would
    block in ``open`` until a writer comes)."""
    identity = None
    if isinstance(fs, LocalFileSystem):
        info = os.stat(path)
        mode = info.st_mode
        if not stat.S_ISREG(mode):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device")
            raise NotRegularFileError(f"{path} is {kind}, not a regular file")
        identity = from_stat(info)
    return fs.cat_file(path, start=start, end=end), identity


async def read_blocking(fs: AbstractFileSystem, path: str, start: int, end: int
                        ) -> RangePayload:
    """Read a range of a synchronous filesystem on a daemon thread; a cancelled (timed-out)
    read abandons its thread, which may stay blocked, and frees its slot.

    Raises
    ------
    NotRegularFileError
        A local path that is not a regular file.
    BlockedCallsError
        Too many abandoned reads are still blocked (a stalled mount).
    """
    pool = local_pool()
    future = pool.submit(functools.partial(_cat_regular, fs, path, start, end))
    try:
        data, identity = await asyncio.wrap_future(future)
    except asyncio.CancelledError:  # timed out: the thread may stay blocked, not the read
        pool.abandon(future)
        raise
    # A synchronous filesystem returns fewer bytes only at the end of the object.
    short = len(data) < end - start
    return RangePayload(data, start + len(data) if short else None, False, identity)


# --- S3 -------------------------------------------------------------------------------------


async def read_s3(fs: Any, path: str, start: int, end: int, etag: str | None = None
                  ) -> RangePayload:
    """A ranged ``GetObject`` through s3fs (its retries and error translation), with
    ``IfMatch`` when ``etag`` is given; a range starting past the end is an empty payload.

    The answer's ``ContentRange`` gives the object's size, ``ETag`` and ``LastModified`` its
    version; a 412 (``PreconditionFailed``) is raised as the library raises it, for
    :func:`~.errors.classify` to judge final.
    """
    bucket, key, version = fs.split_path(path)
    extra: dict[str, str] = {"VersionId": version} if version else {}
    if etag is not None:
        extra["IfMatch"] = etag
    try:
        response = await fs._call_s3("get_object", Bucket=bucket, Key=key,
                                     Range=f"bytes={start}-{end - 1}", **extra)
    except Exception as exc:
        if is_invalid_range(exc):
            return RangePayload(b"", None, True)
        raise
    body = response["Body"]
    try:
        data = await body.read()
    finally:
        body.close()
    _, _, total = content_range(response.get("ContentRange"))
    identity = ObjectIdentity(response.get("ETag") or None, total,
                              utc(response.get("LastModified")))
    return RangePayload(data, total, False, identity)


# --- other async filesystems (S3, ...) ------------------------------------------------------


async def read_async(fs: AbstractFileSystem, path: str, start: int, end: int) -> RangePayload:
    """Read a range with an async filesystem's ``_cat_file``; a range starting past the end is
    an empty payload, and a short one asks the object's size to tell its end from a short
    read."""
    try:
        data = await fs._cat_file(path, start=start, end=end)
    except Exception as exc:
        if is_invalid_range(exc):
            return RangePayload(b"", None, True)
        raise
    if len(data) >= end - start:
        return RangePayload(data, None, False)
    try:
        size = int((await fs._info(path))["size"])
    except Exception:
        size = None
    return RangePayload(data, size, False)


# --- HTTP -----------------------------------------------------------------------------------


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


async def read_http(
    fs: Any,
    url: str,
    start: int,
    end: int,
    progress: Progress | None = None,
    buffer: memoryview | None = None,
    expect: ObjectIdentity | None = None,
) -> RangePayload:
    """GET one range on the HTTPFileSystem's own session, seeing the status it answers.

    fsspec's ``_cat_file`` returns any body, so a server that ignores Range (200 and the
    whole object) would go unnoticed; here 200 is sliced and 206 is checked. A 206 body is
    streamed through ``progress`` when one is given, into ``buffer`` when that fits. With
    ``expect`` the request carries ``If-Match`` (a strong ETag) and the answer's identity is
    compared before any of its body is used; the payload carries the answer's ``ETag``,
    ``Last-Modified`` and the object's size.

    Raises
    ------
    HTTPStatusError
        Any status but 200, 206 and 416 (a range past the end: an empty payload); 412 when
        ``If-Match`` failed.
    ObjectChangedError
        The answer names another ETag or size than ``expect``.
    RangeResponseError, ShortReadError
        A 206 answer that is not the range asked for (:func:`check_partial`).
    """
    session = await fs.set_session()
    kwargs = dict(fs.kwargs)
    headers = dict(kwargs.pop("headers", None) or {})
    headers["Range"] = f"bytes={start}-{end - 1}"
    etag = expect.strong_etag if expect is not None else None
    if etag is not None:
        headers["If-Match"] = etag
    async with session.get(fs.encode_url(url), headers=headers, **kwargs) as response:
        status = response.status
        if status == 416:
            _, _, total = content_range(response.headers.get("Content-Range"))
            return RangePayload(b"", total, True)
        if status not in (200, 206):
            raise HTTPStatusError(status)
        if status == 200:  # Range ignored: the whole object, sliced here
            body = await response.read()
            return RangePayload(body[start:end], len(body), False,
                                from_http_headers(response.headers, len(body)))
        span, total = check_partial(response.headers.get("Content-Range"),
                                    response.content_length, start, end)
        identity = from_http_headers(response.headers, total)
        changed = mismatch(expect, identity)
        if changed is not None:  # judged on the headers: no byte of the body is handed over
            raise ObjectChangedError(changed)
        if progress is not None and response.content_length == span:
            # the length is announced, so the body can be handed over as it streams
            target = buffer[:span] if buffer is not None and buffer.nbytes >= span else None
            body = await _stream_body(response, span, progress, target)
            return RangePayload(body, total, False, identity)
        body = await response.read()
    if len(body) > span:
        raise RangeResponseError(f"206 answer to bytes {start}-{end - 1} of {len(body)} bytes "
                                 f"for a {span}-byte Content-Range")
    return RangePayload(body, total, False, identity)
