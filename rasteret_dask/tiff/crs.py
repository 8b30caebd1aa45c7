"""The CRS of a GeoTIFF whose GeoKeys give no EPSG code, rebuilt from the keys as GDAL does.

User-defined projections (``ProjectedCSTypeGeoKey`` 32767 with ``ProjCoordTransGeoKey`` and
its parameters, or ``ProjectionGeoKey`` naming an EPSG conversion), user-defined geographic
CRSs (datum, ellipsoid axes, prime meridian, angular unit: other planets' bodies included)
and GDAL's ``ESRI PE String`` citation (what GDAL writes for projections GeoTIFF has no code
for, such as geostationary) become a ``pyproj.CRS``.

The rules follow libgeotiff's ``GTIFGetDefn`` / ``GTIFFetchProjParms`` (which keys each
projection method reads, with their fallbacks and defaults) and GDAL's ``GTIFGetOGISDefn``
(which WKT 1 projection each method becomes); the WKT 1 text is then read by PROJ, as GDAL
does. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import pyproj
from pyproj.database import get_units_map
from pyproj.exceptions import CRSError

from .geokeys import GEOGRAPHIC_TYPE, GT_MODEL_TYPE, PROJECTED_CS_TYPE, USER_DEFINED, GeoKeyValue

__all__ = ["GeoKeyCrsError", "crs_from_geo_keys", "PROJECTION_METHODS"]

# --- GeoKey ids (GeoTIFF 1.1, OGC 19-008r4) -----------------------------------------------
GT_CITATION = 1026
GEOG_CITATION = 2049
GEOG_DATUM = 2050
GEOG_PRIME_MERIDIAN = 2051
GEOG_ANGULAR_UNITS = 2054
GEOG_ANGULAR_UNIT_SIZE = 2055
GEOG_ELLIPSOID = 2056
GEOG_SEMI_MAJOR = 2057
GEOG_SEMI_MINOR = 2058
GEOG_INV_FLATTENING = 2059
GEOG_PRIME_MERIDIAN_LONG = 2061
GEOG_TOWGS84 = 2062
PCS_CITATION = 3073
PROJECTION = 3074
PROJ_COORD_TRANS = 3075
PROJ_LINEAR_UNITS = 3076
PROJ_LINEAR_UNIT_SIZE = 3077
STD_PARALLEL_1 = 3078
STD_PARALLEL_2 = 3079
NAT_ORIGIN_LONG = 3080
NAT_ORIGIN_LAT = 3081
FALSE_EASTING = 3082
FALSE_NORTHING = 3083
FALSE_ORIGIN_LONG = 3084
FALSE_ORIGIN_LAT = 3085
FALSE_ORIGIN_EASTING = 3086
FALSE_ORIGIN_NORTHING = 3087
CENTER_LONG = 3088
CENTER_LAT = 3089
CENTER_EASTING = 3090
CENTER_NORTHING = 3091
SCALE_AT_NAT_ORIGIN = 3092
SCALE_AT_CENTER = 3093
AZIMUTH_ANGLE = 3094
STRAIGHT_VERT_POLE_LONG = 3095
RECTIFIED_GRID_ANGLE = 3096

MODEL_PROJECTED = 1
MODEL_GEOGRAPHIC = 2
_PE_PREFIX = "ESRI PE String = "
_DEGREE = ("degree", 0.0174532925199433)

# Parameter sources: each is a key chain (first key present wins) and a default; libgeotiff's
# GTIFFetchProjParms reads the same chains.
_LONG = ((NAT_ORIGIN_LONG, FALSE_ORIGIN_LONG, CENTER_LONG), 0.0)
_LAT = ((NAT_ORIGIN_LAT, FALSE_ORIGIN_LAT, CENTER_LAT), 0.0)
_POLE_LONG = ((STRAIGHT_VERT_POLE_LONG, NAT_ORIGIN_LONG, FALSE_ORIGIN_LONG, CENTER_LONG), 0.0)
_SCALE = ((SCALE_AT_NAT_ORIGIN,), 1.0)
_SCALE_OR_CENTER = ((SCALE_AT_NAT_ORIGIN, SCALE_AT_CENTER), 1.0)
_SP1 = ((STD_PARALLEL_1,), 0.0)
_SP2 = ((STD_PARALLEL_2,), 0.0)
_AZIMUTH = ((AZIMUTH_ANGLE,), 0.0)
_GRID_ANGLE = ((RECTIFIED_GRID_ANGLE,), 90.0)
_FE = ((FALSE_EASTING, CENTER_EASTING, FALSE_ORIGIN_EASTING), 0.0)
_FN = ((FALSE_NORTHING, CENTER_NORTHING, FALSE_ORIGIN_NORTHING), 0.0)
_LINEAR = frozenset({_FE, _FN})

_ParamSource = tuple[tuple[int, ...], float]
_Method = tuple[str, str, tuple[tuple[str, _ParamSource], ...]]

PROJECTION_METHODS: dict[int, _Method] = {
    # ProjCoordTransGeoKey code: (name, WKT 1 projection, ((WKT 1 parameter, source), ...))
    1: ("Transverse Mercator", "Transverse_Mercator", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("scale_factor", _SCALE),
        ("false_easting", _FE), ("false_northing", _FN))),
    3: ("Hotine Oblique Mercator", "Hotine_Oblique_Mercator", (
        ("latitude_of_center", _LAT), ("longitude_of_center", _LONG), ("azimuth", _AZIMUTH),
        ("rectified_grid_angle", _GRID_ANGLE), ("scale_factor", _SCALE_OR_CENTER),
        ("false_easting", _FE), ("false_northing", _FN))),
    7: ("Mercator", "Mercator_1SP", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("scale_factor", _SCALE),
        ("false_easting", _FE), ("false_northing", _FN))),
    8: ("Lambert Conformal Conic (2SP)", "Lambert_Conformal_Conic_2SP", (
        ("standard_parallel_1", _SP1), ("standard_parallel_2", _SP2),
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    9: ("Lambert Conformal Conic (1SP)", "Lambert_Conformal_Conic_1SP", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("scale_factor", _SCALE),
        ("false_easting", _FE), ("false_northing", _FN))),
    10: ("Lambert Azimuthal Equal Area", "Lambert_Azimuthal_Equal_Area", (
        ("latitude_of_center", _LAT), ("longitude_of_center", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    11: ("Albers Equal Area", "Albers_Conic_Equal_Area", (
        ("standard_parallel_1", _SP1), ("standard_parallel_2", _SP2),
        ("latitude_of_center", _LAT), ("longitude_of_center", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    12: ("Azimuthal Equidistant", "Azimuthal_Equidistant", (
        ("latitude_of_center", _LAT), ("longitude_of_center", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    13: ("Equidistant Conic", "Equidistant_Conic", (
        ("standard_parallel_1", _SP1), ("standard_parallel_2", _SP2),
        ("latitude_of_center", _LAT), ("longitude_of_center", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    14: ("Stereographic", "Stereographic", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("scale_factor", _SCALE),
        ("false_easting", _FE), ("false_northing", _FN))),
    15: ("Polar Stereographic", "Polar_Stereographic", (
        ("latitude_of_origin", _LAT), ("central_meridian", _POLE_LONG),
        ("scale_factor", _SCALE_OR_CENTER), ("false_easting", _FE), ("false_northing", _FN))),
    16: ("Oblique Stereographic", "Oblique_Stereographic", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("scale_factor", _SCALE),
        ("false_easting", _FE), ("false_northing", _FN))),
    17: ("Equirectangular", "Equirectangular", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG),
        ("standard_parallel_1", _SP1), ("false_easting", _FE), ("false_northing", _FN))),
    18: ("Cassini-Soldner", "Cassini_Soldner", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    19: ("Gnomonic", "Gnomonic", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    20: ("Miller Cylindrical", "Miller_Cylindrical", (
        ("latitude_of_center", _LAT), ("longitude_of_center", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    21: ("Orthographic", "Orthographic", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    22: ("Polyconic", "Polyconic", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    23: ("Robinson", "Robinson", (
        ("longitude_of_center", _LONG), ("false_easting", _FE), ("false_northing", _FN))),
    24: ("Sinusoidal", "Sinusoidal", (
        ("longitude_of_center", _LONG), ("false_easting", _FE), ("false_northing", _FN))),
    25: ("Van der Grinten", "VanDerGrinten", (
        ("central_meridian", _LONG), ("false_easting", _FE), ("false_northing", _FN))),
    26: ("New Zealand Map Grid", "New_Zealand_Map_Grid", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    27: ("Transverse Mercator (South Orientated)", "Transverse_Mercator_South_Orientated", (
        ("latitude_of_origin", _LAT), ("central_meridian", _LONG), ("scale_factor", _SCALE),
        ("false_easting", _FE), ("false_northing", _FN))),
    28: ("Cylindrical Equal Area", "Cylindrical_Equal_Area", (
        ("standard_parallel_1", _SP1), ("central_meridian", _LONG), ("false_easting", _FE),
        ("false_northing", _FN))),
    # GDAL's private code for the azimuth-centre variant (false easting/northing at the
    # projection centre), which GeoTIFF 1.1 has no code for
    9815: ("Hotine Oblique Mercator (variant B)", "Hotine_Oblique_Mercator_Azimuth_Center", (
        ("latitude_of_center", _LAT), ("longitude_of_center", _LONG), ("azimuth", _AZIMUTH),
        ("rectified_grid_angle", _GRID_ANGLE), ("scale_factor", _SCALE_OR_CENTER),
        ("false_easting", _FE), ("false_northing", _FN))),
}
"""The ProjCoordTransGeoKey methods rebuilt; GeoTIFF's other codes (2 modified Alaska, 4-6
Laborde/Rosenmund/spherical oblique Mercator) are refused, as GDAL leaves them unset."""

_MERCATOR_2SP = ("Mercator_2SP", (
    ("standard_parallel_1", _SP1), ("latitude_of_origin", _LAT), ("central_meridian", _LONG),
    ("false_easting", _FE), ("false_northing", _FN)))


class GeoKeyCrsError(ValueError):
    """GeoKeys that describe a CRS this module cannot rebuild (the message says why)."""


@lru_cache(maxsize=4)
def _units(category: str) -> dict[int, tuple[str, float]]:
    """EPSG unit code -> (name, factor to metres or radians) from PROJ's database."""
    out = {}
    for unit in get_units_map(auth_name="EPSG", category=category).values():
        if unit.code.isdigit() and unit.conv_factor:
            out[int(unit.code)] = (unit.name, float(unit.conv_factor))
    return out


def _number(keys: Mapping[int, GeoKeyValue], key: int) -> float | None:
    value = keys.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tuple) and value and isinstance(value[0], int | float):
        return float(value[0])
    return None


def _code(keys: Mapping[int, GeoKeyValue], key: int) -> int | None:
    """A code key's value; None when absent, user-defined or not a code."""
    value = keys.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < USER_DEFINED:
        return value
    return None


def _text(keys: Mapping[int, GeoKeyValue], key: int) -> str | None:
    value = keys.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _quote(name: str) -> str:
    return '"' + name.replace('"', "'") + '"'


def _fmt(value: float) -> str:
    return repr(float(value))


def _citation_fields(text: str | None) -> dict[str, str]:
    """GDAL's ``Name = value|...`` citation form (``GCS Name``, ``Datum``, ``Ellipsoid``,
    ``Primem``, ``AUnits``); a citation without it names the CRS (``GCS Name``)."""
    if not text:
        return {}
    if "=" not in text:
        return {"GCS Name": text}
    out = {}
    for part in text.split("|"):
        name, sep, value = part.partition("=")
        if sep and value.strip():
            out[name.strip()] = value.strip()
    return out


def _angular_unit(keys: Mapping[int, GeoKeyValue], names: dict[str, str]) -> tuple[str, float]:
    code = _code(keys, GEOG_ANGULAR_UNITS)
    if code is not None:
        unit = _units("angular").get(code)
        if unit is None:
            raise GeoKeyCrsError(f"GeogAngularUnitsGeoKey {code} is not an EPSG angular unit")
        return unit
    size = _number(keys, GEOG_ANGULAR_UNIT_SIZE)
    if size is not None and size > 0:
        return names.get("AUnits", "unknown"), size
    return _DEGREE


def _ellipsoid(keys: Mapping[int, GeoKeyValue], datum_code: int | None,
               names: dict[str, str]) -> tuple[str, float, float, int | None]:
    """(name, semi-major axis in metres, inverse flattening (0 for a sphere), EPSG code or
    None): the datum's ellipsoid, else GeogEllipsoidGeoKey's, the axis keys overriding."""
    code = _code(keys, GEOG_ELLIPSOID)
    known = None
    if code is not None:
        try:
            known = pyproj.crs.Ellipsoid.from_epsg(code)
        except CRSError as exc:
            raise GeoKeyCrsError(f"GeogEllipsoidGeoKey {code} is not an EPSG ellipsoid") from exc
    elif datum_code is not None:
        known = pyproj.crs.Datum.from_epsg(datum_code).ellipsoid
        ident = (known.to_json_dict().get("id") or {}) if known is not None else {}
        code = int(ident["code"]) if ident.get("authority") == "EPSG" else None
    name, a, rf = names.get("Ellipsoid", "unknown"), None, None
    if known is not None:
        name, a, rf = known.name, known.semi_major_metre, known.inverse_flattening
    semi_major = _number(keys, GEOG_SEMI_MAJOR)
    semi_minor = _number(keys, GEOG_SEMI_MINOR)
    inverse = _number(keys, GEOG_INV_FLATTENING)
    if semi_major is not None:
        a = semi_major
    if inverse is not None:
        rf = inverse
    elif semi_minor is not None and a is not None:
        rf = 0.0 if semi_minor == a else a / (a - semi_minor)
    if a is None or not a > 0 or rf is None or not math.isfinite(rf):
        raise GeoKeyCrsError("the GeoKeys give no ellipsoid (GeogGeodeticDatumGeoKey, "
                             "GeogEllipsoidGeoKey or GeogSemiMajorAxisGeoKey)")
    if known is not None and not (math.isclose(known.semi_major_metre, a)
                                  and math.isclose(known.inverse_flattening, rf,
                                                   abs_tol=1e-9)):
        code = None  # the axes the file gives win over its code
    return name, a, rf, code


def _prime_meridian(keys: Mapping[int, GeoKeyValue], names: dict[str, str],
                    unit_degrees: float) -> str:
    code = _code(keys, GEOG_PRIME_MERIDIAN)
    if code is not None:
        try:
            return pyproj.crs.PrimeMeridian.from_epsg(code).to_wkt("WKT1_GDAL")
        except CRSError as exc:
            raise GeoKeyCrsError(f"GeogPrimeMeridianGeoKey {code} is not an EPSG prime "
                                 "meridian") from exc
    longitude = (_number(keys, GEOG_PRIME_MERIDIAN_LONG) or 0.0) * unit_degrees
    return f"PRIMEM[{_quote(names.get('Primem', 'Greenwich'))},{_fmt(longitude)}]"


def _geogcs(keys: Mapping[int, GeoKeyValue]) -> str:
    """The WKT 1 GEOGCS of the keys: GeographicTypeGeoKey's EPSG CRS, else the datum,
    ellipsoid, prime meridian and angular unit the keys define."""
    code = _code(keys, GEOGRAPHIC_TYPE)
    if code is not None:
        try:
            return pyproj.CRS.from_epsg(code).to_wkt("WKT1_GDAL")
        except CRSError as exc:
            raise GeoKeyCrsError(f"GeographicTypeGeoKey {code} is not an EPSG CRS") from exc
    names = _citation_fields(_text(keys, GEOG_CITATION))
    unit_name, unit_radians = _angular_unit(keys, names)
    datum_code = _code(keys, GEOG_DATUM)
    ell_name, a, rf, ell_code = _ellipsoid(keys, datum_code, names)
    spheroid = f"SPHEROID[{_quote(ell_name)},{_fmt(a)},{_fmt(rf)}"
    spheroid += f',AUTHORITY["EPSG","{ell_code}"]]' if ell_code else "]"
    if datum_code is not None:
        datum_name = pyproj.crs.Datum.from_epsg(datum_code).name
    else:
        datum_name = names.get("Datum", "unknown")
    towgs84 = keys.get(GEOG_TOWGS84)
    extra = ""
    if isinstance(towgs84, tuple) and len(towgs84) in (3, 7):
        extra = ",TOWGS84[" + ",".join(_fmt(v) for v in towgs84) + "]"
    authority = f',AUTHORITY["EPSG","{datum_code}"]' if datum_code and ell_code else ""
    datum = f"DATUM[{_quote(datum_name)},{spheroid}{extra}{authority}]"
    primem = _prime_meridian(keys, names, math.degrees(unit_radians))
    name = names.get("GCS Name", "unknown")
    return (f"GEOGCS[{_quote(name)},{datum},{primem},"
            f"UNIT[{_quote(unit_name)},{_fmt(unit_radians)}]]")


def _param(keys: Mapping[int, GeoKeyValue], source: _ParamSource) -> float:
    chain, default = source
    for key in chain:
        value = _number(keys, key)
        if value is not None:
            return value
    return default


def _linear_unit(keys: Mapping[int, GeoKeyValue]) -> tuple[str, float]:
    code = _code(keys, PROJ_LINEAR_UNITS)
    if code is not None:
        unit = _units("linear").get(code)
        if unit is None:
            raise GeoKeyCrsError(f"ProjLinearUnitsGeoKey {code} is not an EPSG linear unit")
        return unit
    size = _number(keys, PROJ_LINEAR_UNIT_SIZE)
    if size is not None and size > 0:
        return "unknown", size
    return "metre", 1.0


def _projected(keys: Mapping[int, GeoKeyValue], geogcs: str, unit_degrees: float) -> str:
    """The WKT 1 PROJCS of a ProjCoordTransGeoKey method and its parameter keys."""
    method = keys.get(PROJ_COORD_TRANS)
    if not isinstance(method, int) or method not in PROJECTION_METHODS:
        raise GeoKeyCrsError(f"ProjCoordTransGeoKey {method!r} is not a projection method "
                             "this reader rebuilds (GeoTIFF codes "
                             f"{sorted(PROJECTION_METHODS)})")
    _, projection, params = PROJECTION_METHODS[method]
    if method == 7 and STD_PARALLEL_1 in keys:
        projection, params = _MERCATOR_2SP  # GDAL: a standard parallel makes it Mercator 2SP
    values = []
    for name, source in params:
        value = _param(keys, source)
        if source not in _LINEAR and source not in (_SCALE, _SCALE_OR_CENTER):
            value *= unit_degrees  # angles are in GeogAngularUnits; WKT 1 wants degrees
        values.append(f"PARAMETER[{_quote(name)},{_fmt(value)}]")
    unit_name, unit_metres = _linear_unit(keys)
    name = _text(keys, PCS_CITATION) or _text(keys, GT_CITATION) or "unnamed"
    return (f"PROJCS[{_quote(name)},{geogcs},PROJECTION[{_quote(projection)}],"
            + ",".join(values) + f",UNIT[{_quote(unit_name)},{_fmt(unit_metres)}]]")


def _from_conversion(keys: Mapping[int, GeoKeyValue], geogcs: str, code: int) -> str:
    """The WKT 1 PROJCS of ProjectionGeoKey's EPSG conversion on the keys' geographic CRS
    (its parameters expressed in the keys' linear unit)."""
    try:
        conversion = pyproj.crs.CoordinateOperation.from_epsg(code)
    except CRSError as exc:
        raise GeoKeyCrsError(f"ProjectionGeoKey {code} is not an EPSG conversion") from exc
    unit_name, unit_metres = _linear_unit(keys)
    unit = {"type": "LinearUnit", "name": unit_name, "conversion_factor": unit_metres}
    cs = {"type": "CoordinateSystem", "subtype": "Cartesian", "axis": [
        {"name": "Easting", "abbreviation": "E", "direction": "east", "unit": unit},
        {"name": "Northing", "abbreviation": "N", "direction": "north", "unit": unit}]}
    # the conversion on any geographic CRS, written as WKT 1: its PROJECTION and PARAMETERs
    carrier = pyproj.crs.ProjectedCRS(conversion, cartesian_cs=cs,
                                      geodetic_crs=pyproj.CRS.from_epsg(4326))
    text = carrier.to_wkt("WKT1_GDAL")
    method = text[text.index("PROJECTION["):text.rindex(",UNIT[")]
    name = _text(keys, PCS_CITATION) or _text(keys, GT_CITATION) or conversion.name
    return (f"PROJCS[{_quote(name)},{geogcs},{method},"
            f"UNIT[{_quote(unit_name)},{_fmt(unit_metres)}]]")


def _esri_pe_string(keys: Mapping[int, GeoKeyValue]) -> str | None:
    for key in (PCS_CITATION, GT_CITATION):
        text = _text(keys, key)
        if text and text.startswith(_PE_PREFIX):
            return text[len(_PE_PREFIX):]
    return None


def crs_from_geo_keys(keys: Mapping[int, GeoKeyValue]) -> pyproj.CRS | None:
    """The CRS a GeoTIFF's GeoKeys define when they give no EPSG code.

    Parameters
    ----------
    keys
        Decoded GeoKeys (``geokeys.parse_geo_keys``).

    Returns
    -------
    pyproj.CRS or None
        None when the keys hold no CRS at all (no GeoKeys, or neither a projected nor a
        geographic model and no ESRI PE string: GDAL's LOCAL_CS, which has no place on Earth
        or any other body).

    Raises
    ------
    GeoKeyCrsError
        When the keys describe a CRS that cannot be rebuilt (an unknown projection method or
        unit code, no ellipsoid), or PROJ refuses the result; the message says which.
    """
    pe_string = _esri_pe_string(keys)
    if pe_string is not None:
        try:
            return pyproj.CRS.from_wkt(pe_string)
        except CRSError as exc:
            raise GeoKeyCrsError(f"the ESRI PE string citation is not a CRS: {exc}") from exc
    model = keys.get(GT_MODEL_TYPE)
    if model not in (MODEL_PROJECTED, MODEL_GEOGRAPHIC):
        if PROJECTED_CS_TYPE in keys and PROJ_COORD_TRANS in keys:
            model = MODEL_PROJECTED  # GDAL: a PCS key without GTModelTypeGeoKey is projected
        else:
            return None
    geogcs = _geogcs(keys)
    unit_radians = float(pyproj.CRS.from_wkt(geogcs).axis_info[0].unit_conversion_factor)
    unit_degrees = math.degrees(unit_radians)
    try:
        if model == MODEL_GEOGRAPHIC:
            if "AXIS[" not in geogcs:  # GDAL's geographic CRSs are latitude, longitude
                geogcs = geogcs[:-1] + ',AXIS["Latitude",NORTH],AXIS["Longitude",EAST]]'
            return pyproj.CRS.from_wkt(geogcs)
        if PROJ_COORD_TRANS in keys:
            return pyproj.CRS.from_wkt(_projected(keys, geogcs, unit_degrees))
        conversion = _code(keys, PROJECTION)
        if conversion is not None:
            return pyproj.CRS.from_wkt(_from_conversion(keys, geogcs, conversion))
    except CRSError as exc:
        raise GeoKeyCrsError(f"PROJ refuses the CRS the GeoKeys define: {exc}") from exc
    raise GeoKeyCrsError("a projected model (GTModelTypeGeoKey 1) without an EPSG code, "
                         "ProjCoordTransGeoKey or ProjectionGeoKey")
