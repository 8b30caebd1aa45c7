"""STAC items (dicts) -> Arrow rows of the index contract (pure, no I/O).

``id``, ``datetime`` (plus ``start_datetime``/``end_datetime`` when given), the footprint as
WKB (null for an item without geometry), ``assets`` band code -> {href, band_index} through a
band map, ``collection``, ``proj:epsg`` (from ``proj:code``, else ``proj:epsg``, on the item
or its assets), ``raster_bands`` (each band's scale, offset, nodata and data type from its
asset, ``index.raster_bands``; only when an item describes one), and every other item property as its own column (``eo:cloud_cover``,
``platform``, ``s2:mgrs_tile``...). :func:`item_dicts` recognises the forms items come in
(pystac ``ItemCollection`` and ``Item``, item dicts, a FeatureCollection).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import shapely

from .. import schema as S
from ..index.raster_bands import raster_bands_of_items

__all__ = ["items_to_table", "item_dicts", "data_asset_keys", "item_epsg", "conform_assets",
           "RESERVED"]

_TIME_PROPS = (S.DATETIME, S.START_DATETIME, S.END_DATETIME)
RESERVED = frozenset({S.ID, S.GEOMETRY, S.ASSETS, "collection", S.EPSG, S.YEAR, S.MONTH,
                      S.SCENE_BBOX, S.BBOX_STRUCT, *S.BBOX_COLUMNS, *_TIME_PROPS,
                      S.RASTER_BANDS})
_EPSG_CODE = re.compile(r"^EPSG:(\d+)$", re.IGNORECASE)
_RASTER_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")


def _epsg_from(fields: Mapping[str, Any]) -> int | None:
    """``proj:code`` (projection v2) first, a possibly stale ``proj:epsg`` second."""
    code = fields.get("proj:code")
    if isinstance(code, str):
        match = _EPSG_CODE.match(code.strip())
        if match:
            return int(match.group(1))
    value = fields.get("proj:epsg")
    if isinstance(value, int | float) and not isinstance(value, bool) and value:
        return int(value)
    return None


def _is_item(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("type") == "Feature" and "assets" in value


def item_dicts(obj: Any) -> list[dict] | None:
    """STAC items as dicts when ``obj`` is a form of items, else None.

    Parameters
    ----------
    obj : Any
        A pystac ``ItemCollection`` or ``Item``, a list/tuple of pystac ``Item``s or item
        dicts, or a GeoJSON FeatureCollection dict of items.

    Returns
    -------
    list of dict or None
        None for anything that is not items (tables, frames...).
    """
    import pystac

    if isinstance(obj, pystac.ItemCollection):
        return [item.to_dict() for item in obj]
    if isinstance(obj, pystac.Item):
        return [obj.to_dict()]
    if isinstance(obj, Mapping):
        if obj.get("type") == "FeatureCollection" and isinstance(obj.get("features"), list):
            return [dict(f) for f in obj["features"]]
        return [dict(obj)] if _is_item(obj) else None
    if isinstance(obj, list | tuple) and obj:
        if all(isinstance(v, pystac.Item) for v in obj):
            return [v.to_dict() for v in obj]
        if all(_is_item(v) for v in obj):
            return [dict(v) for v in obj]
    return None


def item_epsg(item: Mapping[str, Any], asset_keys: Iterable[str] = ()) -> int | None:
    """The item's EPSG code: its properties first, then its (band) assets."""
    epsg = _epsg_from(item.get("properties") or {})
    if epsg is not None:
        return epsg
    assets = item.get("assets") or {}
    for key in list(asset_keys) + list(assets):
        asset = assets.get(key)
        if isinstance(asset, Mapping):
            epsg = _epsg_from(asset)
            if epsg is not None:
                return epsg
    return None


def _is_raster(asset: Mapping[str, Any]) -> bool:
    media = str(asset.get("type") or "").lower()
    href = str(asset.get("href") or "").lower().split("?", 1)[0]
    roles = asset.get("roles") or []
    raster = media.startswith(_RASTER_TYPES) or href.endswith((".tif", ".tiff"))
    return raster and ("data" in roles or not roles)


def data_asset_keys(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys of GeoTIFF data assets across items, in first-seen order (no band map given)."""
    keys: dict[str, None] = {}
    for item in items:
        for key, asset in (item.get("assets") or {}).items():
            if isinstance(asset, Mapping) and _is_raster(asset):
                keys.setdefault(key, None)
    return list(keys)


def _rewrite(href: str | None, patterns: Mapping[str, str]) -> str | None:
    if href is None:
        return None
    for old, new in patterns.items():
        if href.startswith(old):
            return new + href[len(old):]
    return href


def _assets_column(items: Sequence[Mapping[str, Any]], band_map: Mapping[str, str],
                   band_index_map: Mapping[str, int], patterns: Mapping[str, str]) -> pa.Array:
    fields = []
    for band, key in band_map.items():
        hrefs = []
        for item in items:
            asset = (item.get("assets") or {}).get(key)
            href = asset.get("href") if isinstance(asset, Mapping) else None
            hrefs.append(_rewrite(href, patterns))
        href_array = pa.array(hrefs, pa.string())
        index = pa.array([int(band_index_map.get(band, 0))] * len(items), pa.int32())
        fields.append(pa.StructArray.from_arrays([href_array, index], fields=list(S.ASSET_TYPE),
                                                 mask=href_array.is_null()))
    return pa.StructArray.from_arrays(fields, names=list(band_map)) if fields else \
        pa.array([{}] * len(items), pa.struct([]))


def _property_column(values: list[Any]) -> pa.Array:
    """Arrow's own inference; JSON text when values do not share one type."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())


def _timestamps(values: list[Any], name: str) -> pa.Array:
    raw = pa.array([None if v in (None, "") else str(v) for v in values], pa.string())
    try:
        return raw.cast(S.DATETIME_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"STAC items have an unparseable {name!r}: {exc}") from exc


def items_to_table(
    items: Sequence[Mapping[str, Any]],
    *,
    band_map: Mapping[str, str] | None = None,
    band_index_map: Mapping[str, int] | None = None,
    url_rewrite_patterns: Mapping[str, str] | None = None,
) -> pa.Table:
    """One row per item; ``band_map`` (band code -> asset key) defaults to the data assets."""
    if band_map is None:
        band_map = {key: key for key in data_asset_keys(items)}
    band_index_map = band_index_map or {}
    props = [item.get("properties") or {} for item in items]
    columns: dict[str, pa.Array] = {
        S.ID: pa.array([item.get("id") for item in items], pa.string()),
    }
    for name in _TIME_PROPS:
        values = [p.get(name) for p in props]
        if name == S.DATETIME or any(v is not None for v in values):
            columns[name] = _timestamps(values, name)
    geojson = [json.dumps(item.get("geometry")) if item.get("geometry") else None
               for item in items]
    columns[S.GEOMETRY] = pa.array(shapely.to_wkb(shapely.from_geojson(geojson)), pa.binary())
    columns[S.ASSETS] = _assets_column(items, band_map, band_index_map,
                                       url_rewrite_patterns or {})
    columns["collection"] = pa.array([item.get("collection") for item in items], pa.string())
    columns[S.EPSG] = pa.array([item_epsg(item, band_map.values()) for item in items], pa.int32())
    raster_bands = raster_bands_of_items(items, band_map, band_index_map)
    if raster_bands is not None:
        columns[S.RASTER_BANDS] = raster_bands
    names: dict[str, None] = {}
    for p in props:
        names.update(dict.fromkeys(k for k in p if k not in RESERVED))
    for name in names:
        columns[name] = _property_column([p.get(name) for p in props])
    return pa.table(columns)


def conform_assets(column: pa.ChunkedArray | pa.Array, bands: Sequence[str]) -> pa.Array:
    """Give an assets struct exactly ``bands`` as fields (missing ones null), in that order."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    present = {f.name: i for i, f in enumerate(array.type)}
    fields = []
    for band in bands:
        if band in present:
            fields.append(array.field(present[band]))
        else:
            fields.append(pa.nulls(len(array), S.ASSET_TYPE))
    return pa.StructArray.from_arrays(fields, names=list(bands))
