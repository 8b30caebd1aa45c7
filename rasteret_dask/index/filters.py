"""Turn ``Collection.subset`` arguments into Arrow expressions that prune partitions and row groups.

Date ranges become conditions on the ``year``/``month`` partition keys (whole partitions are
skipped without opening their files) plus the exact ``datetime`` bounds; bboxes become
conditions on the scalar ``bbox_*`` columns, which Parquet row-group statistics prune.
Every argument is checked when the expression is built, so a wrongly typed value fails at
the call naming the column and the value (``subset(split=123)`` on a text column), never
later inside Arrow while the data are scanned.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from numbers import Real
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
    "number_argument",
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
    if isinstance(date_range, str | bytes) or not hasattr(date_range, "__len__"):
        raise TypeError(f"date_range must be a (start, end) pair, got {date_range!r}")
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
    if isinstance(bbox, str | bytes) or not hasattr(bbox, "__len__"):
        raise TypeError(f"bbox must be (minx, miny, maxx, maxy), got {bbox!r}")
    if len(bbox) != 4:
        raise ValueError(f"bbox must be (minx, miny, maxx, maxy), got {bbox!r}")
    minx, miny, maxx, maxy = (number_argument("bbox", v) for v in bbox)
    if minx > maxx or miny > maxy:
        raise ValueError(f"invalid bbox {bbox!r}: min is greater than max")
    west, east = ds.field("bbox_minx"), ds.field("bbox_maxx")
    plain = (east >= minx) & (west <= maxx)
    crossing = (west > 0.0) & (east < 0.0)
    reaches_east_part = (west <= maxx) & (east < maxx - 180.0)
    reaches_west_part = (east >= minx) & (west > minx + 180.0)
    longitude = plain | (crossing & (reaches_east_part | reaches_west_part))
    return longitude & (ds.field("bbox_maxy") >= miny) & (ds.field("bbox_miny") <= maxy)


def number_argument(name: str, value: Any) -> float:
    """``value`` as a float when it is a real number (not a bool), else ``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    return float(value)


def _comparable(column: str, field_type: pa.DataType) -> pa.DataType:
    """The type values of ``column`` are compared as; nested columns cannot be compared."""
    if pa.types.is_dictionary(field_type):
        field_type = field_type.value_type
    nested = (pa.types.is_struct(field_type) or pa.types.is_list(field_type)
              or pa.types.is_large_list(field_type) or pa.types.is_fixed_size_list(field_type)
              or pa.types.is_map(field_type) or pa.types.is_union(field_type))
    if nested:
        raise TypeError(f"column {column!r} is {field_type}: it cannot be compared with a "
                        "value; filter it with where() and a pyarrow.compute expression")
    return field_type


def _typed(column: str, values: list[Any], field_type: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=field_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        shown = values[0] if len(values) == 1 else values
        raise TypeError(f"filter value {shown!r} for column {column!r} does not match the "
                        f"column's type {field_type}: {exc}") from exc


def equals_expression(column: str, value: Any, field_type: pa.DataType | None = None
                      ) -> ds.Expression:
    """``column == value``, or membership when value is a list/tuple/set.

    Parameters
    ----------
    column : str
        The column.
    value : scalar, list, tuple, set or None
        None matches nulls.
    field_type : pyarrow.DataType, optional
        The column's type; when given the value is converted to it here, so a value of the
        wrong type raises at once.

    Returns
    -------
    pyarrow.dataset.Expression

    Raises
    ------
    TypeError
        For a value that does not convert to the column's type, or a nested column.
    """
    target = None if field_type is None else _comparable(column, field_type)
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        values = pa.array(items) if target is None else _typed(column, items, target)
        return pc.is_in(ds.field(column), value_set=values)
    if value is None:
        return ds.field(column).is_null()
    if target is None:
        return ds.field(column) == value
    return ds.field(column) == _typed(column, [value], target)[0]


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
