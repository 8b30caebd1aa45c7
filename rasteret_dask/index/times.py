"""Timestamps of an input table as ``timestamp[us, UTC]``.

Accepted per column: timestamps (naive means UTC; other time zones are converted), dates
(midnight UTC), ISO 8601 text (``"2024-03-01"``, ``"2024-03-01T10:00:00+02:00"``, ``"2024"``)
and integer years (``2023`` -> 2023-01-01T00:00:00Z, as tables of annual products carry
them). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S

__all__ = ["to_utc", "MIN_YEAR", "MAX_YEAR"]

MIN_YEAR = 1
MAX_YEAR = 9999


def _from_years(column: pa.ChunkedArray, name: str, problem: Callable[[str], None]
                ) -> pa.ChunkedArray | None:
    years = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    filled = np.where(valid, years, 2000).astype(np.int64)
    bad = valid & ((filled < MIN_YEAR) | (filled > MAX_YEAR))
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        problem(f"column {name!r} holds integers that are not years ({MIN_YEAR}..{MAX_YEAR}) "
                f"at rows {rows} (e.g. {int(filled[rows[0]])}); give timestamps, dates, ISO "
                "8601 text or integer years")
        return None
    stamps = (filled - 1970).astype("datetime64[Y]").astype("datetime64[us]")
    return pa.chunked_array([pa.array(stamps, pa.timestamp("us"), mask=~valid)
                             .cast(S.DATETIME_TYPE)])


def _from_text(column: pa.ChunkedArray, name: str, problem: Callable[[str], None]
               ) -> pa.ChunkedArray:
    import pandas as pd

    parsed = pd.to_datetime(column.to_pandas(), utc=True, format="ISO8601", errors="coerce")
    result = pa.chunked_array([pa.array(parsed.astype("datetime64[us, UTC]"),
                                        type=S.DATETIME_TYPE)])
    bad = np.asarray(result.is_null()) & ~np.asarray(column.is_null())
    if bad.any():
        problem(f"column {name!r} has unparsable timestamps at rows "
                f"{np.flatnonzero(bad)[:5].tolist()}")
    return result


def to_utc(column: pa.ChunkedArray, name: str, problem: Callable[[str], None]
           ) -> pa.ChunkedArray | None:
    """``column`` as ``timestamp[us, UTC]``, or None after reporting why it cannot be.

    Parameters
    ----------
    column : pyarrow.ChunkedArray
        Timestamps, dates, ISO 8601 text or integer years.
    name : str
        The column's name, for messages.
    problem : callable
        Receives one message per problem found.

    Returns
    -------
    pyarrow.ChunkedArray or None
    """
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.cast(t.value_type)
        t = column.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return column.cast(S.DATETIME_TYPE)
    if pa.types.is_integer(t):
        return _from_years(column, name, problem)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return _from_text(column, name, problem)
    if pa.types.is_null(t):
        return pc.cast(column, S.DATETIME_TYPE)
    problem(f"column {name!r} must be a timestamp, a date, ISO 8601 text or an integer year, "
            f"got {t}")
    return None
