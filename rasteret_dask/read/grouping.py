"""Time grouping of a read's records (pure): ``groupby=`` -> ordered groups fused first-valid.

``None`` keeps one time step per record (today's native reads); ``"time"`` groups records of
equal datetime; ``"solar_day"`` groups records by the local solar date at their centre
(datetime + longitude / 15 hours, odc-stac's rule: one mosaic per satellite pass); ``"id"``
groups records of equal id; a callable maps a :class:`GroupedRecord` to any hashable key.
Within a group records are ordered by datetime then id, the order in which the first valid
value wins; groups are ordered by their first record, and a group's time is its earliest
datetime.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GROUPBY", "GroupedRecord", "TimeGroup", "group_records", "check_groupby"]

GROUPBY = ("time", "solar_day", "id")
"""The named ``groupby=`` rules (besides None and a callable)."""


@dataclass(frozen=True, slots=True)
class GroupedRecord:
    """What a ``groupby`` callable sees of a record."""

    id: str
    datetime: np.datetime64
    longitude: float
    """Longitude (degrees) of the record's image centre."""


@dataclass(frozen=True, slots=True)
class TimeGroup:
    """One output time step: its key, time, and its records' positions in fusion order."""

    key: Hashable
    time: np.datetime64
    members: tuple[int, ...]


def check_groupby(groupby: Any) -> None:
    """Raise a ValueError naming ``groupby`` unless it is None, a known name or a callable."""
    if groupby is None or callable(groupby) or groupby in GROUPBY:
        return
    raise ValueError(f"groupby={groupby!r} is not a grouping; use None, "
                     f"{', '.join(map(repr, GROUPBY))} or a callable")


def _solar_day(record: GroupedRecord) -> np.datetime64:
    offset = np.timedelta64(int(round(record.longitude * 240.0)), "s")  # 360 deg = 24 h
    return (record.datetime.astype("datetime64[s]") + offset).astype("datetime64[D]")


def _key(groupby: Any) -> Callable[[GroupedRecord], Hashable]:
    if callable(groupby):
        return groupby
    return {"time": lambda r: r.datetime, "solar_day": _solar_day,
            "id": lambda r: r.id}[groupby]


def group_records(records: Sequence[GroupedRecord], groupby: Any) -> list[TimeGroup]:
    """The output time steps of ``records``.

    Parameters
    ----------
    records
        The read's records (any order).
    groupby
        None, ``"time"``, ``"solar_day"``, ``"id"`` or a callable of a :class:`GroupedRecord`.

    Returns
    -------
    list of TimeGroup
        Ordered by their first record (datetime, then id); members in fusion order.

    Raises
    ------
    ValueError
        For an unknown ``groupby``, or a callable whose key is not hashable.
    """
    check_groupby(groupby)
    times = np.array([r.datetime for r in records], dtype="datetime64[ns]").view("int64")
    order = np.lexsort((np.array([r.id for r in records], dtype=str), times)).tolist() \
        if records else []
    if groupby is None:
        return [TimeGroup(records[k].id, records[k].datetime, (k,)) for k in order]
    key_of = _key(groupby)
    groups: dict[Hashable, list[int]] = {}
    for k in order:
        key = key_of(records[k])
        try:
            groups.setdefault(key, []).append(k)
        except TypeError:
            raise ValueError(f"groupby={groupby!r} returned {key!r} for record "
                             f"{records[k].id!r}, which is not hashable") from None
    return [TimeGroup(key, records[members[0]].datetime, tuple(members))
            for key, members in groups.items()]
