"""Scheduled re-enrichment: new, late, changed and removed STAC items, then missing, failed or
stale metadata.

For an index built from STAC the search state is kept with the index (its metadata records the
API, collection, bbox, band map and the windows searched so far); a run searches again from
``lookback`` months (default 3) before the month of the last searched time (``full``: the whole
recorded range) up to ``until``, one Dask task per month window, and appends only ids the index
does not have, so items a catalogue publishes late still enter; items whose STAC ``updated``
(or, without it, hrefs) changed get their rows replaced and their headers read again, and
indexed items the search no longer returns are reported (removed with ``prune``). With ``verify`` every enriched
asset (or a sample) is checked against its object's current ETag/size/Last-Modified with one
HEAD each, and replaced objects are enriched again. Then enrichment fills what is missing
or failed, rewriting only the partitions that changed (each step one committed version of the
index). A JSON report is written beside the index (``INDEX/_reports/``, one atomic put through
fsspec, so an index on an object store gets its reports there too); a second run in a row finds
nothing and rewrites nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
from typing import Any

from ..enrich.table import COUNTS

__all__ = ["ReenrichReport", "reenrich", "search_start", "REPORTS_DIR",
           "DEFAULT_LOOKBACK_MONTHS"]

REPORTS_DIR = "_reports"  # leading underscore: ignored by dataset discovery


@dataclasses.dataclass
class ReenrichReport:
    """What a re-enrichment run found and did; ``exit_code`` is 1 when records stay failed."""

    index: str
    started: str
    seconds: float = 0.0
    stac_searched: list[str] | None = None
    stac_windows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stac_rows_replaced: list[str] = dataclasses.field(default_factory=list)
    stac_items_gone: list[str] = dataclasses.field(default_factory=list)
    stac_rows_pruned: int = 0
    stac_items_found: int = 0
    stac_rows_added: int = 0
    stac_partitions_written: list[str] = dataclasses.field(default_factory=list)
    enriched: int = 0
    failed: int = 0
    skipped: int = 0
    partitions_total: int = 0
    partitions_rewritten: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    report_path: str | None = None
    verify_fraction: float | None = None
    verified: int = 0
    changed: int = 0
    unrecorded: int = 0
    reenriched: int = 0
    verify_failed: int = 0

    @property
    def nothing_to_do(self) -> bool:
        """True when the run neither added rows nor rewrote a partition."""
        return (self.stac_rows_added == 0 and not self.stac_rows_replaced
                and self.stac_rows_pruned == 0 and self.partitions_rewritten == 0)

    @property
    def exit_code(self) -> int:
        """1 when band-records stay failed or could not be verified, else 0."""
        return 1 if self.failed or self.verify_failed else 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written for the run."""
        out = dataclasses.asdict(self)
        out["nothing_to_do"] = self.nothing_to_do
        out["exit_code"] = self.exit_code
        return out

    def summary(self) -> str:
        """One line for logs and the command line."""
        if self.nothing_to_do:
            head = "nothing to do: no new items, no missing metadata; rewrote nothing"
        else:
            head = (f"added {self.stac_rows_added} new items, replaced "
                    f"{len(self.stac_rows_replaced)} changed ones, enriched {self.enriched} "
                    f"band-records, rewrote {self.partitions_rewritten} of "
                    f"{self.partitions_total} partitions")
        tail = f"; {self.failed} band-records still failed" if self.failed else ""
        if self.stac_items_gone:
            tail += (f"; {len(self.stac_items_gone)} items gone upstream"
                     + (f", {self.stac_rows_pruned} pruned" if self.stac_rows_pruned
                        else " (kept; --prune removes them)"))
        if self.verify_fraction is not None:
            tail += (f"; verified {self.verified} band-records: {self.changed} changed, "
                     f"{self.unrecorded} without a recorded identity, {self.reenriched} "
                     f"re-enriched, {self.verify_failed} could not be verified")
        return f"{head}{tail} ({self.seconds:.1f} s)"


DEFAULT_LOOKBACK_MONTHS = 3
"""Months before the last searched month a default run searches again (late publication)."""


def _month_start(iso: str) -> dt.datetime:
    stamp = dt.datetime.fromisoformat(iso)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return dt.datetime(stamp.year, stamp.month, 1, tzinfo=dt.UTC)


def search_start(searched: list[list[str]], *, lookback: int = DEFAULT_LOOKBACK_MONTHS,
                 full: bool = False) -> dt.datetime | None:
    """Where a run's STAC search starts, from the windows searched so far.

    Parameters
    ----------
    searched : list of [start, end]
        The recorded search windows (ISO 8601), as kept in ``extra.stac.searched``.
    lookback : int, default 3
        Whole calendar months searched again before the month of the last searched time, so
        items published late (backlogs, reprocessing, backfills) still enter.
    full : bool, default False
        Search again from the start of everything recorded.

    Returns
    -------
    datetime or None
        The first instant to search (UTC, a month start, never before the recorded range);
        None when nothing was searched before.
    """
    if not searched:
        return None
    if lookback < 0:
        raise ValueError(f"lookback must be a number of months >= 0, got {lookback}")
    first = _month_start(min(w[0] for w in searched))
    if full:
        return first
    last = _month_start(max(w[1] for w in searched))
    months = last.year * 12 + last.month - 1 - lookback
    return max(first, dt.datetime(months // 12, months % 12 + 1, 1, tzinfo=dt.UTC))


def _search_new_items(collection: Any, state: dict[str, Any], until: Any, client: Any,
                      report: ReenrichReport, lookback: int, full: bool, prune: bool,
                      progress: bool = False) -> None:
    from ..index.filters import parse_date_range
    from ..ingest import ItemSync, StacQuery, ingest_stac

    searched = state.get("searched") or []
    end = (parse_date_range(("1970-01-01", until))[1] if until is not None
           else dt.datetime.now(dt.UTC))
    start = search_start(searched, lookback=lookback, full=full)
    if start is None or start > end:
        return
    bbox = state.get("bbox")
    spec = StacQuery(stac_api=state["api"], collection=state["collection"],
                     bbox=tuple(bbox) if bbox else None, intersects=state.get("intersects"),
                     query=state.get("query"), band_map=state.get("band_map"),
                     band_index_map=state.get("band_index_map"))
    report.stac_searched = [start.isoformat(), end.isoformat()]
    summary = ingest_stac(spec, (start, end), collection.path, name=collection.name,
                          data_source=collection.data_source,
                          description=collection.description, client=client,
                          storage_options=collection.storage_options,
                          sync=ItemSync(refresh=True, prune=prune), progress=progress)
    report.stac_items_found = summary.items_found
    report.stac_rows_replaced = list(summary.rows_replaced)
    report.stac_items_gone = list(summary.items_gone)
    report.stac_rows_pruned = summary.rows_pruned
    report.stac_windows = [{"window": w, "items_found": n} for w, n in summary.windows_found]
    report.stac_rows_added = summary.rows_added
    report.stac_partitions_written = [f"year={y}/month={m}" for y, m in summary.partitions_written]


def reenrich(index: str | os.PathLike, *, client: Any = None, bands: list[str] | None = None,
             stac: bool = True, until: Any = None, storage_options: dict | None = None,
             report_path: str | os.PathLike | None = None, progress: bool = False,
             index_storage_options: dict | None = None,
             lookback: int = DEFAULT_LOOKBACK_MONTHS, full: bool = False,
             verify: bool = False, verify_fraction: float = 1.0,
             prune: bool = False) -> ReenrichReport:
    """Add new STAC items, enrich what is missing or failed, and write a JSON run report.

    Parameters
    ----------
    index : str or os.PathLike
        The index: a local folder or an fsspec URL.
    client : distributed.Client or connect() target, optional
        Where to run (None: the active client, else local threads); a target given here is
        closed afterwards.
    bands : list of str, optional
        Bands to enrich (default: all).
    stac : bool, default True
        Search the index's STAC API again first: from ``lookback`` months before the last
        searched month (or, with ``full``, from the start of the recorded range) up to
        ``until``; ids the index does not have are added, rows of items whose ``updated``
        (or hrefs) changed are replaced and their metadata read again, and indexed items of
        the searched range the search no longer returns are reported.
    until : date-like, optional
        Search up to this date (default: now).
    storage_options : dict, optional
        fsspec options for the COGs.
    report_path : str or os.PathLike, optional
        Where the JSON report goes (default ``INDEX/_reports/reenrich-<UTC time>.json``).
    progress : bool, default False
        Show progress bars: the STAC searches, partition writes and enrichment tasks.
    index_storage_options : dict, optional
        fsspec options for the index itself (default: the ``rasteret_dask.storage_options``
        dask config).
    lookback : int, default 3
        Calendar months before the month of the last searched time that are searched again
        (items published late enter on the next run).
    full : bool, default False
        Search everything recorded again (overrides ``lookback``).
    verify : bool, default False
        Check the stored identity (ETag, size, Last-Modified) of every enriched asset with one
        HEAD per object, as Dask tasks per data file, and enrich again those whose object
        changed (replaced at the same href) or that have no identity recorded.
    verify_fraction : float, default 1.0
        With ``verify``, the fraction of objects checked (a stable sample by href).
    prune : bool, default False
        Remove the rows of items the search no longer returns (they are reported either way).

    Returns
    -------
    ReenrichReport
        Items added, records enriched / failed / skipped, partitions rewritten, errors, time,
        the report's path and ``exit_code`` (1 when records stay failed).

    Raises
    ------
    ValueError
        When ``index`` is not a partitioned index.
    StacSearchError
        When a month's search keeps failing (nothing is written).
    """
    from ..collection import load
    from ..index.objectstore import put_atomic_url
    from ..runner import using_client

    started = time.perf_counter()
    report = ReenrichReport(index=str(index), started=dt.datetime.now(dt.UTC).isoformat(),
                            verify_fraction=verify_fraction if verify else None)
    with using_client(client) as active:
        collection = load(index, storage_options=index_storage_options)
        if collection.version is None:
            raise ValueError(f"{index} is not a partitioned index directory")
        state = collection.info.extra.get("stac")
        if stac and state:
            _search_new_items(collection, state, until, active, report, lookback, full, prune,
                              progress)
            collection = load(index, storage_options=index_storage_options)
        outcome = collection.enrich(bands, client=active, only_missing=True,
                                    storage_options=storage_options, progress=progress,
                                    verify=verify_fraction if verify else False)
        for name in COUNTS:
            setattr(report, name, getattr(outcome, name))
        report.partitions_total = outcome.partitions_total
        report.partitions_rewritten = outcome.partitions_rewritten
        report.errors = list(outcome.errors)
    report.seconds = time.perf_counter() - started
    if report_path is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        report_path = f"{os.fspath(index).rstrip('/')}/{REPORTS_DIR}/reenrich-{stamp}.json"
    report.report_path = os.fspath(report_path)
    put_atomic_url(report.report_path, json.dumps(report.to_dict(), indent=2,
                                                  default=str).encode(),
                   index_storage_options)
    return report
