"""Query geometries: coerce the many forms users pass into shapely, and reproject them.

Accepted forms are listed in :func:`coerce_geometries`; Arrow WKB columns are decoded straight
from their buffers, without going through pandas.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from numbers import Real
from typing import Any

import numpy as np
import pyarrow as pa
import pyproj
import shapely

__all__ = ["coerce_geometries", "geometry_crs", "reproject_geometries", "transformer",
           "CelestialBodyError", "body_lonlat"]

_WKB_EXTENSIONS = ("geoarrow.wkb", "ogc.wkb")
_WKT_EXTENSIONS = ("geoarrow.wkt",)
_EXTENSION_KEY = b"ARROW:extension:name"
_GEOJSON_GEOMETRY_TYPES = {
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
}
# Default densification: this many segments across a geometry's larger bbox side.
_DENSIFY_PARTS = 20


def _describe(obj: object) -> str:
    text = repr(obj)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(obj).__name__} {text}"


def _geopandas_object(obj: object) -> bool:
    gpd = sys.modules.get("geopandas")
    return gpd is not None and isinstance(obj, gpd.GeoSeries | gpd.GeoDataFrame)


def _is_bbox(obj: object) -> bool:
    return (
        isinstance(obj, tuple | list | np.ndarray)
        and len(obj) == 4
        and all(isinstance(v, Real | np.number) and not isinstance(v, bool) for v in obj)
    )


def _from_bbox(bbox: Any) -> shapely.Geometry:
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    if not (minx <= maxx and miny <= maxy) or not np.isfinite([minx, miny, maxx, maxy]).all():
        raise ValueError(f"bbox must be finite (minx, miny, maxx, maxy), got {tuple(bbox)!r}")
    return shapely.box(minx, miny, maxx, maxy)


def _from_geojson(obj: Mapping) -> list[shapely.Geometry | None]:
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise ValueError("GeoJSON FeatureCollection has no 'features' list")
        return [g for f in features for g in _from_geojson(f)]
    if kind == "Feature":
        geometry = obj.get("geometry")
        return [None] if geometry is None else _from_geojson(geometry)
    if kind in _GEOJSON_GEOMETRY_TYPES:
        try:
            return [shapely.geometry.shape(obj)]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ValueError(f"invalid GeoJSON {kind}: {exc}") from exc
    raise ValueError(f"unsupported GeoJSON object with type {kind!r}: {_describe(obj)}")


def _from_arrow(arr: pa.Array | pa.ChunkedArray, extension: str | None) -> np.ndarray:
    arr = arr.drop_null()
    typ = arr.type
    if isinstance(typ, pa.ExtensionType):
        extension = typ.extension_name
        arr = (
            arr.storage
            if isinstance(arr, pa.Array)
            else pa.chunked_array([c.storage for c in arr.chunks], typ.storage_type)
        )
        typ = typ.storage_type
    is_binary = pa.types.is_binary(typ) or pa.types.is_large_binary(typ)
    is_binary = is_binary or pa.types.is_binary_view(typ)
    is_string = pa.types.is_string(typ) or pa.types.is_large_string(typ)
    is_string = is_string or pa.types.is_string_view(typ)
    if is_binary and (extension is None or extension in _WKB_EXTENSIONS):
        return shapely.from_wkb(arr.to_numpy(zero_copy_only=False))
    if is_string and (extension is None or extension in _WKT_EXTENSIONS):
        return shapely.from_wkt(arr.to_numpy(zero_copy_only=False))
    raise TypeError(
        f"Arrow geometries must be WKB (binary, geoarrow.wkb) or WKT, got type {typ}"
        + (f" with extension {extension!r}" if extension else "")
    )


def _arrow_geometry_field(table: pa.Table | pa.RecordBatch) -> tuple[str, str | None]:
    """Name and extension of a table's geometry column (GeoParquet metadata, then extension)."""
    meta = table.schema.metadata or {}
    if b"geo" in meta:
        primary = json.loads(meta[b"geo"]).get("primary_column")
        if primary in table.schema.names:
            return primary, None
    for field in table.schema:
        ext = (field.metadata or {}).get(_EXTENSION_KEY)
        if isinstance(field.type, pa.ExtensionType):
            ext = field.type.extension_name.encode()
        if ext is not None and ext.decode() in _WKB_EXTENSIONS + _WKT_EXTENSIONS:
            return field.name, ext.decode()
    if "geometry" in table.schema.names:
        return "geometry", None
    raise TypeError(f"Arrow table has no geometry column (columns: {table.schema.names})")


def _one(obj: object) -> list[shapely.Geometry | None]:
    """Geometries of one element of a sequence (or of a scalar input)."""
    if obj is None or isinstance(obj, shapely.Geometry):
        return [obj]
    if isinstance(obj, bytes | bytearray | memoryview):
        try:
            return [shapely.from_wkb(bytes(obj))]
        except shapely.errors.GEOSException as exc:
            raise ValueError(f"invalid WKB ({len(bytes(obj))} bytes): {exc}") from exc
    if isinstance(obj, str):
        try:
            return [shapely.from_wkt(obj)]
        except shapely.errors.GEOSException as exc:
            raise ValueError(f"invalid WKT {obj[:60]!r}: {exc}") from exc
    if isinstance(obj, Mapping):
        return _from_geojson(obj)
    if _is_bbox(obj):
        return [_from_bbox(obj)]
    if hasattr(obj, "__geo_interface__"):
        return _from_geojson(obj.__geo_interface__)
    raise TypeError(
        "expected a shapely geometry, WKB bytes, WKT, a GeoJSON mapping or a 4-number bbox, "
        f"got {_describe(obj)}"
    )


def _collect(geometries: Any) -> list[shapely.Geometry | None]:
    if isinstance(geometries, pa.ChunkedArray | pa.Array):
        return list(_from_arrow(geometries, None))
    if isinstance(geometries, pa.Table | pa.RecordBatch):
        name, extension = _arrow_geometry_field(geometries)
        return list(_from_arrow(geometries.column(name), extension))
    if _geopandas_object(geometries):
        series = geometries.geometry if hasattr(geometries, "geometry") else geometries
        return list(np.asarray(series.values, dtype=object))
    if _is_bbox(geometries):
        return [_from_bbox(geometries)]
    if isinstance(geometries, np.ndarray) and geometries.dtype != object:
        raise TypeError(
            f"expected a 4-number bbox or an object array of geometries, got an array of "
            f"dtype {geometries.dtype} and shape {geometries.shape}"
        )
    if isinstance(geometries, list | tuple | np.ndarray):
        return [g for item in geometries for g in _one(item)]
    return _one(geometries)


def coerce_geometries(geometries: Any) -> list[shapely.Geometry]:
    """Shapely geometries from any supported input form; nulls and empty geometries are dropped.

    Accepts a shapely geometry, WKB bytes, WKT, a GeoJSON geometry/Feature/FeatureCollection
    (or anything with ``__geo_interface__``), a 4-number bbox (minx, miny, maxx, maxy), a
    list/tuple/array of those, a GeoSeries/GeoDataFrame, or an Arrow array/chunked array/table
    of WKB (plain binary or ``geoarrow.wkb``).
    """
    if geometries is None:
        raise TypeError("expected geometries, got None")
    found = _collect(geometries)
    result = [g for g in found if g is not None and not shapely.is_empty(g)]
    if not result:
        raise ValueError(f"no non-empty geometry in {_describe(geometries)}")
    return result


def geometry_crs(geometries: Any) -> pyproj.CRS | None:
    """The CRS carried by a GeoSeries/GeoDataFrame or a GeoParquet Arrow table, else None."""
    if _geopandas_object(geometries):
        crs = geometries.crs
        return None if crs is None else pyproj.CRS.from_user_input(crs)
    if isinstance(geometries, pa.Table | pa.RecordBatch):
        meta = geometries.schema.metadata or {}
        if b"geo" not in meta:
            return None
        geo = json.loads(meta[b"geo"])
        column = geo.get("columns", {}).get(geo.get("primary_column"), {})
        if "crs" not in column:
            return pyproj.CRS.from_user_input("OGC:CRS84")  # GeoParquet's default
        crs = column["crs"]
        return None if crs is None else pyproj.CRS.from_user_input(crs)
    return None


@lru_cache(maxsize=64)
def _crs(key: Any) -> pyproj.CRS:
    return pyproj.CRS.from_user_input(key)


def _as_crs(crs: Any) -> pyproj.CRS:
    if isinstance(crs, pyproj.CRS):
        return crs
    if isinstance(crs, Real) and not isinstance(crs, bool):
        return _crs(f"EPSG:{int(crs)}")
    try:
        return _crs(crs)
    except TypeError:  # unhashable input (e.g. a PROJJSON dict): no cache
        return pyproj.CRS.from_user_input(crs)


class CelestialBodyError(ValueError):
    """Two CRSs on different celestial bodies (Earth and Mars, ...): PROJ transforms nothing
    between them. ``bodies`` names them as PROJ does, when it says."""

    def __init__(self, message: str, bodies: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.bodies = bodies


_BODIES = re.compile(r"celestial body \(([^()]+) vs ([^()]+)\)")


@lru_cache(maxsize=128)
def _transformer(src: pyproj.CRS, dst: pyproj.CRS) -> pyproj.Transformer:
    try:
        return pyproj.Transformer.from_crs(src, dst, always_xy=True)
    except pyproj.exceptions.ProjError as exc:
        found = _BODIES.search(str(exc))
        if found is None:
            raise
        bodies = (found.group(1).strip(), found.group(2).strip())
        raise CelestialBodyError(
            f"{_named(src)} ({bodies[0]}) and {_named(dst)} ({bodies[1]}) are on different "
            "celestial bodies: no transformation exists between them", bodies) from None


def _named(crs: pyproj.CRS) -> str:
    code = crs.to_epsg(min_confidence=100)
    return f"EPSG:{code}" if code is not None else repr(crs.name)


def transformer(src_crs: Any, dst_crs: Any) -> pyproj.Transformer:
    """The (cached) x, y-ordered transformer from ``src_crs`` to ``dst_crs`` (CRS-like).

    Raises
    ------
    CelestialBodyError
        When the two CRSs are on different celestial bodies.
    """
    return _transformer(_as_crs(src_crs), _as_crs(dst_crs))


def body_lonlat(crs: Any) -> pyproj.CRS:
    """The geographic CRS of a CRS's own body and datum (its ``geodetic_crs``), for footprints
    and index queries of records on another body than Earth (used x, y: longitude first)."""
    crs = _as_crs(crs)
    return crs.geodetic_crs or crs


def reproject_geometries(
    geoms: Iterable[shapely.Geometry],
    src_crs: Any,
    dst_crs: Any,
    *,
    densify: float | None = None,
) -> list[shapely.Geometry]:
    """Reproject shapely geometries from ``src_crs`` to ``dst_crs`` (axis order x, y).

    Edges are first split into segments no longer than ``densify`` (source CRS units; default
    1/20 of each geometry's larger bbox side; 0 disables) so that they bend as they should.

    Raises
    ------
    CelestialBodyError
        When the CRSs are on different celestial bodies (a ValueError).
    ValueError
        When the result has non-finite coordinates.
    """
    geoms = list(geoms)
    src, dst = _as_crs(src_crs), _as_crs(dst_crs)
    if src == dst or not geoms:
        return geoms
    array = np.asarray(geoms, dtype=object)
    if densify is None:
        bounds = shapely.bounds(array)
        extent = np.fmax(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
        lengths = extent / _DENSIFY_PARTS
    else:
        if densify < 0:
            raise ValueError(f"densify must be >= 0, got {densify}")
        lengths = np.full(len(array), float(densify))
    todo = np.isfinite(lengths) & (lengths > 0)
    if todo.any():
        array = array.copy()
        array[todo] = shapely.segmentize(array[todo], lengths[todo])
    transformer = _transformer(src, dst)
    out = shapely.transform(array, transformer.transform, interleaved=False)
    coords = shapely.get_coordinates(out)
    if not np.isfinite(coords).all():
        raise ValueError(
            f"reprojection from {src.to_string()} to {dst.to_string()} gave non-finite "
            "coordinates (geometry outside the target CRS's domain?)"
        )
    return list(out)
