"""Judging a failed attempt (pure, no I/O): HTTP statuses, S3 errors as botocore raises them
and as s3fs translates them, transient errors, exception chains; FetchError's message."""

from __future__ import annotations

import pickle

import aiohttp
import pytest
from botocore.exceptions import ClientError, ResponseStreamingError
from fsspec.exceptions import FSTimeoutError
from s3fs.errors import translate_boto_error

from rasteret_dask.io.errors import (
    RETRY_STATUSES,
    BlockedCallsError,
    FetchError,
    HTTPStatusError,
    NotRegularFileError,
    RangeResponseError,
    ShortReadError,
    Verdict,
    chain,
    classify,
    is_invalid_range,
    s3_status,
)


def s3_error(code: str, status: int | None) -> ClientError:
    response: dict = {"Error": {"Code": code, "Message": f"{code} message"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "GetObject")


def raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


# --- HTTP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(RETRY_STATUSES))
def test_retryable_http_statuses_are_retried(status: int) -> None:
    assert classify(HTTPStatusError(status)) == Verdict(True, f"HTTP {status}", status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 501])
def test_other_http_statuses_are_final(status: int) -> None:
    assert classify(HTTPStatusError(status)) == Verdict(False, f"HTTP {status}", status)


def test_aiohttp_response_errors_are_judged_by_status() -> None:
    assert classify(aiohttp.ClientResponseError(None, (), status=503)) == Verdict(
        True, "HTTP 503", 503
    )
    assert classify(aiohttp.ClientResponseError(None, (), status=404)) == Verdict(
        False, "HTTP 404", 404
    )


# --- S3 ------------------------------------------------------------------------------------


def test_s3_status_reads_a_botocore_response() -> None:
    assert s3_status(s3_error("SlowDown", 503)) == (503, "SlowDown")
    assert s3_status(s3_error("SlowDown", None)) == (None, "SlowDown")
    assert s3_status(ValueError("no response")) == (None, None)
    odd = OSError("odd")
    odd.response = "not a mapping"  # type: ignore[attr-defined]
    assert s3_status(odd) == (None, None)


@pytest.mark.parametrize("code", ["SlowDown", "InternalError", "ServiceUnavailable",
                                  "RequestTimeout", "Throttling"])
def test_retryable_s3_codes_are_retried_whatever_their_status(code: str) -> None:
    verdict = classify(s3_error(code, 400))
    assert verdict.retryable
    assert verdict.status == 400
    assert verdict.reason.startswith(f"HTTP 400 ({code}: ")


def test_an_s3_error_without_status_is_labelled_error() -> None:
    verdict = classify(s3_error("SlowDown", None))
    assert verdict.retryable and verdict.status is None
    assert verdict.reason.startswith("error (SlowDown: ")


def test_an_s3_server_error_translated_by_s3fs_is_retried_through_its_cause() -> None:
    translated = translate_boto_error(s3_error("InternalError", 500))
    assert not isinstance(translated, ClientError)
    verdict = classify(translated)
    assert verdict.retryable and verdict.status == 500
    assert "InternalError" in verdict.reason


def test_missing_and_refused_s3_objects_are_final_even_with_a_retryable_status() -> None:
    missing = translate_boto_error(s3_error("NoSuchKey", 404))
    assert isinstance(missing, FileNotFoundError)
    assert classify(missing) == Verdict(False, f"HTTP 404 (NoSuchKey: {missing})", 404)
    refused = translate_boto_error(s3_error("AccessDenied", 403))
    assert isinstance(refused, PermissionError)
    assert not classify(refused).retryable
    # a missing object is final even when its cause carries a retryable status
    odd = raised_from(FileNotFoundError("gone"), s3_error("SlowDown", 503))
    assert classify(odd) == Verdict(False, "HTTP 503 (SlowDown: gone)", 503)


def test_an_invalid_range_is_recognised_by_code_or_status_anywhere_in_the_chain() -> None:
    assert is_invalid_range(s3_error("InvalidRange", 416))
    assert is_invalid_range(s3_error("InvalidRange", None))
    assert is_invalid_range(s3_error("Whatever", 416))
    assert is_invalid_range(raised_from(OSError("translated"), s3_error("InvalidRange", 416)))
    assert not is_invalid_range(s3_error("NoSuchKey", 404))
    assert not is_invalid_range(OSError("plain"))


# --- transient and final errors ------------------------------------------------------------


@pytest.mark.parametrize("exc", [
    TimeoutError(),
    ConnectionResetError("reset by peer"),
    FSTimeoutError(),
    aiohttp.ServerDisconnectedError(),
    aiohttp.ClientPayloadError("truncated"),
    ShortReadError("short read: 3 of 9 bytes"),
    RangeResponseError("206 answer to bytes 0-9 without Content-Range"),
    BlockedCallsError("64 blocking reads are still stuck"),
    ResponseStreamingError(error="connection dropped"),
], ids=lambda exc: type(exc).__name__)
def test_transient_errors_are_retried_and_named(exc: BaseException) -> None:
    verdict = classify(exc)
    assert verdict.retryable and verdict.status is None
    assert verdict.reason.startswith(f"{type(exc).__name__}: ")
    assert verdict.reason.endswith(str(exc) or "no detail")


@pytest.mark.parametrize("exc, reason", [
    (FileNotFoundError("/data/a.tif"), "not found (/data/a.tif)"),
    (PermissionError("/data/a.tif"), "permission denied (/data/a.tif)"),
    (NotRegularFileError("/data/a.tif is a FIFO, not a regular file"),
     "NotRegularFileError: /data/a.tif is a FIFO, not a regular file"),
    (ValueError("bad value"), "ValueError: bad value"),
    (IsADirectoryError("/data"), "IsADirectoryError: /data"),
], ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "")
def test_other_errors_are_final(exc: BaseException, reason: str) -> None:
    assert classify(exc) == Verdict(False, reason, None)


# --- chains --------------------------------------------------------------------------------


def test_chain_follows_causes_then_contexts() -> None:
    root = ValueError("root")
    middle = raised_from(OSError("middle"), root)
    try:
        try:
            raise middle
        except OSError:
            raise KeyError("outer") from None  # noqa: B904 - a suppressed context still chains
    except KeyError as exc:
        outer = exc
    assert outer.__cause__ is None and outer.__context__ is middle
    assert chain(outer) == [outer, middle, root]


def test_chain_ends_on_a_cycle_and_after_eight_links() -> None:
    first, second = OSError("first"), OSError("second")
    first.__cause__, second.__cause__ = second, first
    assert chain(first) == [first, second]
    assert not is_invalid_range(first)
    links = [OSError(str(k)) for k in range(12)]
    for outer, inner in zip(links, links[1:], strict=False):
        outer.__cause__ = inner
    assert chain(links[0]) == links[:8]
    links[8].response = {"Error": {"Code": "InvalidRange"}}  # type: ignore[attr-defined]
    assert not is_invalid_range(links[0])  # beyond the links looked at
    links[7].response = {"Error": {"Code": "InvalidRange"}}  # type: ignore[attr-defined]
    assert is_invalid_range(links[0])


# --- FetchError ----------------------------------------------------------------------------


def test_fetch_error_names_href_range_attempts_and_redacts() -> None:
    href = "https://user:pw@host/a.tif?sig=SECRET"
    error = FetchError(href, 10, 20, 3, "HTTP 503 at https://host/a.tif?sig=SECRET", 503)
    text = str(error)
    assert text.startswith("bytes 10-19 of https://***@host/a.tif?<redacted>: HTTP 503")
    assert text.endswith("after 3 attempts")
    assert "SECRET" not in text and "SECRET" not in error.reason
    assert error.href == href and error.status == 503
    assert str(FetchError(href, 0, 0, 0, "cannot sign the href")).endswith("cannot sign the href")
    assert str(FetchError(href, 0, 5, 1, "x")).endswith("after 1 attempt")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.href, copy.start, copy.end, copy.attempts, copy.reason, copy.status) == (
        error.href, error.start, error.end, error.attempts, error.reason, error.status
    )
