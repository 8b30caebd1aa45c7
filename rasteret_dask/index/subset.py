"""The filter of ``Collection.subset`` (pure): keyword conditions -> one Arrow expression."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from . import filters as F

__all__ = ["subset_expression"]


def subset_expression(
    schema: pa.Schema,
    *,
    cloud_cover_lt: float | None = None,
    date_range: Sequence[Any] | None = None,
    bbox: Sequence[float] | None = None,
    split: str | Sequence[str] | None = None,
    split_column: str = "split",
    equals: Mapping[str, Any] | None = None,
) -> ds.Expression | None:
    """The AND of the given conditions over ``schema``'s columns (None when none is given).

    Parameters
    ----------
    schema : pyarrow.Schema
        The collection's schema: the columns conditions may name, and their types.
    cloud_cover_lt, date_range, bbox, split, split_column
        As :meth:`rasteret_dask.Collection.subset` takes them.
    equals : mapping, optional
        ``column -> value`` (or a list of values) for any other column.

    Returns
    -------
    pyarrow.dataset.Expression or None
        The condition; partition keys and bbox columns in it prune files and row groups.

    Raises
    ------
    ValueError
        For a column ``schema`` does not have, or an invalid date range or bbox.
    TypeError
        For a value that does not match its column's type, a non-numeric ``cloud_cover_lt``
        or bbox, or a ``split_column`` that is not a name.
    """
    equals = dict(equals or {})
    names = schema.names
    if not isinstance(split_column, str):
        raise TypeError(f"split_column must be a column name, got {split_column!r}")
    for column in [*equals, *([split_column] if split is not None else [])]:
        if column not in names:
            raise ValueError(
                f"unknown column {column!r}: keyword arguments that are not parameters of "
                f"subset (or of the read that passed them on) filter on columns, and the "
                f"collection has no column {column!r}; its columns are {names}")
    parts: list[ds.Expression | None] = []
    if cloud_cover_lt is not None:
        limit = F.number_argument("cloud_cover_lt", cloud_cover_lt)
        parts.append(ds.field(F.cloud_cover_column(schema)) < limit)
    if date_range is not None:
        parts.append(F.date_range_expression(date_range))
    if bbox is not None:
        parts.append(F.bbox_expression(bbox))
    if split is not None:
        parts.append(F.equals_expression(split_column, split, schema.field(split_column).type))
    parts.extend(F.equals_expression(k, v, schema.field(k).type) for k, v in equals.items())
    return F.and_all(parts)
