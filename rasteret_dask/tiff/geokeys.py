"""GeoTIFF georeferencing: the GeoKeyDirectory, the EPSG code and the affine transform.

Follows the GeoTIFF 1.1 standard (OGC 19-008r4) and GDAL's reading conventions: pixel scale +
tiepoint take precedence over the model transformation matrix, and a RasterPixelIsPoint file
gets GDAL's default half-pixel shift so the transform is always pixel-corner based.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "GT_MODEL_TYPE",
    "GT_RASTER_TYPE",
    "GEOGRAPHIC_TYPE",
    "PROJECTED_CS_TYPE",
    "RASTER_PIXEL_IS_AREA",
    "RASTER_PIXEL_IS_POINT",
    "USER_DEFINED",
    "GeoKeyValue",
    "parse_geo_keys",
    "epsg_from_geo_keys",
    "is_pixel_is_point",
    "affine_from_tags",
]

GT_MODEL_TYPE = 1024
GT_RASTER_TYPE = 1025
GEOGRAPHIC_TYPE = 2048
PROJECTED_CS_TYPE = 3072
RASTER_PIXEL_IS_AREA = 1
RASTER_PIXEL_IS_POINT = 2
USER_DEFINED = 32767

_GEO_DOUBLE_PARAMS = 34736
_GEO_ASCII_PARAMS = 34737
_GEO_KEY_DIRECTORY = 34735

GeoKeyValue = int | float | str | tuple[int, ...] | tuple[float, ...]


def parse_geo_keys(
    directory: Sequence[int],
    doubles: Sequence[float] | None = None,
    ascii_params: str | None = None,
) -> dict[int, GeoKeyValue]:
    """Decode a GeoKeyDirectory (tag 34735) into ``{key id: value}``.

    Short values stored in the directory are ints; values in GeoDoubleParams are floats (tuples
    when count > 1); values in GeoAsciiParams are strings without the ``|`` terminator. Keys that
    point at a parameter tag that is absent, or out of its bounds, are left out. Raises
    ValueError for a directory that is too short for its declared number of keys.
    """
    if len(directory) < 4:
        raise ValueError(f"GeoKeyDirectory has {len(directory)} values, expected at least 4")
    n_keys = int(directory[3])
    if len(directory) < 4 + 4 * n_keys:
        raise ValueError(
            f"GeoKeyDirectory declares {n_keys} keys but holds only {len(directory)} values"
        )
    keys: dict[int, GeoKeyValue] = {}
    for i in range(n_keys):
        key_id, location, count, value = (int(v) for v in directory[4 + 4 * i : 8 + 4 * i])
        if location == 0:
            keys[key_id] = value
        elif location == _GEO_KEY_DIRECTORY:
            shorts = tuple(int(v) for v in directory[value : value + count])
            if len(shorts) == count:
                keys[key_id] = shorts[0] if count == 1 else shorts
        elif location == _GEO_DOUBLE_PARAMS and doubles is not None:
            vals = tuple(float(v) for v in doubles[value : value + count])
            if len(vals) == count:
                keys[key_id] = vals[0] if count == 1 else vals
        elif location == _GEO_ASCII_PARAMS and ascii_params is not None:
            text = ascii_params[value : value + count]
            if len(text) == count:
                keys[key_id] = text.rstrip("|\x00")
    return keys


def epsg_from_geo_keys(keys: dict[int, GeoKeyValue]) -> int | None:
    """EPSG code of the file's CRS: ProjectedCSTypeGeoKey, else GeographicTypeGeoKey; None when
    absent or user-defined (32767)."""
    for key in (PROJECTED_CS_TYPE, GEOGRAPHIC_TYPE):
        if key in keys:
            value = keys[key]
            if isinstance(value, int) and 0 < value < USER_DEFINED:
                return value
            return None
    return None


def is_pixel_is_point(keys: dict[int, GeoKeyValue]) -> bool:
    """Whether GTRasterTypeGeoKey says RasterPixelIsPoint (GDAL then shifts by half a pixel)."""
    return keys.get(GT_RASTER_TYPE) == RASTER_PIXEL_IS_POINT


def affine_from_tags(
    pixel_scale: Sequence[float] | None,
    tiepoint: Sequence[float] | None,
    model_transformation: Sequence[float] | None,
    *,
    pixel_is_point: bool = False,
) -> tuple[float, float, float, float, float, float] | None:
    """The six affine coefficients (a, b, c, d, e, f) from the GeoTIFF model tags, or None when
    the file has no usable transform (no tags, or ground control points only)."""
    coeffs: list[float] | None = None
    if (
        pixel_scale is not None
        and len(pixel_scale) >= 2
        and pixel_scale[0] != 0
        and pixel_scale[1] != 0
        and tiepoint is not None
        and len(tiepoint) >= 6
    ):
        sx, sy = float(pixel_scale[0]), float(pixel_scale[1])
        i, j, x, y = (float(tiepoint[k]) for k in (0, 1, 3, 4))
        coeffs = [sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy]
    elif model_transformation is not None and len(model_transformation) >= 16:
        m = [float(v) for v in model_transformation]
        coeffs = [m[0], m[1], m[3], m[4], m[5], m[7]]
    if coeffs is None or not all(math.isfinite(v) for v in coeffs):
        return None
    if pixel_is_point:
        a, b, c, d, e, f = coeffs
        coeffs[2] = c - (a * 0.5 + b * 0.5)
        coeffs[5] = f - (d * 0.5 + e * 0.5)
    a, b, c, d, e, f = coeffs
    return (a, b, c, d, e, f)
