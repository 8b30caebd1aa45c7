"""GeoParquet 1.1 ``geo`` metadata and the collection's own metadata in the Parquet schema.

The ``geo`` key makes the index readable as is by geopandas, DuckDB, GDAL and dask-geopandas;
the ``rasteret_dask`` key carries the collection's name, data source, description, date range,
bands and format version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from .. import schema as S
from .footprints import union_bounds

__all__ = [
    "GEO_KEY",
    "COLLECTION_KEY",
    "CollectionInfo",
    "geo_metadata",
    "with_metadata",
    "read_collection_info",
]

GEO_KEY = b"geo"
COLLECTION_KEY = b"rasteret_dask"
GEOPARQUET_VERSION = "1.1.0"


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection says about itself, stored in the Parquet schema metadata."""

    name: str
    data_source: str | None = None
    description: str | None = None
    date_range: tuple[str, str] | None = None
    bands: tuple[str, ...] = ()
    format_version: str = S.FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), default=list).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> CollectionInfo:
        data = json.loads(raw)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if known.get("date_range") is not None:
            known["date_range"] = tuple(known["date_range"])
        known["bands"] = tuple(known.get("bands") or ())
        return cls(**known)


def _geometry_types(wkb: pa.ChunkedArray) -> list[str]:
    geoms = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
    type_ids = np.unique(shapely.get_type_id(geoms))
    names = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint",
             5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}
    has_z = bool(shapely.has_z(geoms).any()) if len(geoms) else False
    return sorted(names[int(t)] + (" Z" if has_z else "") for t in type_ids if int(t) in names)


def geo_metadata(table: pa.Table) -> dict[str, Any]:
    """The GeoParquet 1.1 ``geo`` document for a normalised table (WKB, CRS84, bbox covering)."""
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": _geometry_types(table[S.GEOMETRY]) if table.num_rows else [],
    }
    if table.num_rows and all(c in table.column_names for c in S.BBOX_COLUMNS):
        # RFC 7946 section 5 (as GeoParquet asks): west > east across the antimeridian
        union = union_bounds(*(table[c].to_numpy() for c in S.BBOX_COLUMNS))
        if union is not None:
            column["bbox"] = list(union)
    for name in (S.BBOX_STRUCT, S.BBOX_STRUCT_FALLBACK):
        if name in table.column_names and table.schema.field(name).type == S.BBOX_STRUCT_TYPE:
            column["covering"] = {
                "bbox": {k: [name, k] for k in ("xmin", "ymin", "xmax", "ymax")}
            }
            break
    # No "crs" key: GeoParquet's default is OGC:CRS84, which is what the contract stores.
    return {"version": GEOPARQUET_VERSION, "primary_column": S.GEOMETRY, "columns": {S.GEOMETRY: column}}


def with_metadata(table: pa.Table, info: CollectionInfo) -> pa.Table:
    """Attach ``geo`` and collection metadata to a table's schema (other keys kept)."""
    metadata = dict(table.schema.metadata or {})
    metadata[GEO_KEY] = json.dumps(geo_metadata(table)).encode()
    metadata[COLLECTION_KEY] = info.to_json()
    return table.replace_schema_metadata(metadata)


def read_collection_info(schema: pa.Schema) -> CollectionInfo | None:
    """The collection metadata stored in a schema, or None for a plain (Geo)Parquet file."""
    raw = (schema.metadata or {}).get(COLLECTION_KEY)
    return CollectionInfo.from_json(raw) if raw else None
