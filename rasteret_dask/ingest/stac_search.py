"""Month windows of a date range and one STAC search per window (a Dask task each).

A search pages through every result with pystac-client; 429 and 5xx answers are retried with
backoff (GET and POST alike, each retry logged on ``rasteret_dask.ingest``) before the window
fails with a ``StacSearchError`` naming it; a server that does not answer fails within the
query's ``timeout`` (no retry), naming the URL.
A static catalog (``StacQuery.is_static``) is walked instead (``ingest.stac_static``) and each
window keeps the walked items a search would return.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..index.filters import parse_date_range
from ..index.normalize import normalize_table
from ..redact import redact_text, redact_url
from .stac_items import items_to_table

__all__ = ["MonthWindow", "month_windows", "StacQuery", "StacSearchError", "search_window",
           "search_items", "window_rows"]

RETRY_STATUS = (429, 500, 502, 503, 504)

logger = logging.getLogger("rasteret_dask.ingest")


@dataclass(frozen=True)
class MonthWindow:
    """One calendar month (UTC) of a date range, clipped to the range; both ends inclusive."""

    year: int
    month: int
    start: dt.datetime
    end: dt.datetime

    @property
    def interval(self) -> str:
        """The STAC ``datetime`` search parameter (``start/end``, RFC 3339, UTC)."""
        return f"{_rfc3339(self.start)}/{_rfc3339(self.end)}"

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d} ({self.interval})"


def _rfc3339(stamp: dt.datetime) -> str:
    return stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def month_windows(date_range: Sequence[Any]) -> list[MonthWindow]:
    """Split an inclusive date range into calendar-month windows (ValueError when invalid)."""
    start, end = parse_date_range(date_range)
    windows = []
    cursor = start
    while cursor <= end:
        year, month = cursor.year, cursor.month
        nxt = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
        windows.append(MonthWindow(year, month, cursor,
                                   min(end, nxt - dt.timedelta(microseconds=1))))
        cursor = nxt
    return windows


class StacSearchError(RuntimeError):
    """A STAC search failed for good; the message names the API, collection and window."""


@dataclass(frozen=True)
class StacQuery:
    """What every window's search shares (picklable: it rides in each Dask task)."""

    stac_api: str
    collection: str | None
    bbox: tuple[float, float, float, float] | None = None
    intersects: dict | None = field(default=None, hash=False)
    query: dict | None = field(default=None, hash=False)
    band_map: Mapping[str, str] | None = field(default=None, hash=False)
    band_index_map: Mapping[str, int] | None = field(default=None, hash=False)
    url_rewrite_patterns: Mapping[str, str] | None = field(default=None, hash=False)
    max_items: int | None = None
    page_size: int = 100
    retries: int = 5
    backoff: float = 0.5
    timeout: float = 60.0
    headers: Mapping[str, str] | None = field(default=None, hash=False)
    static_catalog: bool = False
    storage_options: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def is_static(self) -> bool:
        """Whether ``stac_api`` is a static catalog: flagged, or a ``.json`` document (a STAC
        API's landing page is not a file)."""
        path = self.stac_api.split("?", 1)[0].rstrip("/")
        return self.static_catalog or path.lower().endswith(".json")


def _retry(spec: StacQuery) -> Any:
    """urllib3's Retry for a STAC API: 429 and 5xx answers are retried with backoff (each
    retry logged: request, status, attempt); a server that does not answer is not (connect
    and read errors fail at once, so a silent API fails within ``spec.timeout``)."""
    from urllib3 import Retry

    class LoggedRetry(Retry):
        def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                      _stacktrace=None):
            following = super().increment(method, url, response, error, _pool, _stacktrace)
            why = f"HTTP {response.status}" if response is not None else type(error).__name__
            host = f"{_pool.scheme}://{_pool.host}:{_pool.port}" if _pool is not None else ""
            logger.info("retrying STAC request %s %s%s: %s (attempt %d of %d)", method,
                        host, redact_url(url or ""), why, len(following.history),
                        spec.retries + 1)
            return following

    return LoggedRetry(total=spec.retries, connect=0, read=0, other=0, status=spec.retries,
                       backoff_factor=spec.backoff, status_forcelist=RETRY_STATUS,
                       allowed_methods=None, respect_retry_after_header=True,
                       raise_on_status=False)


def _client(spec: StacQuery):
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO

    io = StacApiIO(headers=dict(spec.headers or {}), max_retries=_retry(spec),
                   timeout=spec.timeout)
    return Client.open(spec.stac_api, stac_io=io, timeout=spec.timeout)  # open() resets io.timeout


def _no_answer(exc: BaseException, timeout: float) -> str | None:
    """How the server failed to answer (timed out, or could not be reached), when ``exc`` or
    one it was raised from (or wraps, as requests wraps urllib3's errors) says so; None for
    any other failure."""
    import requests
    import urllib3

    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending and len(seen) < 16:
        current = pending.pop()
        if current is None or current in seen:
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None),
                    *(a for a in current.args if isinstance(a, BaseException))]
    # urllib3's NewConnectionError (refused, unknown host) is also a ConnectTimeoutError
    if any(isinstance(e, urllib3.exceptions.NewConnectionError | ConnectionRefusedError)
           for e in seen):
        return "could not be reached (no connection)"
    timeouts = (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
    if any(isinstance(e, timeouts) for e in seen):
        return f"did not answer within {timeout:g} s"
    if any(isinstance(e, requests.exceptions.ConnectionError | ConnectionError) for e in seen):
        return "could not be reached (the connection failed)"
    return None


def search_items(spec: StacQuery, window: MonthWindow) -> list[dict]:
    """Every item of one window, all pages (raises StacSearchError naming the API and window).

    A server that does not answer fails after at most ``spec.timeout`` seconds per request
    (no retry); 429 and 5xx answers are retried ``spec.retries`` times.
    """
    try:
        client = _client(spec)
        search = client.search(
            collections=[spec.collection], bbox=spec.bbox, intersects=spec.intersects,
            datetime=window.interval, query=spec.query, max_items=spec.max_items,
            limit=spec.page_size,
        )
        items = list(search.items_as_dicts())
    except Exception as exc:  # pystac-client raises APIError, requests errors, ...
        url = redact_url(spec.stac_api)
        silent = _no_answer(exc, spec.timeout)
        if silent is not None:
            raise StacSearchError(
                f"the STAC API at {url} {silent} (month window {window}); check the URL and "
                "the network, or give a longer timeout") from exc
        raise StacSearchError(
            f"STAC search of {spec.collection!r} at {url} failed for month window "
            f"{window} (429/5xx answers retried {spec.retries} times): "
            f"{type(exc).__name__}: {redact_text(exc)}") from exc
    return items


def window_rows(spec: StacQuery, window: MonthWindow, items: list[dict]) -> pa.Table | None:
    """One window's items as normalised index rows (``None`` when there are none).

    Items repeated (across pages) are kept once; rows outside the window's month (interval
    items that merely overlap it) are kept and routed to their own partition later.
    """
    if not items:
        return None
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.get("id") not in seen:
            seen.add(item.get("id"))
            unique.append(item)
    table = items_to_table(unique, band_map=spec.band_map, band_index_map=spec.band_index_map,
                           url_rewrite_patterns=spec.url_rewrite_patterns)
    try:
        return normalize_table(table)
    except ValueError as exc:
        raise ValueError(f"STAC items of {spec.collection!r} in month window {window}: {exc}") \
            from exc


def search_window(spec: StacQuery, window: MonthWindow) -> pa.Table | None:
    """One window's items from the STAC API as normalised index rows (``None`` when empty)."""
    return window_rows(spec, window, search_items(spec, window))
