"""Changed and gone items from a new search (pure)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from rasteret_dask.ingest import changed_ids, gone_ids

UTC = dt.UTC


def _table(rows: list[tuple]) -> pa.Table:
    ids, updated, hrefs, times = zip(*rows, strict=True)
    return pa.table({
        "id": list(ids), "updated": list(updated),
        "assets": [{"B04": {"href": h, "band_index": 0}} for h in hrefs],
        "datetime": pa.array(list(times), pa.timestamp("us", tz="UTC")),
    })


T = dt.datetime(2024, 3, 10, tzinfo=UTC)


def test_updated_decides_and_hrefs_stand_in_without_it():
    old = _table([("a", "2024-03-10T03:00:00Z", "h/a", T), ("b", "2024-03-10T03:00:00Z", "h/b", T),
                  ("c", None, "h/c", T), ("d", None, "h/d", T), ("e", "2024-03-10T03:00:00Z",
                                                                  "h/e", T)])
    new = _table([("a", "2024-03-10T03:00:00+00:00", "h/a", T),  # same instant
                  ("b", "2024-04-01T00:00:00Z", "h/b", T),  # updated moved
                  ("c", None, "h/c2", T),  # no updated: hrefs changed
                  ("d", None, "h/d", T),
                  ("e", "2024-03-10T03:00:00Z", "h/e2", T),  # same updated: not changed
                  ("f", "2024-03-10T03:00:00Z", "h/f", T)])  # new: not "changed"
    assert changed_ids(old, new) == {"b", "c"}


def test_gone_only_inside_the_searched_window():
    old = _table([("a", None, "h", T), ("b", None, "h", T + dt.timedelta(days=30)),
                  ("c", None, "h", T)])
    window = (dt.datetime(2024, 3, 1, tzinfo=UTC), dt.datetime(2024, 3, 31, 23, 59, tzinfo=UTC))
    assert gone_ids(old, {"a"}, window) == ["c"]
