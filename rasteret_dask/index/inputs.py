"""Tabular inputs as one ``pyarrow.Table``: Arrow objects, the Arrow PyCapsule protocol,
(geo)pandas frames.

A GeoDataFrame's geometry columns become WKB marked ``geoarrow.wkb`` with the frame's CRS in
the GeoArrow extension metadata, so normalisation reprojects them like any GeoArrow column;
its active geometry column is called ``geometry`` when the frame has no column of that name.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from .. import schema as S

__all__ = ["as_arrow_table", "GEOARROW_WKB", "EXTENSION_NAME", "EXTENSION_METADATA"]

GEOARROW_WKB = "geoarrow.wkb"
EXTENSION_NAME = b"ARROW:extension:name"
EXTENSION_METADATA = b"ARROW:extension:metadata"

_ACCEPTED = ("a pyarrow Table, RecordBatch or RecordBatchReader, a (geo)pandas DataFrame, or "
             "an object with __arrow_c_stream__ or __arrow_c_array__ (polars, DuckDB, ...)")


def _wkb_field(name: str, crs: Any) -> pa.Field:
    """A WKB field marked ``geoarrow.wkb``, with ``crs`` as PROJJSON when there is one."""
    metadata: dict[str, Any] = {}
    if crs is not None:
        import pyproj

        metadata["crs"] = pyproj.CRS.from_user_input(crs).to_json_dict()
        metadata["crs_type"] = "projjson"
    return pa.field(name, pa.binary(), metadata={EXTENSION_NAME: GEOARROW_WKB.encode(),
                                                 EXTENSION_METADATA: json.dumps(metadata).encode()})


def _from_frame(data: Any) -> pa.Table:
    """A (geo)pandas frame: shapely and geometry-dtype columns as WKB (with their CRS)."""
    import pandas as pd

    frame = pd.DataFrame(data).copy()
    active = getattr(data, "_geometry_column_name", None)
    geometry_fields: dict[str, pa.Field] = {}
    for column in frame.columns:
        values = frame[column]
        is_geometry = str(values.dtype) == "geometry"
        if not is_geometry and values.dtype == object:
            sample = values.dropna()
            is_geometry = bool(len(sample)) and isinstance(sample.iloc[0], shapely.Geometry)
        if not is_geometry:
            continue
        original = data[column] if column in getattr(data, "columns", ()) else values
        crs = getattr(original, "crs", None) if str(values.dtype) == "geometry" else None
        frame[column] = shapely.to_wkb(np.asarray(values, dtype=object))
        name = S.GEOMETRY if column == active and S.GEOMETRY not in frame.columns else column
        geometry_fields[column] = _wkb_field(name, crs)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for column, field in geometry_fields.items():
        index = table.schema.get_field_index(column)
        table = table.set_column(index, field, table.column(index).cast(pa.binary()))
    return table


def as_arrow_table(data: Any) -> pa.Table:
    """``data`` as a ``pa.Table``.

    Parameters
    ----------
    data : table-like
        A pyarrow Table, RecordBatch or RecordBatchReader; a pandas or geopandas DataFrame;
        or any object implementing the Arrow PyCapsule protocol (``__arrow_c_stream__``, as
        polars and DuckDB relations do, or ``__arrow_c_array__`` for a record batch).

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    TypeError
        For anything else (the message lists what is accepted).
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas ships with the dependencies
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return _from_frame(data)
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    if hasattr(data, "__arrow_c_array__"):
        batch = pa.record_batch(data)
        return pa.Table.from_batches([batch])
    raise TypeError(f"expected {_ACCEPTED}; got {type(data).__name__}")
