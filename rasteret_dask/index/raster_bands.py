"""The ``raster_bands`` column: each band's scale, offset, nodata and data type, as STAC
describes them, taken from item assets at ingest and read back per record. Pure: no I/O.

Where a band's description comes from (``schema`` documents the column):

- its asset's ``raster:bands`` list (STAC raster extension 1.x) or STAC 1.1's ``bands`` list:
  the entry at the band's ``band_index`` (the first for a single-band asset);
- the asset itself (STAC 1.1 common metadata ``nodata``, ``data_type``; ``scale``/``offset``
  or the raster extension 2.0's ``raster:scale``/``raster:offset``), for fields the band entry
  does not give.

Items arrive as dicts (:func:`raster_bands_of_items`, from ``ingest.stac_items``) or as the
``assets`` column of a table (:func:`raster_bands_of_assets`: stac-geoparquet's struct of
asset structs, a map, or JSON text), before the assets are reduced to href and band index.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S
from ..redact import redact_url

__all__ = ["BandScaling", "band_scaling", "scaling_of_asset", "raster_bands_of_items",
           "raster_bands_of_assets", "raster_bands_array"]

_BAND_LISTS = ("raster:bands", "bands")
_KEYS = {"scale": ("scale", "raster:scale"), "offset": ("offset", "raster:offset"),
         "nodata": ("nodata",), "data_type": ("data_type",)}
_ASSET_FIELDS = ("href", "band_index", *_BAND_LISTS, *{k for ks in _KEYS.values() for k in ks})
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


@dataclass(frozen=True)
class BandScaling:
    """How one band's stored values map to physical ones, per its STAC description: physical
    = ``raw * scale + offset`` (a missing scale is 1, a missing offset 0); ``nodata`` marks
    missing pixels; ``data_type`` is STAC's name of the stored type (``"uint16"``)."""

    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None
    data_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The value as a ``schema.BAND_SCALING_TYPE`` struct."""
        return {"scale": self.scale, "offset": self.offset, "nodata": self.nodata,
                "data_type": self.data_type}


def _number(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{where}: {what} {value!r} is not a number")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _NON_FINITE:
            return _NON_FINITE[text]
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{where}: {what} {value!r} is not a number") from None
    return float(value)


def _band_entry(asset: Mapping[str, Any], key: str, band_index: int,
                where: str) -> Mapping[str, Any]:
    entries = asset.get(key)
    if entries is None:
        return {}
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise ValueError(f"{where}: {key} is not a list")
    if band_index >= len(entries) or entries[band_index] is None:
        return {}
    entry = entries[band_index]
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: {key}[{band_index}] is not an object")
    return entry


def scaling_of_asset(asset: Mapping[str, Any], band_index: int = 0, *,
                     where: str = "") -> BandScaling | None:
    """The description of the band at ``band_index`` of a STAC asset dict, None when the
    asset describes none of its fields.

    Parameters
    ----------
    asset : mapping
        A STAC asset (``href``, ``raster:bands`` / ``bands``, ``nodata``, ...).
    band_index : int
        The band's sample index in the asset's file.
    where : str
        Names the record and band in an error message (the asset's href is added).

    Raises
    ------
    ValueError
        For a scale, offset or nodata that is not a number ("nan", "inf" and "-inf" are),
        a data type that is not text, or a band list that is not a list of objects.
    """
    href = asset.get("href")
    place = ", ".join(p for p in (where, f"href {redact_url(href)}" if href else "") if p)
    sources = [_band_entry(asset, key, band_index, place) for key in _BAND_LISTS] + [asset]
    found: dict[str, Any] = {}
    for name, keys in _KEYS.items():
        value = next((source[k] for source in sources for k in keys
                      if source.get(k) is not None), None)
        if value is None:
            continue
        if name == "data_type":
            if not isinstance(value, str):
                raise ValueError(f"{place}: data_type {value!r} is not text")
            found[name] = value
        else:
            found[name] = _number(value, name, place)
    return BandScaling(**found) if found else None


def raster_bands_array(rows: Sequence[Mapping[str, BandScaling] | None]) -> pa.Array:
    """A ``raster_bands`` column (``schema.RASTER_BANDS_TYPE``): one band -> description map
    per record (null for None or an empty mapping)."""
    values = [None if not row else [(band, scaling.to_dict()) for band, scaling in row.items()]
              for row in rows]
    return pa.array(values, type=S.RASTER_BANDS_TYPE)


def raster_bands_of_items(items: Sequence[Mapping[str, Any]], band_map: Mapping[str, str],
                          band_index_map: Mapping[str, int]) -> pa.Array | None:
    """The ``raster_bands`` column of STAC item dicts, one row per item; ``band_map`` is band
    -> asset key. None when no item describes any band."""
    rows: list[dict[str, BandScaling]] = []
    for item in items:
        assets = item.get("assets") or {}
        row = {}
        for band, key in band_map.items():
            asset = assets.get(key)
            if isinstance(asset, Mapping):
                where = f"record {item.get('id')!r}, band {band!r}"
                scaling = scaling_of_asset(asset, int(band_index_map.get(band, 0)), where=where)
                if scaling is not None:
                    row[band] = scaling
        rows.append(row)
    return raster_bands_array(rows) if any(rows) else None


def _project(array: pa.Array, keep: Callable[[str], bool]) -> pa.Array:
    """A struct array (or list of structs) with only the children ``keep`` accepts."""
    if pa.types.is_struct(array.type):
        names = [f.name for f in array.type if keep(f.name)]
        children = [_project(array.field(n), lambda _: True) for n in names]
        if not names:
            return pa.nulls(len(array), pa.struct([]))
        return pa.StructArray.from_arrays(children, names=names, mask=array.is_null())
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        values = array.values
        if pa.types.is_struct(values.type):
            wanted = {k for ks in _KEYS.values() for k in ks}
            values = _project(values, wanted.__contains__)
        return type(array).from_arrays(array.offsets, values, mask=array.is_null())
    return array


def _rows_of(assets: pa.ChunkedArray) -> list[Mapping[str, Any] | None]:
    """Each record's assets as dicts of the fields a description may use."""
    kind = assets.type
    if pa.types.is_struct(kind):
        array = assets.combine_chunks()
        described = [f.name for f in kind if pa.types.is_struct(f.type)]
        projected = pa.StructArray.from_arrays(
            [_project(array.field(n), _ASSET_FIELDS.__contains__) for n in described],
            names=described, mask=array.is_null()) if described else None
        return projected.to_pylist() if projected is not None else [None] * len(array)
    if pa.types.is_map(kind):
        return [None if v is None else dict(v) for v in assets.to_pylist()]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        rows = []
        for text in assets.to_pylist():
            try:
                rows.append(None if text is None else json.loads(text))
            except json.JSONDecodeError:
                rows.append(None)  # normalize_table reports the bad JSON
        return rows
    return [None] * len(assets)


def raster_bands_of_assets(assets: pa.ChunkedArray | pa.Array,
                           ids: Sequence[Any]) -> pa.Array | None:
    """The ``raster_bands`` column of a table's ``assets`` (before they are reduced to href and
    band index): each asset key is a band, its ``band_index`` (0 when absent) selects the
    band entry. None when no asset describes any band.

    Raises
    ------
    ValueError
        For a value :func:`scaling_of_asset` refuses, naming the record (``ids``) and band.
    """
    if isinstance(assets, pa.Array):
        assets = pa.chunked_array([assets])
    rows: list[dict[str, BandScaling]] = []
    for record, value in zip(ids, _rows_of(assets), strict=True):
        row = {}
        for band, asset in (value or {}).items():
            if not isinstance(asset, Mapping):
                continue
            index = int(asset.get("band_index") or 0)
            scaling = scaling_of_asset(asset, index, where=f"record {record!r}, band {band!r}")
            if scaling is not None:
                row[band] = scaling
        rows.append(row)
    return raster_bands_array(rows) if any(rows) else None


def band_scaling(table: pa.Table, band: str) -> list[BandScaling | None]:
    """Each record's description of ``band`` (None where it has none, and for every record
    of a table without a ``raster_bands`` column).

    Raises
    ------
    ValueError
        When the table's ``raster_bands`` column is not a map of descriptions.
    """
    if S.RASTER_BANDS not in table.column_names:
        return [None] * table.num_rows
    column = table[S.RASTER_BANDS]
    if column.type != S.RASTER_BANDS_TYPE:
        raise ValueError(f"column {S.RASTER_BANDS!r} must be {S.RASTER_BANDS_TYPE}, got "
                         f"{column.type}")
    found = pc.map_lookup(column, pa.scalar(band, pa.string()), "first")
    return [None if v is None else BandScaling(**v) for v in found.to_pylist()]
