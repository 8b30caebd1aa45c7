"""Concurrent byte-range fetching over fsspec with coalescing, retries and backoff.

All requests of one call run as coroutines on one event loop (fsspec's IO loop for the
synchronous :meth:`RangeReader.fetch`), bounded per loop by a semaphore; each attempt is one
:func:`~rasteret_dask.io.backends.read_range` under the reader's timeout, local files
included, judged by :func:`~rasteret_dask.io.errors.classify`. A request whose ranges expect a
version of their object sends its ETag as a precondition where the backend can, and every
answer's identity is compared with the expected one: another version is a final
:class:`~rasteret_dask.io.errors.ObjectChangedError`, never bytes. The default timeout and
attempts come from Dask config (``rasteret_dask.fetch.timeout``,
``rasteret_dask.fetch.retries``) when set there. Each retry is logged (INFO, logger
``rasteret_dask.io``): the range, why the attempt failed, which attempt of how many.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any

import dask.config
import fsspec.asyn
import numpy as np
from fsspec.spec import AbstractFileSystem

from rasteret_dask.io import state
from rasteret_dask.io.backends import Progress, RangePayload, read_range
from rasteret_dask.io.delivery import Deliver, RequestDelivery
from rasteret_dask.io.errors import (
    PRECONDITION_FAILED,
    FetchError,
    ObjectChangedError,
    ShortReadError,
    classify,
)
from rasteret_dask.io.identity import ObjectIdentity, mismatch
from rasteret_dask.io.ranges import ByteRange, MergedRange, Payload, coalesce
from rasteret_dask.redact import describe_callable, redact_mapping, redact_text, redact_url

__all__ = ["CONFIG_PREFIX", "Payload", "RangeReader"]

logger = logging.getLogger("rasteret_dask.io")

CONFIG_PREFIX = "rasteret_dask.fetch"
"""Dask config holding the default ``timeout`` (seconds per attempt) and ``retries``
(attempts) of readers built without them."""

Opened = tuple[AbstractFileSystem, str] | FetchError
"""An href's filesystem and path, or why it could not be signed or opened."""


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
        loop = state.io_loop()
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

    def fetch_identified(
        self, ranges: Sequence[ByteRange], *, allow_short: bool = False
    ) -> tuple[list[Payload | FetchError], dict[str, ObjectIdentity]]:
        """Like :meth:`fetch` with ``return_exceptions=True``, and the identity (ETag, size,
        Last-Modified) each href's answers reported, taken from the same responses (no
        extra request)."""
        items = list(ranges)
        if not items:
            return [], {}
        identities: dict[str, ObjectIdentity] = {}
        results: list[Payload | FetchError | None] = [None] * len(items)

        def deliver(index: int, value: Payload | FetchError) -> None:
            results[index] = value

        async def run() -> None:
            await self._run(items, deliver, allow_short, identities=identities)

        fsspec.asyn.sync(state.io_loop(), run)
        return [r for r in results if r is not None], identities

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
        asyncio.run_coroutine_threadsafe(coroutine, state.io_loop()).add_done_callback(
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
        deliver: Deliver,
        allow_short: bool,
        arena: bool = False,
        identities: dict[str, ObjectIdentity] | None = None,
    ) -> None:
        """Fetch every range, calling ``deliver(input index, bytes or FetchError)`` for each
        as soon as its bytes are in.

        With ``arena`` the streamed bodies land in one uninitialised buffer (large pages, no
        zero fill, no page fault per request): receiving costs about a quarter as much CPU.
        """
        wanted, positions = _deliver_empty(ranges, deliver)
        merged = coalesce(wanted, gap=self.merge_gap, max_size=self.max_merged_size)
        buffers = _arena(merged) if arena else [None] * len(merged)
        loop = asyncio.get_running_loop()
        semaphore = state.semaphore(loop, self.max_concurrent)
        opened = await self._open_all(merged, loop)
        await _await_all(
            self._serve(request, opened[request.href], semaphore, buffer, allow_short,
                        RequestDelivery(request, positions, deliver), identities)
            for request, buffer in zip(merged, buffers, strict=True)
        )

    async def _open_all(
        self, merged: Sequence[MergedRange], loop: asyncio.AbstractEventLoop
    ) -> dict[str, Opened]:
        """Sign (off the loop: a signer may block) and open each href once."""
        hrefs = list(dict.fromkeys(request.href for request in merged))
        targets: dict[str, str | FetchError] = dict(zip(hrefs, hrefs, strict=True))
        if self.signer is not None and hrefs:
            targets = await asyncio.to_thread(self._sign_all, hrefs)
        return {
            href: target if isinstance(target, FetchError) else self._open(target, loop)
            for href, target in targets.items()
        }

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

    def _open(self, href: str, loop: asyncio.AbstractEventLoop) -> Opened:
        try:
            return state.resolve(href, self.storage_options, asynchronous=True, loop=loop)
        except Exception as exc:
            error = FetchError(href, 0, 0, 0, f"cannot open filesystem ({exc})")
            error.__cause__ = exc
            return error

    async def _serve(
        self,
        request: MergedRange,
        opened: Opened,
        semaphore: asyncio.Semaphore,
        buffer: memoryview | None,
        allow_short: bool,
        delivery: RequestDelivery,
        identities: dict[str, ObjectIdentity] | None = None,
    ) -> None:
        """Fetch one merged request and deliver its members: while its body streams, then the
        rest (or the error); the answer's identity goes to ``identities`` when given."""
        try:
            data, attempts, size, identity = await self._fetch_merged(
                request, opened, semaphore, allow_short, delivery.arrived, buffer
            )
        except FetchError as error:
            delivery.fail(error)
            return
        if identities is not None and identity is not None:
            identities.setdefault(request.href, identity)
        delivery.finish(data, attempts, size, allow_short)

    async def _fetch_merged(
        self,
        request: MergedRange,
        opened: Opened,
        semaphore: asyncio.Semaphore,
        allow_short: bool,
        progress: Progress | None = None,
        buffer: memoryview | None = None,
    ) -> tuple[Payload, int, int | None, ObjectIdentity | None]:
        """(payload, attempts used, object size when the payload stops at its end, the
        identity the answer reported); a streamed body is reported to ``progress`` as it
        arrives, on every attempt.

        An answer from another version than ``request.expect`` raises a final
        :class:`ObjectChangedError` (as a :class:`FetchError` with status 412): over HTTP
        judged on the answer's headers before its body streams, elsewhere before the payload
        is delivered.
        """
        fs, path = _usable(request, opened)
        attempts = 0
        while True:
            attempts += 1
            # a retry gets a fresh buffer: ranges streamed by a failed attempt may be in use
            target = buffer if attempts == 1 else None
            try:
                payload = await self._attempt(fs, path, request, semaphore, progress, target)
                changed = mismatch(request.expect, payload.identity)
                if changed is not None:
                    raise ObjectChangedError(changed)
                data, size = _check_length(payload, request.start, request.end, allow_short)
                return data, attempts, size, payload.identity
            except Exception as exc:
                reason = self._raise_if_final(exc, request, attempts)
            delay = self.backoff(attempts)
            logger.info("retrying bytes %d-%d of %s in %.2f s: attempt %d of %d failed (%s)",
                        request.start, request.end - 1, redact_url(request.href), delay,
                        attempts, self.retries, redact_text(reason))
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        fs: AbstractFileSystem,
        path: str,
        request: MergedRange,
        semaphore: asyncio.Semaphore,
        progress: Progress | None,
        buffer: memoryview | None,
    ) -> RangePayload:
        """One read of the request, among at most ``max_concurrent`` in flight on this loop,
        within ``timeout`` seconds."""
        async with semaphore, asyncio.timeout(self.timeout):
            return await read_range(fs, path, request.start, request.end, progress, buffer,
                                    request.expect)

    def _raise_if_final(self, exc: Exception, request: MergedRange, attempts: int) -> str:
        """Raise the request's :class:`FetchError` when ``exc`` is final or the attempts are
        spent; else return why the attempt failed (redacted), to retry."""
        verdict = classify(exc)
        reason = verdict.reason
        if type(exc) is TimeoutError and not str(exc):  # this attempt's own timeout
            reason = f"TimeoutError: no answer within {self.timeout:g} s"
        if (verdict.status == PRECONDITION_FAILED and request.expect is not None
                and not isinstance(exc, ObjectChangedError)):  # a 412: say what was expected
            reason = f"{reason}; enriched from {request.expect.describe()}"
        if not verdict.retryable or attempts >= self.retries:
            error = FetchError(request.href, request.start, request.end, attempts, reason,
                               verdict.status)
            raise error from exc
        return reason


def _deliver_empty(
    ranges: Sequence[ByteRange], deliver: Deliver
) -> tuple[list[ByteRange], list[int]]:
    """Deliver empty ranges at once; return the others and their positions in ``ranges``."""
    items = [rng if isinstance(rng, ByteRange) else ByteRange(*rng) for rng in ranges]
    wanted: list[ByteRange] = []
    positions: list[int] = []
    for index, item in enumerate(items):
        if item.size == 0:
            deliver(index, b"")
        else:
            wanted.append(item)
            positions.append(index)
    return wanted, positions


def _arena(merged: Sequence[MergedRange]) -> list[memoryview | None]:
    """One uninitialised buffer for the bodies of all ``merged``, cut into one per request."""
    if not merged:
        return []
    space = memoryview(np.empty(sum(request.size for request in merged), np.uint8))
    buffers: list[memoryview | None] = []
    offset = 0
    for request in merged:
        buffers.append(space[offset:offset + request.size])
        offset += request.size
    return buffers


async def _await_all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``coroutines`` concurrently until every one has ended, then raise the first
    exception any raised (none is left running behind an error)."""
    outcomes = await asyncio.gather(*coroutines, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _usable(request: MergedRange, opened: Opened) -> tuple[AbstractFileSystem, str]:
    """The filesystem and path of ``request``; raises its error when its href could not be
    signed or opened (no attempt made)."""
    if isinstance(opened, FetchError):
        error = FetchError(request.href, request.start, request.end, 0, opened.reason)
        raise error from opened.__cause__
    return opened


def _check_length(
    payload: RangePayload, start: int, end: int, allow_short: bool
) -> tuple[Payload, int | None]:
    """Validate one attempt: (bytes, object size when known and inside the range).

    A payload cut by the end of the object is accepted here and judged per member range;
    any other short payload is a short read (retried).
    """
    data, size, past_end = payload.data, payload.size, payload.past_end
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
