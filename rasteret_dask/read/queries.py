"""A read's query geometries, and the other columns of a query table (pure).

``get_gdf`` and ``sample_points`` take their geometries as any form ``plan.geometry`` knows,
or as a table (a pyarrow Table or RecordBatch, a (geo)pandas DataFrame, or any object with
``__arrow_c_stream__`` / ``__arrow_c_array__``: polars, DuckDB, ...) whose geometry column
(``geometry_column=``, else the GeoParquet primary column, a GeoArrow-marked column, or
``geometry``) holds one geometry per row. The table's other columns are kept, one row per
geometry, so that the read's output rows carry them. Geometry row *k* is table row *k*:
a null, empty or unparsable geometry in a table is an error naming its rows, never a row
silently left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyproj
import shapely

from ..index.geometry_input import NOT_WKB_HINT, declared_crs, decode_footprints
from ..index.inputs import EXTENSION_NAME, as_arrow_table
from ..index.times import to_utc
from .select import query_geometries

__all__ = ["Queries", "read_queries", "is_table", "TIME_COLUMN"]

_GEOMETRY_EXTENSIONS = ("geoarrow.wkb", "geoarrow.wkt", "ogc.wkb")

TIME_COLUMN = "datetime"
"""The column of a query table holding each geometry's own time (``match="nearest_time"``)."""


def is_table(obj: Any) -> bool:
    """Whether ``obj`` is a table of geometries and other columns (not a geometry array)."""
    if isinstance(obj, pa.Table | pa.RecordBatch | pa.RecordBatchReader):
        return True
    if isinstance(obj, pa.Array | pa.ChunkedArray):
        return False
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas ships with the dependencies
        return False
    if isinstance(obj, pd.DataFrame):
        return True
    if isinstance(obj, pd.Series):
        return False
    return hasattr(obj, "__arrow_c_stream__") or hasattr(obj, "__arrow_c_array__")


@dataclass(frozen=True)
class Queries:
    """A read's geometries (in ``crs``) and, for a table input, its other columns.

    ``columns`` has one row per geometry (the input table without its geometry column), or
    is None when the geometries did not come as a table. ``times`` holds each geometry's
    ``datetime`` (UTC, ``datetime64[ns]``) when the table has that column, else None.
    """

    geometries: tuple[shapely.Geometry, ...]
    crs: pyproj.CRS
    columns: pa.Table | None = None
    times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.geometries)

    def require_times(self, why: str) -> np.ndarray:
        """Each geometry's own time, or a ValueError saying what ``why`` needs."""
        if self.times is None:
            where = ("a table without one" if self.columns is not None
                     else "geometries without a table")
            raise ValueError(f"{why} needs a table of geometries with a {TIME_COLUMN!r} column "
                             f"(timestamps, dates, ISO 8601 text or integer years); got {where}")
        return self.times

    def kept_columns(self, rows: np.ndarray, taken: set[str], prefix: str = "input_"
                     ) -> dict[str, pa.Array]:
        """The input columns for output rows that come from geometries ``rows``.

        A column whose name the output already uses (``taken``) is kept as
        ``prefix + name``; when that is taken too, ValueError.
        """
        if self.columns is None:
            return {}
        out: dict[str, pa.Array] = {}
        picked = self.columns.take(pa.array(np.asarray(rows, dtype=np.int64), pa.int64()))
        for name in self.columns.column_names:
            label = name if name not in taken else prefix + name
            if label in taken or label in out:
                raise ValueError(f"the query table's column {name!r} collides with the output's "
                                 f"columns (also as {label!r}); rename it")
            out[label] = picked[name].combine_chunks()
        return out


def _geometry_column(table: pa.Table, name: str | None) -> str:
    if name is not None:
        if name not in table.column_names:
            raise ValueError(f"geometry_column {name!r} is not a column of the query table "
                             f"(columns: {table.column_names})")
        return name
    geo = (table.schema.metadata or {}).get(b"geo")
    primary = json.loads(geo).get("primary_column") if geo else None
    if primary in table.column_names:
        return primary
    for field in table.schema:
        if isinstance(field.type, pa.ExtensionType):
            extension = field.type.extension_name
        else:
            extension = (field.metadata or {}).get(EXTENSION_NAME, b"").decode()
        if extension in _GEOMETRY_EXTENSIONS:
            return field.name
    if "geometry" in table.column_names:
        return "geometry"
    raise ValueError(f"the query table has no geometry column (columns: {table.column_names}); "
                     "name it with geometry_column=")


def _decode(table: pa.Table, name: str) -> tuple[shapely.Geometry, ...]:
    column = table.column(name)
    decoded = decode_footprints(column)
    if isinstance(decoded, str):
        raise TypeError(f"geometry column {name!r} must be WKB binary, GeoArrow WKB or WKT, "
                        f"got {column.type}; convert other encodings to WKB (shapely.to_wkb(), "
                        "or ST_AsWKB(geometry) in DuckDB)")
    if decoded.unparsable.any():
        rows = np.flatnonzero(decoded.unparsable)[:5].tolist()
        hint = f"; {NOT_WKB_HINT}" if decoded.encoding == "WKB" else ""
        raise ValueError(f"geometry column {name!r}: rows {rows} are not valid "
                         f"{decoded.encoding}{hint}")
    missing = shapely.is_missing(decoded.geoms)
    if missing.any():
        rows = np.flatnonzero(missing)[:5].tolist()
        raise ValueError(f"geometry column {name!r}: rows {rows} have no geometry (null or "
                         "empty); drop them or give them one")
    return tuple(decoded.geoms)


def _times(table: pa.Table) -> np.ndarray | None:
    if TIME_COLUMN not in table.column_names:
        return None
    problems: list[str] = []
    column = to_utc(table.column(TIME_COLUMN), TIME_COLUMN, problems.append)
    if column is None or problems:
        raise ValueError(f"query table: {'; '.join(problems)}")
    if column.null_count:
        rows = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[:5].tolist()
        raise ValueError(f"query table: column {TIME_COLUMN!r} is null at rows {rows}")
    return column.cast(pa.timestamp("ns", tz="UTC")).to_numpy().astype("datetime64[ns]")


def read_queries(geometries: Any, geometry_crs: Any = 4326,
                 geometry_column: str | None = None) -> Queries:
    """The geometries of a read, with the other columns when they come as a table.

    Parameters
    ----------
    geometries
        Anything :func:`~.select.query_geometries` takes, or a table (see :func:`is_table`).
    geometry_crs : CRS-like, default 4326
        CRS of the geometries unless they declare one (GeoSeries/GeoDataFrame CRS, GeoArrow
        extension metadata, GeoParquet ``geo`` metadata), which wins.
    geometry_column : str, optional
        The table's geometry column (default: detected as described in the module).

    Returns
    -------
    Queries

    Raises
    ------
    TypeError
        For ``geometry_column`` without a table, or a geometry column of another type.
    ValueError
        For a missing geometry column, null, empty or unparsable geometries (naming rows), or
        a ``datetime`` column that cannot be read as times or has nulls.
    """
    if not is_table(geometries):
        if geometry_column is not None:
            raise TypeError("geometry_column= names a column of a table of geometries (pyarrow, "
                            f"(geo)pandas, polars, DuckDB); got {type(geometries).__name__}")
        shapes, crs = query_geometries(geometries, geometry_crs)
        return Queries(tuple(shapes), crs)
    table = as_arrow_table(geometries)
    name = _geometry_column(table, geometry_column)
    shapes = _decode(table, name)
    declared = declared_crs(table.schema, name)
    crs = pyproj.CRS.from_user_input(geometry_crs if declared is None else declared)
    return Queries(shapes, crs, table.drop_columns([name]), _times(table))
