"""The parsed header of a (Geo)TIFF: the first IFD, its georeferencing and its overviews.

Tiled images and images stored in strips are both read as a grid of tiles: a strip is a tile
of the image's full width and RowsPerStrip rows (`TiffHeader.striped`), the last one holding
the rows left.

`parse_tiff_header` is sans-I/O: it reads a `SparseBuffer` and raises `NeedBytes` with every
range it can tell is missing; `driver.read_tiff_header` is a small driver around it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .buffer import SparseBuffer, TiffError
from .crs import GeoKeyCrsError, crs_from_geo_keys
from .geokeys import (
    GeoKeyValue,
    affine_from_tags,
    epsg_from_geo_keys,
    is_pixel_is_point,
    parse_geo_keys,
)
from .ifd import IFD_READAHEAD, Ifd, IfdReader, check_tile_table, read_file_header
from .masks import MaskImage, pair_masks
from .overviews import Overview, OverviewWalk, ReducedImage, usable_overviews
from .tags import (
    BITS_PER_SAMPLE,
    COMPRESSION,
    EXTRA_SAMPLES,
    GDAL_NODATA,
    GEO_ASCII_PARAMS,
    GEO_DOUBLE_PARAMS,
    GEO_KEY_DIRECTORY,
    IMAGE_LENGTH,
    IMAGE_WIDTH,
    JPEG_TABLES,
    LERC_PARAMETERS,
    MODEL_PIXEL_SCALE,
    MODEL_TIEPOINT,
    MODEL_TRANSFORMATION,
    PHOTOMETRIC,
    PLANAR_CONFIGURATION,
    PREDICTOR,
    ROWS_PER_STRIP,
    SAMPLE_FORMAT,
    SAMPLES_PER_PIXEL,
    STRIP_BYTE_COUNTS,
    STRIP_OFFSETS,
    SUB_BYTE_BITS,
    SUPPORTED_COMPRESSIONS,
    TILE_BYTE_COUNTS,
    TILE_LENGTH,
    TILE_OFFSETS,
    TILE_WIDTH,
    compression_name,
    sample_dtype,
)
from .values import BLOB_TAGS, FLOAT_TAGS, INT_TAGS, TEXT_TAGS, single_value, tag_values

__all__ = ["MAX_CHAINED_IFDS", "Overview", "TiffHeader", "parse_tiff_header", "Gcp"]

MAX_CHAINED_IFDS = 256
"""Most overview and mask IFDs walked after the image (a COG has a few dozen at most)."""

Transform = tuple[float, float, float, float, float, float]
Gcp = tuple[float, float, float, float, float]
"""A ground control point: (row, col) of the full-resolution image -> (x, y, z)."""


@dataclass(frozen=True)
class TiffHeader:
    """Everything a tile reader needs from the first (full-resolution) IFD of a TIFF.

    A striped image (``striped``) is described as tiles: ``tile_width`` is the image width,
    ``tile_height`` RowsPerStrip (at most the image height) and the tile tables are the strip
    tables. ``bits_per_sample`` is set for sub-byte samples (1, 2 or 4 bits, ``dtype``
    ``uint8``), None otherwise. ``crs_wkt`` is the CRS rebuilt from GeoKeys that give no EPSG
    code (``tiff.crs``), None when ``crs_epsg`` is set or the file has no CRS. ``mask`` is
    GDAL's internal mask of the image (:mod:`.masks`), each overview's in its ``mask``. A
    file georeferenced by ground control points only has ``gcps`` (GDAL's reading of its
    ModelTiepoints) and their CRS in ``gcp_crs`` (``EPSG:n`` or WKT2), and no transform,
    ``crs_epsg`` or ``crs_wkt``: the GCPs' CRS is not a grid the raster is on.
    """

    image_width: int
    image_height: int
    tile_width: int
    tile_height: int
    dtype: str
    big_endian: bool
    bigtiff: bool
    compression: int
    predictor: int
    photometric: int | None
    samples_per_pixel: int
    planar_configuration: int
    extra_samples: tuple[int, ...]
    tile_offsets: tuple[int, ...]
    tile_byte_counts: tuple[int, ...]
    transform: Transform | None
    pixel_scale: tuple[float, ...] | None
    tiepoint: tuple[float, ...] | None
    model_transformation: tuple[float, ...] | None
    crs_epsg: int | None
    nodata: float | None
    jpeg_tables: bytes | None
    lerc_parameters: tuple[int, ...] | None
    overviews: tuple[Overview, ...]
    header_bytes: int
    geo_keys: dict[int, GeoKeyValue] = field(default_factory=dict, hash=False)
    crs_wkt: str | None = None
    striped: bool = False
    bits_per_sample: int | None = None
    mask: MaskImage | None = None
    gcps: tuple[Gcp, ...] = ()
    gcp_crs: str | None = None

    @property
    def tiles_across(self) -> int:
        """Number of tile columns."""
        return -(-self.image_width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        """Number of tile rows."""
        return -(-self.image_height // self.tile_height)

    @property
    def tiles_per_plane(self) -> int:
        """Number of tiles covering the image once (one plane of a planar file)."""
        return self.tiles_across * self.tiles_down

    def band_tiles(self, band_index: int = 0) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Tile offsets and byte counts of ``band_index``: its own plane for planar files, every
        tile for chunky files (all samples live in each tile)."""
        if not 0 <= band_index < self.samples_per_pixel:
            raise TiffError(
                f"band_index {band_index} out of range: the file has "
                f"{self.samples_per_pixel} sample(s) per pixel"
            )
        if self.planar_configuration != 2:
            return self.tile_offsets, self.tile_byte_counts
        n = self.tiles_per_plane
        start = band_index * n
        return (
            self.tile_offsets[start : start + n],
            self.tile_byte_counts[start : start + n],
        )

    def to_metadata(self, band_index: int = 0) -> dict[str, Any]:
        """The ``{band}_metadata`` struct value (keys = ``schema.METADATA_FIELDS``) of one band;
        the object identity fields (``etag``, ``object_size``, ``last_modified``) are None here:
        enrichment fills them from the response the header came in."""
        offsets, counts = self.band_tiles(band_index)
        return {
            "image_width": self.image_width,
            "image_height": self.image_height,
            "tile_width": self.tile_width,
            "tile_height": self.tile_height,
            "dtype": self.dtype,
            "transform": None if self.transform is None else list(self.transform),
            "predictor": self.predictor,
            "compression": self.compression,
            "tile_offsets": list(offsets),
            "tile_byte_counts": list(counts),
            "pixel_scale": None if self.pixel_scale is None else list(self.pixel_scale),
            "tiepoint": None if self.tiepoint is None else list(self.tiepoint),
            "nodata": self.nodata,
            "samples_per_pixel": self.samples_per_pixel,
            "planar_configuration": self.planar_configuration,
            "photometric": self.photometric,
            "extra_samples": list(self.extra_samples),
            "crs_epsg": self.crs_epsg,
            "jpeg_tables": self.jpeg_tables,
            "lerc_parameters": (
                None if self.lerc_parameters is None else list(self.lerc_parameters)
            ),
            "overviews": [ov.to_dict(band_index, self.planar_configuration == 2,
                                     self.samples_per_pixel) for ov in self.overviews],
            "header_bytes": self.header_bytes,
            "etag": None,
            "object_size": None,
            "last_modified": None,
            "crs_wkt": self.crs_wkt,
            "striped": self.striped,
            "bits_per_sample": self.bits_per_sample,
            "mask": (None if self.mask is None
                     else self.mask.for_band(band_index, self.samples_per_pixel)),
            "gcps": ([dict(zip(("row", "col", "x", "y", "z"), g, strict=True))
                      for g in self.gcps] or None),
            "gcp_crs": self.gcp_crs,
        }


def _check_layout(ifd: Ifd) -> None:
    """Fail fast, before fetching any value, on an image that is neither tiled nor striped."""
    entries = ifd.entries
    tiled = TILE_WIDTH in entries or TILE_OFFSETS in entries
    if tiled:
        required: tuple[int, ...] = (TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS)
        kind = "tiled"
    elif STRIP_OFFSETS in entries:
        required, kind = (STRIP_OFFSETS, STRIP_BYTE_COUNTS), "striped"
    else:
        raise TiffError("TIFF image without TileOffsets or StripOffsets: no pixel data to read")
    for tag in (*required, IMAGE_WIDTH, IMAGE_LENGTH):
        if tag not in entries:
            raise TiffError(f"{kind} TIFF without the required tag {tag}")
    for tag in required:
        if tag in (TILE_OFFSETS, TILE_BYTE_COUNTS, STRIP_OFFSETS, STRIP_BYTE_COUNTS):
            check_tile_table(entries[tag])


def _layout(values: dict[int, Any], width: int,
            height: int) -> tuple[int, int, tuple[int, ...], tuple[int, ...], bool]:
    """(tile width, tile height, offsets, byte counts, striped) of the image: its tiles, or its
    strips as tiles of the full width and RowsPerStrip rows (the whole image when absent)."""
    if TILE_OFFSETS in values:
        return (single_value(values, TILE_WIDTH, "TileWidth"),
                single_value(values, TILE_LENGTH, "TileLength"),
                tuple(int(v) for v in values[TILE_OFFSETS]),
                tuple(int(v) for v in values[TILE_BYTE_COUNTS]), False)
    rows = single_value(values, ROWS_PER_STRIP, "RowsPerStrip", (1 << 32) - 1)
    if rows <= 0:
        raise TiffError(f"bad RowsPerStrip {rows}")
    return (width, min(rows, height) if height > 0 else rows,
            tuple(int(v) for v in values[STRIP_OFFSETS]),
            tuple(int(v) for v in values[STRIP_BYTE_COUNTS]), True)


def _sample_type(bits: int, sample_format: int, big_endian: bool) -> tuple[str, int | None]:
    """(dtype, sub-byte bits or None) of the samples; sub-byte unsigned samples read as
    uint8 as GDAL reads them (NBITS)."""
    if bits in SUB_BYTE_BITS and sample_format == 1:
        return "uint8", bits
    try:
        return sample_dtype(bits, sample_format, big_endian=big_endian), None
    except ValueError as exc:
        raise TiffError(str(exc)) from None


def _crs_wkt(geo_keys: dict[int, GeoKeyValue], epsg: int | None) -> str | None:
    """The CRS rebuilt from GeoKeys without an EPSG code, as WKT2 (None with an EPSG code or
    without any CRS); TiffError naming the reason when the keys cannot be rebuilt."""
    if epsg is not None or not geo_keys:
        return None
    try:
        crs = crs_from_geo_keys(geo_keys)
    except GeoKeyCrsError as exc:
        raise TiffError(f"the GeoKeys give no EPSG code and their CRS cannot be rebuilt: "
                        f"{exc}") from None
    return None if crs is None else crs.to_wkt()


def _gcps(tiepoint: Sequence[float] | None, pixel_is_point: bool) -> tuple[Gcp, ...]:
    """The ground control points of ModelTiepoint values (I, J, K, X, Y, Z per point) of a
    file without a geotransform, as GDAL reads them: (row J, col I) -> (X, Y, Z), shifted by
    half a pixel for RasterPixelIsPoint."""
    if not tiepoint or len(tiepoint) < 6:
        return ()
    shift = 0.5 if pixel_is_point else 0.0
    points = []
    for k in range(0, len(tiepoint) - 5, 6):
        i, j, _, x, y, z = (float(v) for v in tiepoint[k:k + 6])
        if not all(math.isfinite(v) for v in (i, j, x, y, z)):
            raise TiffError(f"ModelTiepoint {k // 6} holds a value that is not finite")
        points.append((j + shift, i + shift, x, y, z))
    return tuple(points)


def _nodata(text: str | None) -> float | None:
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)  # also reads "nan", "-inf", "1e+38"
    except ValueError:
        raise TiffError(f"GDAL_NODATA tag holds {text!r}, not a number") from None


def parse_tiff_header(buf: SparseBuffer, *, readahead: int = IFD_READAHEAD) -> TiffHeader:
    """Parse the first IFD and the overview chain from the bytes in ``buf``.

    Raises `NeedBytes` with every range it can currently tell is missing (the caller adds them
    and calls again) and `TiffError` for files this package cannot read. An IFD not yet held is
    requested with up to ``readahead`` bytes from its start (clamped to ``buf.eof`` when known,
    so before EOF is known such a range may run past the end of the file); ``readahead=0``
    requests only the bytes known to be needed, at the cost of more rounds.
    """
    fh = read_file_header(buf)
    reader = IfdReader(buf, fh, readahead)
    first = reader.ifd(fh.first_ifd)
    if first is None:
        reader.need()
    assert first is not None
    _check_layout(first)
    code = single_value(tag_values(reader, first, (COMPRESSION,)), COMPRESSION, "Compression", 1)
    if code not in SUPPORTED_COMPRESSIONS:
        raise TiffError(
            f"unsupported compression {code} ({compression_name(code)}); supported: "
            + ", ".join(f"{c} {n}" for c, n in SUPPORTED_COMPRESSIONS.items())
        )
    values = tag_values(reader, first, INT_TAGS + FLOAT_TAGS + TEXT_TAGS + BLOB_TAGS)
    walk = OverviewWalk(reader)
    levels: list[ReducedImage] = []
    seen = {first.offset}
    offset = first.next_offset
    while offset:
        if offset in seen:
            raise TiffError(f"corrupt TIFF: IFD chain loops back to offset {offset}")
        if len(seen) > MAX_CHAINED_IFDS:
            raise TiffError(f"corrupt or hostile TIFF: more than {MAX_CHAINED_IFDS} overview "
                            "and mask IFDs follow the image")
        seen.add(offset)
        ifd = reader.ifd(offset)
        if ifd is None:
            break
        level, go_on = walk.read(ifd)
        if level is not None:
            levels.append(level)
        if not go_on:
            break
        offset = ifd.next_offset
    reader.need()
    return _build(fh.byte_order == ">", fh.bigtiff, values, levels, reader.max_end,
                  walk.masks)


def _build(
    big_endian: bool,
    bigtiff: bool,
    values: dict[int, Any],
    levels: list[ReducedImage],
    header_bytes: int,
    masks: Sequence[MaskImage] = (),
) -> TiffHeader:
    """Assemble and validate a `TiffHeader` from the decoded values of the first IFD."""
    width = single_value(values, IMAGE_WIDTH, "ImageWidth")
    height = single_value(values, IMAGE_LENGTH, "ImageLength")
    tile_width, tile_height, offsets, counts, striped = _layout(values, width, height)
    if min(width, height, tile_width, tile_height) <= 0:
        raise TiffError(
            f"bad image or tile size: {width} x {height} image, {tile_width} x {tile_height} tiles"
        )
    spp = single_value(values, SAMPLES_PER_PIXEL, "SamplesPerPixel", 1)
    planar = single_value(values, PLANAR_CONFIGURATION, "PlanarConfiguration", 1)
    if planar not in (1, 2):
        raise TiffError(f"bad PlanarConfiguration {planar} (1 chunky or 2 planar expected)")
    bits = set(values.get(BITS_PER_SAMPLE, (1,)))
    formats = set(values.get(SAMPLE_FORMAT, (1,)))
    if len(bits) != 1 or len(formats) != 1:
        raise TiffError(
            f"samples of different types (BitsPerSample {sorted(bits)}, SampleFormat "
            f"{sorted(formats)}) are not supported"
        )
    dtype, sub_byte = _sample_type(bits.pop(), formats.pop(), big_endian)
    per_plane = -(-width // tile_width) * -(-height // tile_height)
    expected = per_plane * (spp if planar == 2 else 1)
    if len(offsets) != expected or len(counts) != expected:
        kind, size = ("strip", f"{tile_height}-row strips") if striped else \
            ("tile", f"{tile_width} x {tile_height} tiles")
        raise TiffError(
            f"{kind} tables hold {len(offsets)} offsets and {len(counts)} byte counts, "
            f"expected {expected} for a {width} x {height} image of {size}"
        )
    geo_keys: dict[int, GeoKeyValue] = {}
    if GEO_KEY_DIRECTORY in values:
        doubles = values.get(GEO_DOUBLE_PARAMS)
        try:
            geo_keys = parse_geo_keys(
                values[GEO_KEY_DIRECTORY], doubles, values.get(GEO_ASCII_PARAMS)
            )
        except ValueError as exc:
            raise TiffError(f"bad GeoKeyDirectory: {exc}") from None
    scale = values.get(MODEL_PIXEL_SCALE)
    tiepoint = values.get(MODEL_TIEPOINT)
    matrix = values.get(MODEL_TRANSFORMATION)
    transform = affine_from_tags(
        scale, tiepoint, matrix, pixel_is_point=is_pixel_is_point(geo_keys)
    )
    lerc = values.get(LERC_PARAMETERS)
    photometric = values.get(PHOTOMETRIC)
    epsg = epsg_from_geo_keys(geo_keys)
    crs_wkt = _crs_wkt(geo_keys, epsg)
    gcps = () if transform is not None else _gcps(tiepoint, is_pixel_is_point(geo_keys))
    gcp_crs = None
    if gcps:  # the GeoKeys' CRS is the GCPs', not the raster's
        gcp_crs, epsg, crs_wkt = (f"EPSG:{epsg}" if epsg is not None else crs_wkt), None, None
    mask, level_masks = pair_masks(masks, width, height,
                                   [(lv.overview.width, lv.overview.height) for lv in levels])
    header = TiffHeader(
        image_width=width,
        image_height=height,
        tile_width=tile_width,
        tile_height=tile_height,
        dtype=dtype,
        big_endian=big_endian,
        bigtiff=bigtiff,
        compression=single_value(values, COMPRESSION, "Compression", 1),
        predictor=single_value(values, PREDICTOR, "Predictor", 1),
        photometric=int(photometric[0]) if photometric else None,
        samples_per_pixel=spp,
        planar_configuration=planar,
        extra_samples=tuple(int(v) for v in values.get(EXTRA_SAMPLES, ())),
        tile_offsets=offsets,
        tile_byte_counts=counts,
        transform=transform,
        pixel_scale=None if scale is None else tuple(float(v) for v in scale),
        tiepoint=None if tiepoint is None else tuple(float(v) for v in tiepoint),
        model_transformation=None if matrix is None else tuple(float(v) for v in matrix),
        crs_epsg=epsg,
        nodata=_nodata(values.get(GDAL_NODATA)),
        jpeg_tables=values.get(JPEG_TABLES),
        lerc_parameters=None if lerc is None else tuple(int(v) for v in lerc),
        overviews=usable_overviews(levels, values, width, height, mask is not None,
                                   level_masks),
        header_bytes=header_bytes,
        geo_keys=geo_keys,
        crs_wkt=crs_wkt,
        striped=striped,
        bits_per_sample=sub_byte,
        mask=mask,
        gcps=gcps,
        gcp_crs=gcp_crs,
    )
    _check_ranges(header)
    return header


_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (0, (1 << 63) - 1)


def _check_ranges(header: TiffHeader) -> None:
    """Refuse values the index cannot hold (int32 sizes and codes, int64 tile offsets and byte
    counts): a corrupt header fails as its own record's error, not as its partition's write."""
    codes: list[tuple[str, Sequence[int], tuple[int, int]]] = [
        ("image size", (header.image_width, header.image_height), _INT32),
        ("tile size", (header.tile_width, header.tile_height), _INT32),
        ("Compression", (header.compression,), _INT32),
        ("Predictor", (header.predictor,), _INT32),
        ("Photometric", () if header.photometric is None else (header.photometric,), _INT32),
        ("SamplesPerPixel", (header.samples_per_pixel,), _INT32),
        ("ExtraSamples", header.extra_samples, _INT32),
        ("LercParameters", header.lerc_parameters or (), _INT32),
        ("overview sizes", [v for o in header.overviews
                            for v in (o.width, o.height, o.tile_width, o.tile_height)], _INT32),
        ("mask sizes", () if header.mask is None else
         (header.mask.width, header.mask.height, header.mask.tile_width,
          header.mask.tile_height, header.mask.compression, header.mask.predictor), _INT32),
        ("TileOffsets", header.tile_offsets, _INT64),
        ("TileByteCounts", header.tile_byte_counts, _INT64),
    ]
    for name, numbers, (low, high) in codes:
        if numbers and (min(numbers) < low or max(numbers) > high):
            bad = next(v for v in numbers if not low <= v <= high)
            raise TiffError(f"corrupt TIFF: {name} value {bad} is outside [{low}, {high}]")
