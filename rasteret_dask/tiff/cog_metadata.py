"""``CogMetadata``: one typed, immutable value for a record's ``{band}_metadata`` struct.

The index stores each band's cached header as an Arrow struct (``schema.METADATA_TYPE``). This
module turns one such struct (a row's ``as_py()`` dict or a ``pyarrow.StructScalar``), or a
whole column of them, into frozen values with the tile, sample, grid and overview arithmetic
the planning layers need, so they stop reading string keys. It is pure: no I/O, and nothing here allocates from
header-declared sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pyproj
from affine import Affine

from .gcps import gcp_fit, gcp_points
from .levels import choose_level as _choose_level
from .mask_level import MaskLevel, MetadataError, mask_level

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CogMetadata", "OverviewLevel", "MaskLevel", "MetadataError", "crs_of"]

_REQUIRED = ("image_width", "image_height", "tile_width", "tile_height", "dtype", "transform",
             "tile_offsets", "tile_byte_counts")


@lru_cache(maxsize=256)
def _epsg_crs(code: int) -> pyproj.CRS:
    return pyproj.CRS.from_epsg(code)


@lru_cache(maxsize=256)
def _wkt_crs(wkt: str) -> pyproj.CRS:
    return pyproj.CRS.from_wkt(wkt)


@lru_cache(maxsize=256)
def _text_crs(text: str) -> pyproj.CRS:
    return pyproj.CRS.from_user_input(text)


def crs_of(crs_epsg: int | None, crs_wkt: str | None) -> pyproj.CRS | None:
    """The CRS of an EPSG code, else of a WKT text (cached: records share their CRS objects);
    None when neither is given."""
    if crs_epsg is not None:
        return _epsg_crs(int(crs_epsg))
    if crs_wkt:
        return _wkt_crs(crs_wkt)
    return None


@dataclass(frozen=True, slots=True)
class OverviewLevel:
    """A reduced-resolution image of the file (full resolution excluded): its size, tile size
    and, when the index holds them, its tile tables (the record's own plane, like
    `CogMetadata`'s; None in indexes enriched before they were recorded)."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    tile_offsets: tuple[int, ...] | None = None
    tile_byte_counts: tuple[int, ...] | None = None
    mask: MaskLevel | None = None
    """The level's internal mask (None: the image has none)."""

    @property
    def has_tiles(self) -> bool:
        """Whether the level's tile tables are known."""
        return self.tile_offsets is not None and self.tile_byte_counts is not None

    @property
    def tile_count(self) -> int:
        """Tiles covering the level once."""
        return -(-self.width // self.tile_width) * -(-self.height // self.tile_height)


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(map(int, values)) if values is not None else ()


def _arrow_ints(values: list[int] | None) -> tuple[int, ...]:
    """A list an Arrow integer list became (Python ints already)."""
    return tuple(values) if values is not None else ()


def _as_dict(struct: Mapping[str, Any] | Any) -> Mapping[str, Any] | None:
    if hasattr(struct, "as_py"):  # pyarrow StructScalar
        struct = struct.as_py()
    return struct


def _overview(struct: Mapping[str, Any], level: int, prefix: str,
              ints: Callable[[Any], tuple[int, ...]]) -> OverviewLevel:
    """One ``overviews`` struct (``schema.OVERVIEW_TYPE``; the tile tables absent or null in
    indexes enriched before they were recorded) as a checked `OverviewLevel`."""
    sizes = [struct.get(k) for k in ("width", "height", "tile_width", "tile_height")]
    if any(v is None for v in sizes):
        raise MetadataError(f"{prefix}overview level {level} lacks its size or tile size")
    width, height, tile_width, tile_height = (int(v) for v in sizes)
    offsets, counts = struct.get("tile_offsets"), struct.get("tile_byte_counts")
    if (offsets is None) != (counts is None):
        raise MetadataError(f"{prefix}overview level {level} has tile_offsets or "
                            "tile_byte_counts without the other")
    if offsets is None:
        return OverviewLevel(width, height, tile_width, tile_height)
    value = OverviewLevel(width, height, tile_width, tile_height, ints(offsets), ints(counts),
                          mask_level(struct.get("mask"), f"overview level {level}", prefix, ints))
    if min(width, height, tile_width, tile_height) <= 0:
        raise MetadataError(f"{prefix}overview level {level} has tile tables but a "
                            f"{width} x {height} size with {tile_width} x {tile_height} tiles")
    expected = value.tile_count
    if len(value.tile_offsets or ()) != expected or len(value.tile_byte_counts or ()) != expected:
        raise MetadataError(
            f"{prefix}overview level {level} ({width} x {height}, {tile_width} x "
            f"{tile_height} tiles) has {len(offsets)} tile offsets and {len(counts)} byte "
            f"counts for {expected} tiles")
    return value


@dataclass(frozen=True, slots=True)
class CogMetadata:
    """A band's cached COG header: image and tile layout, samples, codec, georeferencing.

    The tile arrays hold one tile grid: all samples of a pixel-interleaved file, or the
    record's own plane of a planar one (``tiff.TiffHeader.band_tiles``).

    Build it with :meth:`from_struct`; the field names are those of ``schema.METADATA_TYPE``
    (``transform`` becomes an ``affine.Affine``, ``dtype`` a NumPy dtype, lists tuples).
    """

    image_width: int
    image_height: int
    tile_width: int
    tile_height: int
    dtype: np.dtype
    transform: Affine
    tile_offsets: tuple[int, ...]
    tile_byte_counts: tuple[int, ...]
    compression: int = 1
    predictor: int = 1
    nodata: float | None = None
    samples_per_pixel: int = 1
    planar_configuration: int = 1
    photometric: int = 1
    extra_samples: tuple[int, ...] = ()
    crs_epsg: int | None = None
    jpeg_tables: bytes | None = None
    lerc_parameters: tuple[int, ...] | None = None
    overviews: tuple[OverviewLevel, ...] = ()
    header_bytes: int | None = None
    etag: str | None = None
    object_size: int | None = None
    last_modified: Any = None
    """The identity of the object version the header came from (``datetime`` or None)."""
    crs_wkt: str | None = None
    """The CRS rebuilt from GeoKeys without an EPSG code (WKT2), None with ``crs_epsg``."""
    striped: bool = False
    """Whether the image is stored in strips: tiles of the full width and RowsPerStrip rows,
    the last one holding the rows left (see :attr:`last_strip_rows`)."""
    bits_per_sample: int | None = None
    """BitsPerSample of sub-byte samples (1, 2, 4; read unpacked as uint8), else None."""
    mask: MaskLevel | None = None
    """GDAL's internal mask of the image (None: no mask, or an index enriched before masks
    were kept); each overview level has its own."""
    gcps: tuple[tuple[float, float, float, float, float], ...] = ()
    """Ground control points (row, col of the full-resolution image -> x, y, z in
    ``gcp_crs``) of a file georeferenced by them only; ``transform`` is then their
    first-order fit (GDAL's ``GDALGCPsToGeoTransform``), for planning only."""
    gcp_crs: str | None = None
    """The CRS of ``gcps`` (``EPSG:n`` or WKT2)."""

    @classmethod
    def from_struct(cls, struct: Mapping[str, Any] | Any, *, context: str = "") -> CogMetadata:
        """Build from a ``{band}_metadata`` struct; ``context`` (record, band, href) prefixes
        every error message.

        Raises
        ------
        MetadataError
            When the struct is null (the band is not enriched), lacks a required field, or its
            tile arrays do not match its image and tile sizes.
        """
        prefix = f"{context}: " if context else ""
        md = _as_dict(struct)
        if md is None:
            raise MetadataError(f"{prefix}metadata is null (band not enriched)")
        return cls._build(md, prefix, _ints)

    @classmethod
    def from_arrow(cls, column: pa.Array | pa.ChunkedArray,
                   context: Callable[[int], str] | None = None) -> list[CogMetadata | None]:
        """Build every row of a ``{band}_metadata`` column (``schema.METADATA_TYPE``): None for
        a null row, else what :meth:`from_struct` builds, with the same checks. Faster than
        row by row: Arrow's integer lists are taken as they are.

        Parameters
        ----------
        column
            The column (or a slice of it).
        context
            ``context(k)`` names row ``k`` (record, band, href) in an error message; called
            only to raise.

        Raises
        ------
        MetadataError
            For the first non-null row that lacks a required field or is inconsistent.
        """
        out: list[CogMetadata | None] = []
        for k, row in enumerate(column.to_pylist()):
            if row is None:
                out.append(None)
                continue
            try:
                out.append(cls._build(row, "", _arrow_ints))
            except MetadataError as exc:
                if context is None:
                    raise
                raise MetadataError(f"{context(k)}: {exc}") from None
        return out

    @classmethod
    def _build(cls, md: Mapping[str, Any], prefix: str,
               ints: Callable[[Any], tuple[int, ...]]) -> CogMetadata:
        gcps = gcp_points(md.get("gcps"), prefix)
        if gcps and md.get("transform") is None:
            md = {**md, "transform": gcp_fit(gcps, md.get("gcp_crs"), prefix)}
        missing = [k for k in _REQUIRED if md.get(k) is None]
        if missing:
            why = (" (the file has no geotransform (neither ModelPixelScale + ModelTiepoint "
                   "nor ModelTransformation tags) and the index holds no ground control points "
                   "for it: it is not georeferenced, or it was enriched before GCPs were kept "
                   "(enrich it again with only_missing=False))" if "transform" in missing
                   else "")
            raise MetadataError(f"{prefix}metadata lacks {', '.join(missing)}{why}")
        coeffs = [float(v) for v in md["transform"]]
        if len(coeffs) == 9 and coeffs[6:] == [0.0, 0.0, 1.0]:
            coeffs = coeffs[:6]
        if len(coeffs) != 6:
            raise MetadataError(f"{prefix}transform must have 6 coefficients, got {coeffs}")
        try:
            dtype = np.dtype(md["dtype"])
        except TypeError as exc:
            raise MetadataError(f"{prefix}dtype {md['dtype']!r} is not a NumPy dtype") from exc
        lerc = md.get("lerc_parameters")
        tables = md.get("jpeg_tables")
        nodata = md.get("nodata")
        value = cls(
            image_width=int(md["image_width"]),
            image_height=int(md["image_height"]),
            tile_width=int(md["tile_width"]),
            tile_height=int(md["tile_height"]),
            dtype=dtype,
            transform=Affine(*coeffs),
            tile_offsets=ints(md["tile_offsets"]),
            tile_byte_counts=ints(md["tile_byte_counts"]),
            compression=int(md.get("compression") or 1),
            predictor=int(md.get("predictor") or 1),
            nodata=None if nodata is None else float(nodata),
            samples_per_pixel=int(md.get("samples_per_pixel") or 1),
            planar_configuration=int(md.get("planar_configuration") or 1),
            photometric=int(md.get("photometric") if md.get("photometric") is not None else 1),
            extra_samples=_ints(md.get("extra_samples")),
            crs_epsg=None if md.get("crs_epsg") is None else int(md["crs_epsg"]),
            jpeg_tables=bytes(tables) if tables else None,
            lerc_parameters=None if lerc is None else _ints(lerc),
            overviews=tuple(_overview(o, k + 1, prefix, ints)
                            for k, o in enumerate(md.get("overviews") or ())),
            header_bytes=None if md.get("header_bytes") is None else int(md["header_bytes"]),
            etag=md.get("etag"),
            object_size=None if md.get("object_size") is None else int(md["object_size"]),
            last_modified=md.get("last_modified"),
            crs_wkt=md.get("crs_wkt") or None,
            striped=bool(md.get("striped")),
            bits_per_sample=(None if md.get("bits_per_sample") is None
                             else int(md["bits_per_sample"])),
            mask=mask_level(md.get("mask"), "the image", prefix, ints),
            gcps=gcps,
            gcp_crs=md.get("gcp_crs") or None,
        )
        value._check(prefix)
        return value

    def _check(self, prefix: str) -> None:
        if self.mask is not None and (self.mask.width, self.mask.height) != self.shape[::-1]:
            raise MetadataError(f"{prefix}the mask is {self.mask.width} x {self.mask.height}, "
                                f"the image {self.image_width} x {self.image_height}")
        if min(self.tile_width, self.tile_height) <= 0:
            raise MetadataError(f"{prefix}tile size must be positive, got "
                                f"{self.tile_width} x {self.tile_height}")
        if min(self.image_width, self.image_height) < 0:
            raise MetadataError(f"{prefix}image size must be >= 0, got "
                                f"{self.image_width} x {self.image_height}")
        expected = self.tiles_down * self.tiles_across
        if len(self.tile_offsets) != expected or len(self.tile_byte_counts) != expected:
            raise MetadataError(
                f"{prefix}{len(self.tile_offsets)} tile offsets and "
                f"{len(self.tile_byte_counts)} byte counts for {expected} tiles "
                f"({self.tiles_down} x {self.tiles_across})")

    # --- layout ---------------------------------------------------------------------
    @property
    def planar(self) -> bool:
        """Whether samples are stored band-separate (one tile grid per sample)."""
        return self.planar_configuration == 2

    @property
    def samples_per_tile(self) -> int:
        """Samples decoded from one tile (1 when planar)."""
        return 1 if self.planar else self.samples_per_pixel

    @property
    def tiles_across(self) -> int:
        """Tiles in a row of the tile grid."""
        return -(-self.image_width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        """Tiles in a column of the tile grid."""
        return -(-self.image_height // self.tile_height)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the full-resolution image."""
        return (self.image_height, self.image_width)

    @property
    def native_dtype(self) -> np.dtype:
        """The sample dtype in this machine's byte order (the dtype of decoded arrays)."""
        return self.dtype.newbyteorder("=")

    @property
    def tile_nbytes(self) -> int:
        """Bytes of one decoded tile."""
        return self.tile_width * self.tile_height * self.samples_per_tile * self.dtype.itemsize

    def tile_index(self, tile_row: int, tile_col: int) -> int:
        """Position of a tile in the offset arrays (row-major; for a planar file the arrays
        hold the record's own plane only, as enrichment stores them)."""
        if not (0 <= tile_row < self.tiles_down and 0 <= tile_col < self.tiles_across):
            raise IndexError(f"tile ({tile_row}, {tile_col}) is outside the "
                             f"{self.tiles_down} x {self.tiles_across} tile grid")
        return tile_row * self.tiles_across + tile_col

    def tile_range(self, index: int) -> tuple[int, int]:
        """Byte range [start, end) of tile ``index``; (offset, offset) for a sparse tile."""
        start = self.tile_offsets[index]
        return start, start + self.tile_byte_counts[index]

    def tile_at(self, row: int, col: int) -> int:
        """Position in the offset arrays of the tile holding image pixel (``row``, ``col``)."""
        return self.tile_index(row // self.tile_height, col // self.tile_width)

    @property
    def last_strip_rows(self) -> int:
        """Rows of the last strip of a striped image when it holds fewer than the others
        (libtiff writes only the rows left), else 0."""
        if not self.striped:
            return 0
        return self.image_height % self.tile_height

    def sample_plane(self, band_index: int) -> int:
        """The sample a record's ``band_index`` selects within a decoded tile."""
        return 0 if self.planar else int(band_index)

    # --- georeferencing -------------------------------------------------------------
    @property
    def crs(self) -> pyproj.CRS | None:
        """The CRS the record's pixels are located in: from ``crs_epsg`` when set, else from
        ``crs_wkt`` (a CRS rebuilt from GeoKeys without an EPSG code), else its GCPs'
        (``gcp_crs``, for a file georeferenced by GCPs only); None when it has none."""
        crs = crs_of(self.crs_epsg, self.crs_wkt)
        if crs is None and self.gcps and self.gcp_crs:
            return _text_crs(self.gcp_crs)
        return crs

    @property
    def has_gcps(self) -> bool:
        """Whether the record is georeferenced by ground control points only (its pixels are
        not on an affine grid: reads warp it with GDAL's GCP transformer)."""
        return bool(self.gcps)

    @property
    def resolution(self) -> tuple[float, float]:
        """(x, y) pixel size in CRS units (positive): the lengths of a pixel's sides (the
        transform's columns), so a rotated or sheared grid has its true pixel size (to 12
        significant digits: a 20° rotation of 10 m pixels is 10 m, not 10.000000000000002)."""
        t = self.transform
        if t.b == 0.0 and t.d == 0.0:
            return (abs(t.a), abs(t.e))
        return (float(f"{math.hypot(t.a, t.d):.12g}"), float(f"{math.hypot(t.b, t.e):.12g}"))

    @property
    def is_axis_aligned(self) -> bool:
        """Whether pixel rows run along x and columns along y (no rotation or shear)."""
        return self.transform.b == 0.0 and self.transform.d == 0.0

    def overview_transform(self, level: int) -> Affine:
        """Transform of overview ``level`` (0 = the first reduced level), GDAL's way: the full
        extent divided by the overview's size."""
        overview = self.overviews[level]
        return self.transform @ Affine.scale(self.image_width / overview.width,
                                             self.image_height / overview.height)

    # --- overview levels ----------------------------------------------------------------
    @property
    def has_overview_tiles(self) -> bool:
        """Whether every listed overview's tile tables are known (True without overviews;
        False for an index enriched before they were recorded)."""
        return all(overview.has_tiles for overview in self.overviews)

    def level(self, n: int, *, context: str = "") -> CogMetadata:
        """The metadata of level ``n`` as an image of its own: 0 is full resolution (this
        value), ``k`` the ``k``-th overview, with that level's size, tile size, tile tables
        and transform (`overview_transform`), its own mask, and no overviews; dtype, codec,
        predictor, JPEG tables, samples, nodata, CRS, GCPs (in full-resolution pixels) and
        object identity are shared (overview levels are
        tiled: a striped image's reduced IFDs in strips are not listed). The plan and decode
        layers read its tiles exactly as they read full resolution's.

        Raises
        ------
        MetadataError
            When the file has no level ``n``, or its tile tables are not in the index (an
            index enriched before they were recorded: enrich the band again with
            ``only_missing=False``; or a level whose tiles decode unlike the image's).
            ``context`` (record, band, href) prefixes the message.
        """
        prefix = f"{context}: " if context else ""
        if n == 0:
            return self
        if not 0 < n <= len(self.overviews):
            raise MetadataError(f"{prefix}no overview level {n}: levels are 0 (full resolution)"
                                f" to {len(self.overviews)}")
        overview = self.overviews[n - 1]
        if not overview.has_tiles:
            raise MetadataError(
                f"{prefix}overview level {n} ({overview.width} x {overview.height}) has no "
                "tile offsets in the index: enriched before they were recorded (enrich the "
                "band again with only_missing=False), or its tiles decode unlike the image's")
        assert overview.tile_offsets is not None and overview.tile_byte_counts is not None
        return replace(self, image_width=overview.width, image_height=overview.height,
                       tile_width=overview.tile_width, tile_height=overview.tile_height,
                       tile_offsets=overview.tile_offsets,
                       tile_byte_counts=overview.tile_byte_counts,
                       transform=self.overview_transform(n - 1), overviews=(),
                       striped=False, mask=overview.mask)

    def choose_level(self, target_resolution: float | tuple[float, float]) -> int:
        """The level (0 = full resolution, ``k`` = ``k``-th overview) odc-stac reads for an
        output pixel size ``target_resolution`` ((x, y) or one number, positive, in this
        file's CRS units); `tiff.levels` states the rule (a rotated or sheared grid compares
        its pixels' side lengths, :attr:`resolution`). Only levels whose tile tables are
        known are candidates, so an index enriched before they were recorded reads full
        resolution (0).

        Raises
        ------
        ValueError
            For a non-positive target.
        """
        tx, ty = ((target_resolution, target_resolution)
                  if isinstance(target_resolution, int | float) else target_resolution)
        if not (tx > 0 and ty > 0):
            raise ValueError(f"target resolution must be positive, got {target_resolution}")
        sx, sy = self.resolution
        usable = [k for k, overview in enumerate(self.overviews, start=1) if overview.has_tiles]
        pick = _choose_level(min(tx / sx, ty / sy), self.image_width,
                            [self.overviews[k - 1].width for k in usable])
        return 0 if pick == 0 else usable[pick - 1]
