"""The index contract: column names and Arrow types of the three column tiers.

Every other module imports its column names and types from here, so the format is defined once.

Tiers (see ARCHITECTURE.md):

1. required: ``id``, ``datetime``, ``geometry`` (WKB, CRS84), ``assets``
   (band -> {href, band_index});
2. derived when missing: ``scene_bbox``, ``bbox_minx/miny/maxx/maxy``, ``year``, ``month``;
3. COG acceleration: one ``{band}_metadata`` struct per band (null = not enriched), plus the
   ``enrich_errors`` map (band -> message) of the last enrichment;

and any user column, which survives every load, filter and write.

Optional, filled at ingest when the source describes it: ``raster_bands``
map<string, struct<scale, offset, nodata float64, data_type string>>, band (as the index names
it, a key of ``assets``) -> the STAC description of that band's values: ``raster:bands`` of
its asset (the entry at the band's ``band_index``), or STAC 1.1's ``bands`` entry and the
asset's own ``nodata``/``data_type``/``scale``/``offset`` (``raster:scale``/``raster:offset``
of the raster extension 2.0); a band-level field wins over the asset-level one. A band the
source does not describe has no key, a record with no described band a null map; physical
values are ``raw * scale + offset`` (``index.raster_bands.band_scaling`` reads it).

Also derived: ``bbox`` struct<xmin, ymin, xmax, ymax> (``geometry_bbox`` when the input already
has an unrelated ``bbox`` column), the GeoParquet 1.1 bbox covering column that other readers
(DuckDB, GDAL, geopandas) use for pushdown; the scalar ``bbox_*`` columns serve Arrow filters.

Extensions to the upstream contract, all trailing fields of the metadata struct so that a
reader of the upstream fields sees them unchanged:

- ``dtype`` is the NumPy dtype name (``"uint16"``) for little-endian files and the explicit
  big-endian string (``">u2"``) for big-endian ones; ``np.dtype(dtype)`` reads both;
- ``transform`` holds the six affine coefficients in rasterio/``affine`` order (a, b, c, d, e, f),
  pixel-corner based (GDAL's PixelIsPoint half-pixel shift already applied);
- ``crs_epsg`` int32: EPSG code from the GeoKeyDirectory (null when the file has no EPSG code);
- ``jpeg_tables`` binary: the JPEGTables tag (347) of JPEG-compressed files, needed to decode
  abbreviated JPEG tiles;
- ``lerc_parameters`` list<int32>: the LercParameters tag (50674) of LERC files: [version,
  additional compression (0 none, 1 deflate, 2 zstd)];
- ``overviews`` list<struct<width, height, tile_width, tile_height, tile_offsets,
  tile_byte_counts>>: the reduced-resolution IFDs of the file, full resolution excluded,
  largest first. ``tile_offsets`` and ``tile_byte_counts`` (list<int64>, the record's own
  plane for planar files, like the image's) are trailing fields added later: indexes
  enriched before them load with both null, and so does a level whose tiles do not decode
  with the image's own parameters (e.g. GDAL's ``OVERVIEW_COMPRESS``) or whose tables are
  unusable; a reader of the first four fields sees them unchanged;
- ``header_bytes`` int64: how many bytes of the file the header parse needed (diagnostics);
- ``etag`` string, ``object_size`` int64, ``last_modified`` timestamp[us, UTC]: the identity of
  the object version the header was read from, as the header response reported it (HTTP
  ``ETag``/``Content-Range`` total/``Last-Modified``, S3 ``ETag``/``ContentRange``/
  ``LastModified``, local files size and modification time with a null ``etag``; null where
  a backend gives none, and in indexes enriched before these fields existed). Reads send
  ``etag`` as ``If-Match`` and compare the others, so bytes of a replaced object are never
  decoded with this metadata;
- ``crs_wkt`` string: the CRS (WKT2:2019) of a file whose GeoKeys give no EPSG code, rebuilt
  from them as GDAL does (user-defined projections and datums, geostationary, other bodies;
  ``tiff.crs``); null when ``crs_epsg`` is set, and in indexes enriched before it existed.
  ``CogMetadata.crs`` is the record's CRS from either;
- ``striped`` bool: true for an image stored in strips (StripOffsets/StripByteCounts):
  ``tile_width`` is then the image width, ``tile_height`` RowsPerStrip (at most the image
  height), the tile tables hold the strips and the last strip may hold fewer rows; null or
  false for tiled images;
- ``bits_per_sample`` int32: BitsPerSample of sub-byte samples (1, 2 or 4 bits, e.g. 1-bit
  masks), read unpacked as ``uint8`` values as GDAL gives them; null when samples fill their
  ``dtype``;
- ``mask`` struct<width, height, tile_width, tile_height, compression, predictor,
  bits_per_sample, samples, sample, striped, tile_offsets, tile_byte_counts> (``MASK_TYPE``):
  the GDAL internal mask of the image (an IFD with NewSubfileType 4, PhotometricInterpretation
  4, 1 or 8 bits; 0 = masked), as the band reads it: ``samples`` stored per mask tile,
  ``sample`` the band's one among them (0 for GDAL's per-dataset mask of one sample; a mask of
  one sample per band gives each band its own), the tile (or strip, ``striped``) tables of the
  band's plane. Null without a mask and in indexes enriched before it existed (their masks are
  not applied: enrich again with ``only_missing=False``). ``overviews`` got the same trailing
  ``mask`` field: the mask of that reduced level (NewSubfileType 5, matched by size); a level
  of a masked image whose own mask is unknown has null tile tables, so it is never read;
- ``gcps`` list<struct<row, col, x, y, z>> float64: the ground control points of a file
  georeferenced by GCPs only (several ModelTiepoints, no ModelPixelScale or
  ModelTransformation), pixel (``row``, ``col``) of the full-resolution image (GDAL's
  PixelIsPoint half-pixel shift applied) -> (``x``, ``y``, ``z``) in ``gcp_crs``; null
  otherwise;
- ``gcp_crs`` string: the CRS of those GCPs (``EPSG:n`` or WKT2). Such a record has no
  ``transform``, ``crs_epsg`` or ``crs_wkt``: the GCPs' CRS is not the raster's CRS (its
  pixels are not on a grid of it); reads warp it onto an output grid with GDAL's GCP
  transformer.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "FORMAT_VERSION",
    "ID",
    "DATETIME",
    "START_DATETIME",
    "END_DATETIME",
    "GEOMETRY",
    "ASSETS",
    "SCENE_BBOX",
    "SCENE_BBOX_TYPE",
    "BBOX_STRUCT",
    "BBOX_STRUCT_FALLBACK",
    "BBOX_STRUCT_TYPE",
    "BBOX_COLUMNS",
    "YEAR",
    "MONTH",
    "PARTITION_COLUMNS",
    "ENRICH_ERRORS",
    "EPSG",
    "CLOUD_COVER",
    "CLOUD_COVER_COLUMNS",
    "METADATA_SUFFIX",
    "REQUIRED_COLUMNS",
    "ASSET_TYPE",
    "DATETIME_TYPE",
    "OVERVIEW_TYPE",
    "MASK_TYPE",
    "GCP_TYPE",
    "METADATA_TYPE",
    "METADATA_FIELDS",
    "ENRICH_ERRORS_TYPE",
    "RASTER_BANDS",
    "BAND_SCALING_TYPE",
    "RASTER_BANDS_TYPE",
    "assets_type",
    "metadata_column",
    "band_of_metadata_column",
    "metadata_bands",
    "is_metadata_column",
]

FORMAT_VERSION = "1.0"

# --- tier 1: required -------------------------------------------------------------------
ID = "id"
DATETIME = "datetime"
START_DATETIME = "start_datetime"
END_DATETIME = "end_datetime"
GEOMETRY = "geometry"
ASSETS = "assets"
REQUIRED_COLUMNS = (ID, DATETIME, GEOMETRY, ASSETS)

DATETIME_TYPE = pa.timestamp("us", tz="UTC")
ASSET_TYPE = pa.struct([pa.field("href", pa.string()), pa.field("band_index", pa.int32())])


def assets_type(bands: list[str] | tuple[str, ...]) -> pa.StructType:
    """The ``assets`` struct type for the given band codes (one asset struct per band)."""
    return pa.struct([pa.field(band, ASSET_TYPE) for band in bands])


# --- tier 2: derived ----------------------------------------------------------------------
SCENE_BBOX = "scene_bbox"
BBOX_COLUMNS = ("bbox_minx", "bbox_miny", "bbox_maxx", "bbox_maxy")
YEAR = "year"
MONTH = "month"
PARTITION_COLUMNS = (YEAR, MONTH)
SCENE_BBOX_TYPE = pa.list_(pa.float64(), 4)
# GeoParquet 1.1 bbox covering: a struct column (stac-geoparquet's convention); extension.
BBOX_STRUCT = "bbox"
BBOX_STRUCT_FALLBACK = "geometry_bbox"
BBOX_STRUCT_TYPE = pa.struct(
    [pa.field(n, pa.float64()) for n in ("xmin", "ymin", "xmax", "ymax")]
)

# --- well-known optional columns ---------------------------------------------------------
EPSG = "proj:epsg"
CLOUD_COVER = "eo:cloud_cover"
CLOUD_COVER_COLUMNS = ("eo:cloud_cover", "cloud_cover")
RASTER_BANDS = "raster_bands"
BAND_SCALING_TYPE = pa.struct([
    pa.field("scale", pa.float64()),
    pa.field("offset", pa.float64()),
    pa.field("nodata", pa.float64()),
    pa.field("data_type", pa.string()),
])
RASTER_BANDS_TYPE = pa.map_(pa.string(), BAND_SCALING_TYPE)

# --- tier 3: COG acceleration ---------------------------------------------------------------
METADATA_SUFFIX = "_metadata"
ENRICH_ERRORS = "enrich_errors"
ENRICH_ERRORS_TYPE = pa.map_(pa.string(), pa.string())

MASK_TYPE = pa.struct(
    [
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("tile_width", pa.int32()),
        pa.field("tile_height", pa.int32()),
        pa.field("compression", pa.int32()),
        pa.field("predictor", pa.int32()),
        pa.field("bits_per_sample", pa.int32()),
        pa.field("samples", pa.int32()),
        pa.field("sample", pa.int32()),
        pa.field("striped", pa.bool_()),
        pa.field("tile_offsets", pa.list_(pa.int64())),
        pa.field("tile_byte_counts", pa.list_(pa.int64())),
    ]
)

GCP_TYPE = pa.struct([pa.field(n, pa.float64()) for n in ("row", "col", "x", "y", "z")])

OVERVIEW_TYPE = pa.struct(
    [
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("tile_width", pa.int32()),
        pa.field("tile_height", pa.int32()),
        # extensions (documented in the module docstring)
        pa.field("tile_offsets", pa.list_(pa.int64())),
        pa.field("tile_byte_counts", pa.list_(pa.int64())),
        pa.field("mask", MASK_TYPE),
    ]
)

METADATA_TYPE = pa.struct(
    [
        pa.field("image_width", pa.int32()),
        pa.field("image_height", pa.int32()),
        pa.field("tile_width", pa.int32()),
        pa.field("tile_height", pa.int32()),
        pa.field("dtype", pa.string()),
        pa.field("transform", pa.list_(pa.float64())),
        pa.field("predictor", pa.int32()),
        pa.field("compression", pa.int32()),
        pa.field("tile_offsets", pa.list_(pa.int64())),
        pa.field("tile_byte_counts", pa.list_(pa.int64())),
        pa.field("pixel_scale", pa.list_(pa.float64())),
        pa.field("tiepoint", pa.list_(pa.float64())),
        pa.field("nodata", pa.float64()),
        pa.field("samples_per_pixel", pa.int32()),
        pa.field("planar_configuration", pa.int32()),
        pa.field("photometric", pa.int32()),
        pa.field("extra_samples", pa.list_(pa.int32())),
        # extensions (documented in the module docstring)
        pa.field("crs_epsg", pa.int32()),
        pa.field("jpeg_tables", pa.binary()),
        pa.field("lerc_parameters", pa.list_(pa.int32())),
        pa.field("overviews", pa.list_(OVERVIEW_TYPE)),
        pa.field("header_bytes", pa.int64()),
        pa.field("etag", pa.string()),
        pa.field("object_size", pa.int64()),
        pa.field("last_modified", pa.timestamp("us", tz="UTC")),
        pa.field("crs_wkt", pa.string()),
        pa.field("striped", pa.bool_()),
        pa.field("bits_per_sample", pa.int32()),
        pa.field("mask", MASK_TYPE),
        pa.field("gcps", pa.list_(GCP_TYPE)),
        pa.field("gcp_crs", pa.string()),
    ]
)
METADATA_FIELDS = tuple(f.name for f in METADATA_TYPE)


def metadata_column(band: str) -> str:
    """Name of the COG metadata column of ``band`` (``B04`` -> ``B04_metadata``)."""
    return f"{band}{METADATA_SUFFIX}"


def is_metadata_column(name: str, dtype: pa.DataType | None = None) -> bool:
    """Whether a column is a ``{band}_metadata`` struct (by name, and by type when given)."""
    if not name.endswith(METADATA_SUFFIX) or name == METADATA_SUFFIX:
        return False
    return dtype is None or pa.types.is_struct(dtype)


def band_of_metadata_column(name: str) -> str:
    """Band code of a ``{band}_metadata`` column name."""
    return name[: -len(METADATA_SUFFIX)]


def metadata_bands(schema: pa.Schema) -> list[str]:
    """Bands that have a metadata column in ``schema``, in schema order."""
    return [
        band_of_metadata_column(f.name) for f in schema if is_metadata_column(f.name, f.type)
    ]
