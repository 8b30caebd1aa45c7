"""``proj:epsg`` from the projection columns a table may carry (STAC projection extension).

Per record, the first of these that gives an EPSG code wins:

1. ``proj:code`` (``"EPSG:32632"``; projection extension v2, so it beats a stale
   ``proj:epsg``; other authorities go through pyproj's ``to_epsg()``),
2. ``proj:epsg`` itself (an integer, or text such as ``"32632"`` / ``"EPSG:32632"``),
3. ``proj:wkt2`` (WKT2 text),
4. ``proj:projjson`` (a PROJJSON struct or JSON text),
5. ``crs`` (an EPSG integer, or anything pyproj reads: ``"EPSG:32632"``, WKT, PROJJSON).

A value that is given but names no CRS pyproj can read is refused (record and column named);
a CRS without an EPSG equivalent leaves the code null (enrichment fills it from the header).
Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyproj

from .. import schema as S

__all__ = ["EPSG_SOURCES", "derive_epsg", "epsg_of"]

EPSG_SOURCES = ("proj:code", S.EPSG, "proj:wkt2", "proj:projjson", "crs")
_EPSG_TEXT = re.compile(r"^\s*(?:EPSG\s*:\s*)?(\d+)\s*$", re.IGNORECASE)


class _Unreadable(ValueError):
    """A projection value that names no CRS pyproj can read."""


@lru_cache(maxsize=1024)
def _epsg_of_text(text: str) -> int | None:
    match = _EPSG_TEXT.match(text)
    if match:
        code = int(match.group(1))
        return code or None
    try:
        crs = pyproj.CRS.from_user_input(text)
    except pyproj.exceptions.CRSError as exc:
        raise _Unreadable(str(exc)) from exc
    return crs.to_epsg()


def _without_nulls(value: Any) -> Any:
    """PROJJSON read from an Arrow struct: the nulls of fields other rows have are dropped."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def epsg_of(value: Any) -> int | None:
    """The EPSG code of one projection value (int, text, PROJJSON dict); None when it has none.

    Parameters
    ----------
    value : int, str, dict or None
        ``32632``, ``"EPSG:32632"``, WKT, PROJJSON (as a dict or as JSON text).

    Returns
    -------
    int or None

    Raises
    ------
    ValueError
        When the value names no CRS pyproj can read.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Unreadable(f"{value!r} is not a CRS")
    if isinstance(value, int | float):
        return int(value) or None if float(value).is_integer() else None
    if isinstance(value, dict):
        return _epsg_of_text(json.dumps(_without_nulls(value), sort_keys=True))
    if isinstance(value, str):
        return None if not value.strip() else _epsg_of_text(value.strip())
    raise _Unreadable(f"{type(value).__name__} is not a CRS")


def _codes(column: pa.ChunkedArray, name: str, on_error: Callable[[str, int, str], None]
           ) -> pa.Array:
    """One EPSG code (or null) per row of a projection column, each distinct value parsed once."""
    t = column.type
    if pa.types.is_integer(t):
        ints = column.cast(pa.int64()).combine_chunks()
        return pc.if_else(pc.equal(ints, 0), pa.scalar(None, pa.int64()), ints).cast(pa.int32())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        encoded = column.combine_chunks()
        if not pa.types.is_dictionary(encoded.type):
            encoded = encoded.dictionary_encode()
        codes = []
        for number, value in enumerate(encoded.dictionary.to_pylist()):
            try:
                codes.append(epsg_of(value))
            except _Unreadable as exc:
                row = pc.index(encoded.indices, number).as_py()
                on_error(name, row, str(exc))
                codes.append(None)
        return pa.array(codes, pa.int32()).take(encoded.indices)
    seen: dict[str, int | None] = {}
    out: list[int | None] = []
    for row, value in enumerate(column.to_pylist()):
        key = json.dumps(value, sort_keys=True, default=str)
        if key not in seen:
            try:
                seen[key] = epsg_of(value)
            except _Unreadable as exc:
                on_error(name, row, str(exc))
                seen[key] = None
        out.append(seen[key])
    return pa.array(out, pa.int32())


def derive_epsg(table: pa.Table, on_error: Callable[[str, int, str], None]) -> pa.Table:
    """``table`` with ``proj:epsg`` (int32) derived from its projection columns.

    Parameters
    ----------
    table : pyarrow.Table
        The input table; tables with none of :data:`EPSG_SOURCES` are returned as they are.
    on_error : callable
        ``on_error(column, row, message)`` for a value that names no readable CRS.

    Returns
    -------
    pyarrow.Table
        With ``proj:epsg`` replaced (kept in place) or appended.
    """
    present = [name for name in EPSG_SOURCES if name in table.column_names]
    if not present:
        return table
    derived = None
    for name in present:
        codes = _codes(table[name], name, on_error)
        derived = codes if derived is None else pc.coalesce(derived, codes)
    column = pa.chunked_array([derived], type=pa.int32())
    index = table.schema.get_field_index(S.EPSG)
    field = pa.field(S.EPSG, pa.int32())
    if index < 0:
        return table.append_column(field, column)
    return table.set_column(index, field, column)
