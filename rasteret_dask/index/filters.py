"""Turn ``Collection.subset`` arguments into Arrow expressions that prune partitions and row groups.

Date ranges become conditions on the ``year``/``month`` partition keys (whole partitions are
skipped without opening their files) plus the exact ``datetime`` bounds; bboxes become
conditions on the scalar ``bbox_*`` columns, which Parquet row-group statistics prune.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .. import schema as S

__all__ = [
    "parse_date_range",
    "date_range_expression",
    "bbox_expression",
    "equals_expression",
    "cloud_cover_column",
    "and_all",
]


def _parse_instant(value: Any, *, end: bool) -> dt.datetime:
    """A UTC datetime; a bare date as the end of a range means the whole of that day."""
    if isinstance(value, dt.datetime):
        stamp = value
    elif isinstance(value, dt.date):
        stamp = dt.datetime(value.year, value.month, value.day)
        if end:
            stamp += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    elif isinstance(value, str):
        text = value.strip()
        try:
            stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"invalid date {value!r}: expected ISO 8601 (YYYY-MM-DD)") from exc
        if end and len(text) <= 10:
            stamp += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    else:
        raise ValueError(f"invalid date {value!r}: expected a string, date or datetime")
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.astimezone(dt.UTC)


def parse_date_range(date_range: Sequence[Any]) -> tuple[dt.datetime, dt.datetime]:
    """``(start, end)`` as inclusive UTC datetimes; raises ValueError when end < start."""
    if len(date_range) != 2:
        raise ValueError(f"date_range must be (start, end), got {date_range!r}")
    start = _parse_instant(date_range[0], end=False)
    end = _parse_instant(date_range[1], end=True)
    if end < start:
        raise ValueError(f"invalid date range: end {date_range[1]!r} is before start {date_range[0]!r}")
    return start, end


def _month_at_least(year: int, month: int) -> ds.Expression:
    y, m = ds.field(S.YEAR), ds.field(S.MONTH)
    return (y > year) | ((y == year) & (m >= month))


def _month_at_most(year: int, month: int) -> ds.Expression:
    y, m = ds.field(S.YEAR), ds.field(S.MONTH)
    return (y < year) | ((y == year) & (m <= month))


def date_range_expression(date_range: Sequence[Any]) -> ds.Expression:
    """Partition-key bounds plus exact datetime bounds for an inclusive date range."""
    start, end = parse_date_range(date_range)
    stamp = pa.timestamp("us", tz="UTC")
    exact = (ds.field(S.DATETIME) >= pa.scalar(start, stamp)) & (
        ds.field(S.DATETIME) <= pa.scalar(end, stamp)
    )
    return _month_at_least(start.year, start.month) & _month_at_most(end.year, end.month) & exact


def bbox_expression(bbox: Sequence[float]) -> ds.Expression:
    """Rows whose footprint bbox intersects ``(minx, miny, maxx, maxy)`` in CRS84.

    A footprint across the antimeridian has ``bbox_minx > 0 > bbox_maxx`` (it covers
    ``[bbox_minx, 180]`` and ``[-180, bbox_maxx]``; the index keeps such boxes narrower than
    180 degrees, see ``index.footprints``). Every condition compares a column with a literal,
    so Parquet row-group statistics still prune: the extra bounds on the crossing branches
    (``bbox_maxx < maxx - 180``, ``bbox_minx > minx + 180``) follow from that width limit and
    rule out row groups of ordinary footprints.
    """
    if len(bbox) != 4:
        raise ValueError(f"bbox must be (minx, miny, maxx, maxy), got {bbox!r}")
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    if minx > maxx or miny > maxy:
        raise ValueError(f"invalid bbox {bbox!r}: min is greater than max")
    west, east = ds.field("bbox_minx"), ds.field("bbox_maxx")
    plain = (east >= minx) & (west <= maxx)
    crossing = (west > 0.0) & (east < 0.0)
    reaches_east_part = (west <= maxx) & (east < maxx - 180.0)
    reaches_west_part = (east >= minx) & (west > minx + 180.0)
    longitude = plain | (crossing & (reaches_east_part | reaches_west_part))
    return longitude & (ds.field("bbox_maxy") >= miny) & (ds.field("bbox_miny") <= maxy)


def equals_expression(column: str, value: Any) -> ds.Expression:
    """``column == value``, or membership when value is a list/tuple/set."""
    if isinstance(value, list | tuple | set | frozenset):
        return pc.is_in(ds.field(column), value_set=pa.array(list(value)))
    if value is None:
        return ds.field(column).is_null()
    return ds.field(column) == value


def cloud_cover_column(schema: pa.Schema) -> str:
    """The cloud-cover column present in ``schema`` (``eo:cloud_cover`` or ``cloud_cover``)."""
    for name in S.CLOUD_COVER_COLUMNS:
        if name in schema.names:
            return name
    raise ValueError(
        f"cloud_cover_lt needs one of the columns {list(S.CLOUD_COVER_COLUMNS)}; "
        f"the collection has none"
    )


def and_all(expressions: Sequence[ds.Expression | None]) -> ds.Expression | None:
    """Conjunction of the non-None expressions (None when there are none)."""
    result = None
    for expr in expressions:
        if expr is not None:
            result = expr if result is None else result & expr
    return result
