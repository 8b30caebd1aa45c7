"""The errors of the I/O layer and the judgement of a failed attempt (pure, no I/O).

Backends raise the low-level errors (:class:`HTTPStatusError`, :class:`ShortReadError`,
:class:`RangeResponseError`, :class:`NotRegularFileError`, :class:`BlockedCallsError`) or let
their library's own exceptions through; :func:`classify` decides from an exception (and the
exceptions it was raised from) whether another attempt may succeed. What a caller finally sees
is a :class:`FetchError` naming the href, the range and the attempts made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from fsspec.exceptions import FSTimeoutError

from rasteret_dask.redact import redact_text, redact_url

__all__ = [
    "RETRY_S3_CODES",
    "RETRY_STATUSES",
    "BlockedCallsError",
    "FetchError",
    "HTTPStatusError",
    "NotRegularFileError",
    "ObjectChangedError",
    "PRECONDITION_FAILED",
    "RangeResponseError",
    "ShortReadError",
    "Verdict",
    "chain",
    "classify",
    "is_invalid_range",
    "s3_status",
]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses worth another attempt (timeouts, throttling, server errors)."""

RETRY_S3_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}
)
"""S3 error codes worth another attempt, whatever status came with them."""

_CHAIN_LIMIT = 8

PRECONDITION_FAILED = 412
"""The status of a conditional request whose object is no longer the one enriched; an
:class:`ObjectChangedError` carries it too."""

_CHANGED = "the object changed since enrichment"


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

    @property
    def object_changed(self) -> bool:
        """Whether the object is no longer the one its metadata describes (HTTP 412 or an
        identity mismatch): final, never retried."""
        return self.status == PRECONDITION_FAILED

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.href, self.start, self.end, self.attempts, self.reason, self.status)
        return (FetchError, args)


class HTTPStatusError(OSError):
    """An HTTP error status answered to a range request."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class ObjectChangedError(OSError):
    """A response from another version of the object than the one enriched: a 412 answer to
    ``If-Match``, or an ETag/size/mtime that differs from the recorded one (final)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{_CHANGED} ({detail})")
        self.status = PRECONDITION_FAILED


class ShortReadError(OSError):
    """Fewer bytes arrived than the object holds for the range (transient)."""


class RangeResponseError(OSError):
    """A ``206`` answer that is not the range asked for (transient: a CDN may err once)."""


class NotRegularFileError(OSError):
    """A local path that is not a regular file (a FIFO, a device, a directory)."""


class BlockedCallsError(TimeoutError):
    """Too many abandoned calls are still blocked: no new call is started (a stalled mount)."""


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


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one failed attempt is judged."""

    retryable: bool
    """Whether another attempt may succeed."""
    reason: str
    """What went wrong, for the final :class:`FetchError` (redacted there)."""
    status: int | None
    """The HTTP status answered, when one is known."""


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (``__cause__``, else
    ``__context__``): at most eight, each once."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < _CHAIN_LIMIT:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def s3_status(exc: BaseException) -> tuple[int | None, str | None]:
    """(HTTP status, S3 error code) of a botocore-style error's ``response``; None for each
    part it does not carry (any other exception carries neither)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None, None
    meta = response.get("ResponseMetadata") or {}
    error = response.get("Error") or {}
    return meta.get("HTTPStatusCode"), error.get("Code")


def is_invalid_range(exc: BaseException) -> bool:
    """Whether ``exc`` (or one it was raised from) is S3's answer to a range that starts at or
    past the object's end (``InvalidRange``, HTTP 416)."""
    for link in chain(exc):
        status, code = s3_status(link)
        if code == "InvalidRange" or status == 416:
            return True
    return False


def classify(exc: BaseException) -> Verdict:
    """Judge one failed attempt: retryable or final, why, and the HTTP status if known.

    HTTP statuses are retried when in :data:`RETRY_STATUSES`; S3 errors (found anywhere in the
    exception's chain) also when their code is in :data:`RETRY_S3_CODES`, unless the error was
    translated to a missing object or a refused access. Connection errors, timeouts, short reads
    and wrong ``206`` answers are transient; a 412 (``If-Match`` failed) or an :class:`ObjectChangedError` is final: the
    object changed since enrichment. Anything else is final.
    """
    if isinstance(exc, ObjectChangedError):
        return Verdict(False, str(exc), PRECONDITION_FAILED)
    if isinstance(exc, HTTPStatusError | aiohttp.ClientResponseError) \
            and exc.status == PRECONDITION_FAILED:
        return Verdict(False, f"{_CHANGED} (HTTP 412 Precondition Failed to If-Match)",
                       PRECONDITION_FAILED)
    if isinstance(exc, HTTPStatusError):
        return Verdict(exc.status in RETRY_STATUSES, str(exc), exc.status)
    if isinstance(exc, aiohttp.ClientResponseError):
        return Verdict(exc.status in RETRY_STATUSES, f"HTTP {exc.status}", exc.status)
    for link in chain(exc):
        status, code = s3_status(link)
        if status == PRECONDITION_FAILED or code == "PreconditionFailed":
            return Verdict(False, f"{_CHANGED} (HTTP 412 PreconditionFailed to IfMatch)",
                           PRECONDITION_FAILED)
        if status is not None or code is not None:
            retry = (status in RETRY_STATUSES) or (code in RETRY_S3_CODES)
            if isinstance(exc, FileNotFoundError | PermissionError):
                retry = False
            label = f"HTTP {status}" if status is not None else "error"
            return Verdict(retry, f"{label} ({code}: {exc})" if code else label, status)
    if isinstance(exc, FileNotFoundError):
        return Verdict(False, f"not found ({exc})", None)
    if isinstance(exc, PermissionError):
        return Verdict(False, f"permission denied ({exc})", None)
    if isinstance(exc, _TRANSIENT):
        text = str(exc) or "no detail"
        return Verdict(True, f"{type(exc).__name__}: {text}", None)
    return Verdict(False, f"{type(exc).__name__}: {exc}", None)
