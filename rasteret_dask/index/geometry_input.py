"""The footprint column of an input table: decoding, its declared CRS, reprojection to CRS84.

Footprints come as WKB (plain binary or ``geoarrow.wkb``), WKT (plain string or
``geoarrow.wkt``) or nulls. Their CRS is the one the column declares: the GeoArrow extension
metadata (``{"crs": <PROJJSON | WKT | "EPSG:3857" ...>}``, also what a GeoDataFrame's CRS
becomes in ``index.inputs``) or the GeoParquet ``geo`` schema metadata (a column listed there
without ``crs`` is OGC:CRS84, GeoParquet's default). Footprints in another CRS are reprojected
to CRS84 with their edges densified (``plan.geometry.reproject_geometries``); WKB without a
declared CRS stays as given (CRS84). A null or empty footprint is a record without one:
enrichment fills it from the record's header (``index.normalize.fill_missing_footprints``).
Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyproj
import shapely

from .inputs import EXTENSION_METADATA, EXTENSION_NAME

__all__ = ["DecodedFootprints", "CRS84", "declared_crs", "decode_footprints", "to_crs84",
           "NOT_WKB_HINT"]

CRS84 = pyproj.CRS.from_user_input("OGC:CRS84")
NOT_WKB_HINT = ("binary values that are not WKB (DuckDB's internal GEOMETRY blobs, for "
                "example): convert them to WKB first, e.g. ST_AsWKB(geometry) in DuckDB or "
                "shapely.to_wkb()")
_GEO_KEY = b"geo"


@dataclass(frozen=True)
class DecodedFootprints:
    """Shapely footprints (None where a record has none) and the rows that failed to parse."""

    geoms: np.ndarray
    unparsable: np.ndarray
    encoding: str


def _extension(field: pa.Field) -> tuple[str | None, bytes | None]:
    """(extension name, serialized extension metadata) of a field, registered type or not."""
    if isinstance(field.type, pa.ExtensionType):
        return field.type.extension_name, field.type.__arrow_ext_serialize__()
    metadata = field.metadata or {}
    name = metadata.get(EXTENSION_NAME)
    return (name.decode() if name else None), metadata.get(EXTENSION_METADATA)


def _parse_crs(value: Any, where: str) -> pyproj.CRS | None:
    if value is None or value == "":
        return None
    try:
        return pyproj.CRS.from_user_input(value)
    except pyproj.exceptions.CRSError as exc:
        shown = json.dumps(value)[:80] if isinstance(value, dict) else repr(value)[:80]
        raise ValueError(f"column {where} declares the CRS {shown}, which pyproj cannot "
                         f"read: {exc}") from exc


def declared_crs(schema: pa.Schema, name: str) -> pyproj.CRS | None:
    """The CRS the geometry column ``name`` declares, or None when it declares none.

    Parameters
    ----------
    schema : pyarrow.Schema
        The input table's schema (field and schema metadata).
    name : str
        The geometry column.

    Returns
    -------
    pyproj.CRS or None

    Raises
    ------
    ValueError
        When the declared CRS cannot be read.
    """
    field = schema.field(name)
    extension, metadata = _extension(field)
    if extension in ("geoarrow.wkb", "geoarrow.wkt", "ogc.wkb") and metadata:
        try:
            document = json.loads(metadata)
        except (ValueError, UnicodeDecodeError):
            document = {}
        if isinstance(document, dict) and document.get("crs") is not None:
            return _parse_crs(document["crs"], f"{name!r} (GeoArrow metadata)")
    geo = (schema.metadata or {}).get(_GEO_KEY)
    if geo:
        try:
            columns = json.loads(geo).get("columns") or {}
        except (ValueError, AttributeError):
            columns = {}
        column = columns.get(name) if isinstance(columns, dict) else None
        primary = json.loads(geo).get("primary_column") if column is None else None
        if column is None and primary not in schema.names and isinstance(primary, str):
            column = columns.get(primary)  # the primary column was renamed to ``name``
        if isinstance(column, dict):
            if "crs" not in column:
                return CRS84  # GeoParquet's default
            return _parse_crs(column["crs"], f"{name!r} (GeoParquet metadata)")
    return None


def is_crs84(crs: pyproj.CRS | None) -> bool:
    """Whether ``crs`` is longitude/latitude on WGS 84 (EPSG:4326 in either axis order)."""
    return crs is None or crs.equals(CRS84, ignore_axis_order=True)


def decode_footprints(column: pa.ChunkedArray) -> DecodedFootprints | str:
    """Shapely footprints of a geometry column, or a message saying why the type is refused.

    Parameters
    ----------
    column : pyarrow.ChunkedArray
        WKB (binary, large binary, binary view, ``geoarrow.wkb``), WKT (string types,
        ``geoarrow.wkt``) or an all-null column.

    Returns
    -------
    DecodedFootprints or str
        Empty geometries count as missing (None); values that do not parse are flagged in
        ``unparsable``.
    """
    t = column.type
    if isinstance(t, pa.ExtensionType):
        column = pa.chunked_array([c.storage for c in column.chunks], type=t.storage_type)
        t = column.type
    if pa.types.is_null(t):
        empty = np.zeros(len(column), dtype=bool)
        return DecodedFootprints(np.full(len(column), None, dtype=object), empty, "null")
    values = column.to_numpy(zero_copy_only=False)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        geoms, encoding = shapely.from_wkb(values, on_invalid="ignore"), "WKB"
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        geoms, encoding = shapely.from_wkt(values, on_invalid="ignore"), "WKT"
    else:
        return (f"column 'geometry' must be WKB binary, GeoArrow WKB or WKT, got {t}; "
                "convert other encodings to WKB (shapely.to_wkb(), or ST_AsWKB(geometry) in "
                "DuckDB)")
    given = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    unparsable = given & shapely.is_missing(geoms)
    geoms = np.where(shapely.is_empty(geoms), None, geoms)
    return DecodedFootprints(np.asarray(geoms, dtype=object), unparsable, encoding)


def to_crs84(geoms: np.ndarray, crs: pyproj.CRS) -> tuple[np.ndarray, int | None]:
    """Footprints reprojected from ``crs`` to CRS84 (edges densified); nulls stay null.

    Parameters
    ----------
    geoms : numpy.ndarray
        Shapely geometries (None where missing) in ``crs``.
    crs : pyproj.CRS
        Their CRS.

    Returns
    -------
    (numpy.ndarray, int or None)
        The reprojected footprints, and the first row that could not be reprojected (outside
        the CRS's domain: non-finite coordinates) or None. A failed row keeps its input.
    """
    from ..plan.geometry import reproject_geometries

    geoms = np.asarray(geoms, dtype=object).copy()
    present = np.flatnonzero(~shapely.is_missing(geoms))
    if not len(present) or is_crs84(crs):
        return geoms, None
    try:
        geoms[present] = reproject_geometries(list(geoms[present]), crs, CRS84)
        return geoms, None
    except ValueError:
        pass
    for row in present:  # find the first footprint outside the CRS's domain
        try:
            geoms[row] = reproject_geometries([geoms[row]], crs, CRS84)[0]
        except ValueError:
            return geoms, int(row)
    return geoms, None
