"""Month windows of a date range and one STAC search per window (a Dask task each).

A search pages through every result with pystac-client; 429 and 5xx answers are retried with
backoff (GET and POST alike) before the window fails with a ``StacSearchError`` naming it.
A static catalog (``StacQuery.is_static``) is walked instead (``ingest.stac_static``) and each
window keeps the walked items a search would return.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..index.filters import parse_date_range
from ..index.normalize import normalize_table
from .stac_items import items_to_table

__all__ = ["MonthWindow", "month_windows", "StacQuery", "StacSearchError", "search_window",
           "search_items", "window_rows"]

RETRY_STATUS = (429, 500, 502, 503, 504)


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


def _client(spec: StacQuery):
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    retry = Retry(total=spec.retries, connect=spec.retries, read=spec.retries,
                  status=spec.retries, backoff_factor=spec.backoff,
                  status_forcelist=RETRY_STATUS, allowed_methods=None,
                  respect_retry_after_header=True, raise_on_status=False)
    io = StacApiIO(headers=dict(spec.headers or {}), max_retries=retry, timeout=spec.timeout)
    return Client.open(spec.stac_api, stac_io=io, timeout=spec.timeout)  # open() resets io.timeout


def search_items(spec: StacQuery, window: MonthWindow) -> list[dict]:
    """Every item of one window, all pages (raises StacSearchError naming the window)."""
    try:
        client = _client(spec)
        search = client.search(
            collections=[spec.collection], bbox=spec.bbox, intersects=spec.intersects,
            datetime=window.interval, query=spec.query, max_items=spec.max_items,
            limit=spec.page_size,
        )
        items = list(search.items_as_dicts())
    except Exception as exc:  # pystac-client raises APIError, requests errors, ...
        raise StacSearchError(
            f"STAC search of {spec.collection!r} at {spec.stac_api} failed for month window "
            f"{window} after {spec.retries} retries: {type(exc).__name__}: {exc}") from exc
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
