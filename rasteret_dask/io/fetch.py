"""Concurrent byte-range fetching over fsspec with coalescing, retries and backoff.

All requests of one call run as coroutines on one event loop (fsspec's IO loop for the
synchronous :meth:`RangeReader.fetch`), bounded per loop by a semaphore; each attempt is one
:func:`~rasteret_dask.io.filesystems.read_range` under the reader's timeout, local files
included. The default timeout and attempts come from Dask config
(``rasteret_dask.fetch.timeout``, ``rasteret_dask.fetch.retries``) when set there.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import dask.config
import fsspec.asyn
import numpy as np
from fsspec.exceptions import FSTimeoutError
from fsspec.spec import AbstractFileSystem

from rasteret_dask.io.filesystems import (
    HTTPStatusError,
    Progress,
    RangePayload,
    RangeResponseError,
    ShortReadError,
    read_range,
    resolve,
)
from rasteret_dask.io.ranges import ByteRange, MergedRange, coalesce
from rasteret_dask.redact import describe_callable, redact_mapping, redact_text, redact_url

__all__ = ["CONFIG_PREFIX", "RETRY_STATUSES", "FetchError", "Payload", "RangeReader"]

CONFIG_PREFIX = "rasteret_dask.fetch"
"""Dask config holding the default ``timeout`` (seconds per attempt) and ``retries``
(attempts) of readers built without them."""

Payload = bytes | memoryview
"""A fetched range: bytes, or a zero-copy view of the merged request that covered it."""

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_RETRY_S3_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}
)


class FetchError(OSError):
    """A byte range that could not be fetched; names the href, the range and the attempts.

    The message and ``reason`` are redacted (``rasteret_dask.redact``: no URL query,
    userinfo or secret values); ``href`` keeps the href as given, for callers to match on.
    """

    def __init__(
        self,
        href: str,
        start: int,
        end: int,
        attempts: int,
        reason: str,
        status: int | None = None,
    ) -> None:
        self.href = href
        self.start = start
        self.end = end
        self.attempts = attempts
        self.reason = reason = redact_text(reason)
        self.status = status
        where = f"bytes {start}-{end - 1} of {redact_url(href)}: {reason}"
        if attempts > 0:
            where += f" after {attempts} attempt{'s' if attempts != 1 else ''}"
        super().__init__(where)

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.href, self.start, self.end, self.attempts, self.reason, self.status)
        return (FetchError, args)


def _botocore_retryable() -> tuple[type[BaseException], ...]:
    try:
        from botocore.exceptions import HTTPClientError, ResponseStreamingError
        from urllib3.exceptions import ProtocolError
    except ImportError:  # pragma: no cover - botocore is a dependency of s3fs
        return ()
    return (HTTPClientError, ResponseStreamingError, ProtocolError)


_TRANSIENT: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    FSTimeoutError,
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    ShortReadError,
    RangeResponseError,
    *_botocore_retryable(),
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _s3_status(exc: BaseException) -> tuple[int | None, str | None]:
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None, None
    meta = response.get("ResponseMetadata") or {}
    error = response.get("Error") or {}
    return meta.get("HTTPStatusCode"), error.get("Code")


def _classify(exc: BaseException) -> tuple[bool, str, int | None]:
    """(retryable, reason, HTTP status if known) for one failed attempt."""
    if isinstance(exc, HTTPStatusError):
        return exc.status in RETRY_STATUSES, str(exc), exc.status
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status in RETRY_STATUSES, f"HTTP {exc.status}", exc.status
    for link in _chain(exc):
        status, code = _s3_status(link)
        if status is not None or code is not None:
            retry = (status in RETRY_STATUSES) or (code in _RETRY_S3_CODES)
            if isinstance(exc, FileNotFoundError | PermissionError):
                retry = False
            label = f"HTTP {status}" if status is not None else "error"
            return retry, f"{label} ({code}: {exc})" if code else label, status
    if isinstance(exc, FileNotFoundError):
        return False, f"not found ({exc})", None
    if isinstance(exc, PermissionError):
        return False, f"permission denied ({exc})", None
    if isinstance(exc, _TRANSIENT):
        text = str(exc) or "no detail"
        return True, f"{type(exc).__name__}: {text}", None
    return False, f"{type(exc).__name__}: {exc}", None


_state_lock = threading.Lock()
_state_pid = os.getpid()
_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def _check_pid() -> None:
    global _state_pid
    if os.getpid() != _state_pid:
        _semaphores.clear()
        _state_pid = os.getpid()


def _semaphore(loop: asyncio.AbstractEventLoop, limit: int) -> asyncio.Semaphore:
    with _state_lock:
        _check_pid()
        per_loop = _semaphores.setdefault(loop, {})
        if limit not in per_loop:
            per_loop[limit] = asyncio.Semaphore(limit)
        return per_loop[limit]


def _configured(name: str, default: Any) -> Any:
    return dask.config.get(f"{CONFIG_PREFIX}.{name}", default=default)


@dataclass(frozen=True)
class RangeReader:
    """Picklable fetch configuration; filesystems are resolved (and cached) where it runs.

    ``retries`` is the total number of attempts per request and ``timeout`` the seconds each
    attempt may take, over any backend (a local read that never returns is abandoned, see
    :mod:`.blocking`); both default to Dask config under :data:`CONFIG_PREFIX`, else 5 and
    120 s. ``max_concurrent`` bounds the requests in flight per event loop (per process for
    :meth:`fetch`).
    """

    storage_options: dict[str, Any] | None = field(default=None, hash=False)
    max_concurrent: int = 64
    merge_gap: int = 32 * 1024
    max_merged_size: int = 16 * 1024 * 1024
    retries: int = field(default_factory=lambda: int(_configured("retries", 5)))
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    timeout: float | None = field(default_factory=lambda: _configured("timeout", 120.0))
    signer: Callable[[str], str] | None = field(default=None, hash=False, compare=False)
    """Applied to every href right before it is opened (URL signing); never stored."""

    def __repr__(self) -> str:
        # storage options carry credentials and a signer may hold a token: show neither
        options = None if self.storage_options is None else redact_mapping(self.storage_options)
        return (f"RangeReader(storage_options={options!r}, max_concurrent={self.max_concurrent}, "
                f"merge_gap={self.merge_gap}, max_merged_size={self.max_merged_size}, "
                f"retries={self.retries}, backoff_base={self.backoff_base}, "
                f"backoff_max={self.backoff_max}, timeout={self.timeout}, "
                f"signer={describe_callable(self.signer)})")

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        if self.retries < 1:
            raise ValueError("retries counts attempts and must be >= 1")
        if self.merge_gap < 0 or self.max_merged_size < 0:
            raise ValueError("merge_gap and max_merged_size must be >= 0")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (exponential, jittered)."""
        cap = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return cap / 2 + random.uniform(0.0, cap / 2)

    def fetch(
        self,
        ranges: Sequence[ByteRange],
        *,
        return_exceptions: bool = False,
        allow_short: bool = False,
    ) -> list[Payload | FetchError]:
        """Fetch ``ranges`` concurrently from any thread; results are in input order.

        Runs on fsspec's IO loop, so it also works from a thread whose own loop is running.
        Results are ``bytes`` or zero-copy memoryviews of a merged request's payload.
        """
        items = list(ranges)
        if not items:
            return []
        loop = fsspec.asyn.get_loop()
        try:
            return fsspec.asyn.sync(
                loop,
                self.fetch_async,
                items,
                return_exceptions=return_exceptions,
                allow_short=allow_short,
            )
        except NotImplementedError as exc:
            raise RuntimeError(
                "RangeReader.fetch was called on fsspec's IO loop; await fetch_async instead"
            ) from exc

    def submit(self, ranges: Sequence[ByteRange], *, allow_short: bool = False) -> list[Future]:
        """Start fetching ``ranges`` on fsspec's IO loop and return at once, one future per range.

        Each future resolves (to the bytes, or a :class:`FetchError`) as soon as its own request
        completes, so callers can work on early ranges while later ones are still in flight.
        """
        items = list(ranges)
        futures: list[Future] = [Future() for _ in items]
        if not items:
            return futures

        def deliver(index: int, value: Payload | FetchError) -> None:
            if isinstance(value, FetchError):
                futures[index].set_exception(value)
            else:
                futures[index].set_result(value)

        def finished(task: Future) -> None:
            error = task.exception() if not task.cancelled() else CancelledError()
            if error is not None:
                for future in futures:
                    if not future.done():
                        future.set_exception(error)

        coroutine = self._run(items, deliver, allow_short, arena=True)
        asyncio.run_coroutine_threadsafe(coroutine, fsspec.asyn.get_loop()).add_done_callback(
            finished
        )
        return futures

    async def fetch_async(
        self,
        ranges: Sequence[ByteRange],
        *,
        return_exceptions: bool = False,
        allow_short: bool = False,
    ) -> list[Payload | FetchError]:
        """Coroutine form of :meth:`fetch`, running on the caller's event loop."""
        items = list(ranges)
        results: list[Payload | FetchError | None] = [None] * len(items)

        def deliver(index: int, value: Payload | FetchError) -> None:
            results[index] = value

        await self._run(items, deliver, allow_short)
        final: list[Payload | FetchError] = [r for r in results if r is not None]
        if not return_exceptions:
            for value in final:
                if isinstance(value, FetchError):
                    raise value
        return final

    async def _run(
        self,
        ranges: Sequence[ByteRange],
        deliver: Callable[[int, Payload | FetchError], None],
        allow_short: bool,
        arena: bool = False,
    ) -> None:
        """Fetch every range, calling ``deliver(input index, bytes or FetchError)`` for each
        as soon as its bytes are in.

        With ``arena`` the streamed bodies land in one uninitialised buffer (large pages, no
        zero fill, no page fault per request): receiving costs about a quarter as much CPU.
        """
        items = [r if isinstance(r, ByteRange) else ByteRange(*r) for r in ranges]
        wanted: list[ByteRange] = []
        positions: list[int] = []
        for index, rng in enumerate(items):
            if rng.size == 0:
                deliver(index, b"")
            else:
                wanted.append(rng)
                positions.append(index)
        merged = coalesce(wanted, gap=self.merge_gap, max_size=self.max_merged_size)
        buffers: list[memoryview | None] = [None] * len(merged)
        if arena and merged:
            space = memoryview(np.empty(sum(request.size for request in merged), np.uint8))
            offset = 0
            for k, request in enumerate(merged):
                buffers[k] = space[offset:offset + request.size]
                offset += request.size
        loop = asyncio.get_running_loop()
        semaphore = _semaphore(loop, self.max_concurrent)
        hrefs = list(dict.fromkeys(request.href for request in merged))
        targets: dict[str, str | FetchError] = dict(zip(hrefs, hrefs, strict=True))
        if self.signer is not None and hrefs:
            targets = await asyncio.to_thread(self._sign_all, hrefs)
        filesystems: dict[str, tuple[AbstractFileSystem, str] | FetchError] = {
            href: target if isinstance(target, FetchError) else self._open(target, loop)
            for href, target in targets.items()
        }

        async def one(request: MergedRange, buffer: memoryview | None) -> None:
            members = request.members  # by start
            streamed: set[int] = set()  # member indices handed over while streaming

            def arrived(view: memoryview, received: int) -> None:
                # hand over each member whose bytes are all in, while the rest streams
                available = request.start + received
                while len(streamed) < len(members):
                    member_index, member = members[len(streamed)]
                    if member.end > available:
                        break
                    streamed.add(member_index)
                    lo = member.start - request.start
                    deliver(positions[member_index], view[lo:lo + member.size])

            try:
                outcome = await self._fetch_merged(
                    request, filesystems[request.href], semaphore, allow_short, arrived, buffer
                )
            except FetchError as error:
                for member_index, member in members:
                    if member_index not in streamed:
                        deliver(positions[member_index], _for_member(error, member))
                return
            data, attempts, size = outcome
            available_end = request.start + len(data)
            for (member_index, member), (_, chunk) in zip(
                request.members, request.split(data), strict=True
            ):
                if member_index in streamed:
                    continue
                if member.end > available_end and not allow_short:
                    reason = "range ends past the end of the object"
                    reason += f" ({size} bytes)" if size is not None else ""
                    value: Payload | FetchError = FetchError(
                        member.href, member.start, member.end, attempts, reason
                    )
                else:
                    value = chunk
                deliver(positions[member_index], value)

        outcomes = await asyncio.gather(
            *(one(r, b) for r, b in zip(merged, buffers, strict=True)), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _sign_all(self, hrefs: list[str]) -> dict[str, str | FetchError]:
        signed: dict[str, str | FetchError] = {}
        for href in hrefs:
            try:
                signed[href] = self.signer(href)
            except Exception as exc:
                error = FetchError(href, 0, 0, 0, f"cannot sign the href ({exc})")
                error.__cause__ = exc
                signed[href] = error
        return signed

    def _open(
        self, href: str, loop: asyncio.AbstractEventLoop
    ) -> tuple[AbstractFileSystem, str] | FetchError:
        try:
            return resolve(href, self.storage_options, asynchronous=True, loop=loop)
        except Exception as exc:
            error = FetchError(href, 0, 0, 0, f"cannot open filesystem ({exc})")
            error.__cause__ = exc
            return error

    async def _fetch_merged(
        self,
        request: MergedRange,
        opened: tuple[AbstractFileSystem, str] | FetchError,
        semaphore: asyncio.Semaphore,
        allow_short: bool,
        progress: Progress | None = None,
        buffer: memoryview | None = None,
    ) -> tuple[Payload, int, int | None]:
        """(payload, attempts used, object size when the payload stops at its end); a streamed
        body is reported to ``progress`` as it arrives, on every attempt."""
        if isinstance(opened, FetchError):
            error = FetchError(request.href, request.start, request.end, 0, opened.reason)
            raise error from opened.__cause__
        fs, path = opened
        start, end = request.start, request.end
        attempts = 0
        while True:
            attempts += 1
            try:
                async with semaphore:
                    async with asyncio.timeout(self.timeout):
                        # a retry gets a fresh buffer: ranges streamed by a failed attempt may be in use
                        target = buffer if attempts == 1 else None
                        payload = await read_range(fs, path, start, end, progress, target)
                data, size = _check_length(payload, start, end, allow_short)
                return data, attempts, size
            except Exception as exc:
                retry, reason, status = _classify(exc)
                if type(exc) is TimeoutError and not str(exc):  # this attempt's own timeout
                    reason = f"TimeoutError: no answer within {self.timeout:g} s"
                if not retry or attempts >= self.retries:
                    error = FetchError(request.href, start, end, attempts, reason, status)
                    raise error from exc
            await asyncio.sleep(self.backoff(attempts))


def _check_length(
    payload: RangePayload, start: int, end: int, allow_short: bool
) -> tuple[Payload, int | None]:
    """Validate one attempt: (bytes, object size when known and inside the range).

    A payload cut by the end of the object is accepted here and judged per member range;
    any other short payload is a short read (retried).
    """
    data, size, past_end = payload
    want = end - start
    if len(data) >= want:
        return (memoryview(data)[:want] if len(data) > want else data), None
    if past_end or (size is not None and size < end):
        expected = max(size - start, 0) if size is not None else 0
        if len(data) >= expected:
            return data, size
    elif size is None and allow_short:
        return data, None
    raise ShortReadError(f"short read: {len(data)} of {want} bytes")


def _for_member(error: FetchError, member: ByteRange) -> FetchError:
    out = FetchError(
        member.href, member.start, member.end, error.attempts, error.reason, error.status
    )
    out.__cause__ = error.__cause__
    return out
