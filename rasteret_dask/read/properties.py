"""``properties=``: index columns as coordinates along a read's time axis (stackstac's option).

Each time step takes the value of its first record in fusion order (one record per step
without ``groupby``). ``True`` takes every scalar column of the index except the contract's own
(id, time, footprint, assets, bboxes, partitions, metadata, errors); a list takes those columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xarray as xr

from .. import schema as S

__all__ = ["property_columns", "attach_properties"]

_OWN = {S.ID, S.DATETIME, S.GEOMETRY, S.ASSETS, S.SCENE_BBOX, S.YEAR, S.MONTH,
        S.ENRICH_ERRORS, S.RASTER_BANDS, "bbox", "geometry_bbox", *S.BBOX_COLUMNS}


def property_columns(schema: pa.Schema, properties: bool | Sequence[str] | str | None
                     ) -> list[str]:
    """The columns ``properties=`` names in ``schema``.

    Raises
    ------
    ValueError
        For a column the index does not have, or one that is not a scalar.
    """
    if not properties:
        return []
    if properties is True:
        return [f.name for f in schema if f.name not in _OWN
                and not S.is_metadata_column(f.name, f.type)
                and not pa.types.is_nested(f.type) and not pa.types.is_binary(f.type)]
    names = [properties] if isinstance(properties, str) else list(properties)
    for name in names:
        if name not in schema.names:
            raise ValueError(f"properties: the index has no column {name!r}")
        if pa.types.is_nested(schema.field(name).type):
            raise ValueError(f"properties: column {name!r} is not a scalar "
                             f"({schema.field(name).type})")
    return names


def attach_properties(ds: xr.Dataset, collection: Any, columns: Sequence[str],
                      first_ids: Sequence[str]) -> xr.Dataset:
    """``ds`` with one ``time`` coordinate per column: the value of each step's first record
    (``first_ids``, one per time step)."""
    if not columns:
        return ds
    wanted = pa.array(sorted(set(first_ids)), pa.string())
    table = collection.dataset.to_table(columns=[S.ID, *columns],
                                        filter=pc.field(S.ID).isin(wanted))
    row_of = {rid: k for k, rid in enumerate(table[S.ID].to_pylist())}
    rows = pa.array([row_of.get(rid) for rid in first_ids], pa.int64())
    coords = {}
    for name in columns:
        if name in ds.coords or name in ds.data_vars:
            continue
        values = table[name].combine_chunks().take(rows)
        array = values.to_numpy(zero_copy_only=False)
        if array.dtype.kind in "OUS":
            array = np.array(values.to_pylist(), dtype=object)
        coords[name] = ("time", array)
    return ds.assign_coords(coords)
