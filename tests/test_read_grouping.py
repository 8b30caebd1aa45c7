"""Time grouping of records (pure): groupby=None, time, solar_day, id, callable."""

from __future__ import annotations

import numpy as np
import pytest

from rasteret_dask.read.grouping import GroupedRecord, check_groupby, group_records


def rec(rid: str, when: str, lon: float = 0.0) -> GroupedRecord:
    return GroupedRecord(rid, np.datetime64(when, "ns"), lon)


RECORDS = [
    rec("b", "2024-01-01T05:30:10", 78.5),   # zone 44 tile of the first pass
    rec("a", "2024-01-01T05:30:00", 77.5),   # zone 43 tile of the first pass
    rec("c", "2024-01-06T05:30:00", 77.5),
    rec("d", "2024-01-01T22:00:00", 78.0),   # after local midnight at 78 E: the next solar day
]


def test_none_is_one_step_per_record_in_time_order():
    groups = group_records(RECORDS, None)
    assert [g.members for g in groups] == [(1,), (0,), (3,), (2,)]


def test_solar_day_fuses_a_pass_in_datetime_then_id_order():
    groups = group_records(RECORDS, "solar_day")
    assert [g.members for g in groups] == [(1, 0), (3,), (2,)]
    assert groups[0].time == np.datetime64("2024-01-01T05:30:00", "ns")
    assert str(groups[1].key) == "2024-01-02"


def test_time_id_and_callable():
    assert [g.members for g in group_records(RECORDS, "time")] == [(1,), (0,), (3,), (2,)]
    assert [g.members for g in group_records(RECORDS, "id")] == [(1,), (0,), (3,), (2,)]
    by_month = group_records(RECORDS, lambda r: r.datetime.astype("datetime64[M]"))
    assert [g.members for g in by_month] == [(1, 0, 3, 2)]


def test_bad_groupby():
    with pytest.raises(ValueError, match="groupby='day'"):
        check_groupby("day")
    with pytest.raises(ValueError, match="not hashable"):
        group_records(RECORDS, lambda r: [r.id])
