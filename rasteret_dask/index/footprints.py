"""CRS84 footprints: range checks, antimeridian splitting and bounding boxes that cross it.

A footprint is stored in OGC:CRS84 (longitude, latitude). Coordinates outside
[-180, 180] x [-90, 90] cannot be CRS84 (metres labelled as degrees) and are refused. A polygon
whose edges jump more than 180 degrees of longitude crosses the antimeridian the usual way
(179.5 -> -179.5); it is split at +/-180 into a MultiPolygon (RFC 7946, section 3.1.9). A
footprint whose parts are best covered by a longitude interval across the antimeridian gets a
bounding box with west > east (RFC 7946, section 5.2), kept narrower than 180 degrees so that
such boxes are exactly those with ``west > 0 > east``. A record without a footprint gets one
from its header (:func:`header_footprints`: the raster's extent, reprojected). Pure: no I/O.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import shapely
from shapely.geometry.base import BaseGeometry

from .. import schema as S

__all__ = [
    "footprint_gap_message",
    "header_footprints",
    "intersecting_ids",
    "LAT_LIMIT",
    "LON_LIMIT",
    "crossing_mask",
    "lonlat_bounds",
    "out_of_range_mask",
    "split_at_antimeridian",
    "union_bounds",
]

LON_LIMIT = 180.0
LAT_LIMIT = 90.0
_TOLERANCE = 1e-9  # degrees of rounding noise accepted past the limits
_POLYGON = 3


def out_of_range_mask(bounds: np.ndarray) -> np.ndarray:
    """Rows of ``(minx, miny, maxx, maxy)`` bounds that cannot be CRS84 (or are not finite).

    Parameters
    ----------
    bounds : numpy.ndarray
        ``(n, 4)`` plain bounds, as ``shapely.bounds`` gives them.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the offending rows.
    """
    bounds = np.asarray(bounds, dtype=np.float64).reshape(-1, 4)
    lon = np.abs(bounds[:, [0, 2]]) > LON_LIMIT + _TOLERANCE
    lat = np.abs(bounds[:, [1, 3]]) > LAT_LIMIT + _TOLERANCE
    return lon.any(axis=1) | lat.any(axis=1) | ~np.isfinite(bounds).all(axis=1)


def _jumps(x: np.ndarray) -> np.ndarray:
    """Per edge of a ring: -1, 0 or +1 turns of 360 degrees that make the edge the short way.

    An edge between two points both on the antimeridian (a whole-world box) is not a jump.
    """
    step = np.diff(x)
    on_line = (np.abs(x[1:]) == LON_LIMIT) & (np.abs(x[:-1]) == LON_LIMIT)
    turns = np.where(np.abs(step) > LON_LIMIT, np.sign(step), 0.0)
    return np.where(on_line, 0.0, turns)


def crossing_mask(geoms: np.ndarray) -> np.ndarray:
    """Footprints with a polygon ring edge that jumps more than 180 degrees of longitude.

    Parameters
    ----------
    geoms : numpy.ndarray
        Shapely geometries in CRS84.

    Returns
    -------
    numpy.ndarray
        Boolean mask: True where the footprint crosses the antimeridian as written.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = np.zeros(len(geoms), dtype=bool)
    if not len(geoms):
        return out
    # an edge jumping more than 180 degrees makes the plain extent wider than 180: test only those
    bounds = shapely.bounds(geoms).reshape(-1, 4)
    wide = np.flatnonzero(bounds[:, 2] - bounds[:, 0] > LON_LIMIT)
    if not len(wide):
        return out
    parts, part_of = shapely.get_parts(geoms[wide], return_index=True)
    polygons = shapely.get_type_id(parts) == _POLYGON
    parts, part_of = parts[polygons], part_of[polygons]
    if not len(parts):
        return out
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    coords, coord_of = shapely.get_coordinates(rings, return_index=True)
    x = coords[:, 0]
    same_ring = coord_of[1:] == coord_of[:-1]
    jumped = same_ring & (_jumps(x) != 0)
    out[wide[part_of[ring_of[coord_of[1:][jumped]]]]] = True
    return out


def _unwrap(x: np.ndarray) -> np.ndarray | None:
    """Ring longitudes made continuous (each edge the short way); None when the ring winds
    around a pole (its unwrapped end is 360 degrees from its start)."""
    u = x[0] + np.concatenate([[0.0], np.cumsum(np.diff(x) - 360.0 * _jumps(x))])
    if abs(u[-1] - u[0]) > _TOLERANCE:
        return None
    return u


def _polygon_parts(geom: BaseGeometry) -> list[BaseGeometry]:
    parts = shapely.get_parts(geom)
    out = []
    for part in parts:
        if shapely.get_type_id(part) == _POLYGON and not part.is_empty and part.area > 0:
            out.append(part)
        elif shapely.get_type_id(part) in (6, 7):  # MultiPolygon, GeometryCollection
            out.extend(_polygon_parts(part))
    return out


def _split_polygon(polygon: BaseGeometry) -> list[BaseGeometry] | None:
    """The parts of one polygon east and west of the antimeridian; None to keep it whole."""
    exterior = shapely.get_coordinates(polygon.exterior)
    x = _unwrap(exterior[:, 0])
    if x is None:
        return None  # encloses a pole: not an antimeridian crossing
    low, high = float(x.min()), float(x.max())
    if low < -LON_LIMIT and high > LON_LIMIT:
        return None  # wider than the world: leave it as written
    if low < -LON_LIMIT:
        x = x + 360.0  # cross at +180 rather than -180
    centre = (float(x.min()) + float(x.max())) / 2
    holes = []
    for ring in polygon.interiors:
        coords = shapely.get_coordinates(ring)
        hx = _unwrap(coords[:, 0])
        if hx is None:
            return None
        hx = hx + 360.0 * np.round((centre - (hx.min() + hx.max()) / 2) / 360.0)
        holes.append(np.column_stack([hx, coords[:, 1]]))
    unwrapped = shapely.Polygon(np.column_stack([x, exterior[:, 1]]), holes)
    if not unwrapped.is_valid:
        unwrapped = shapely.make_valid(unwrapped)
    west_edge, east_edge = float(x.min()) - 1.0, float(x.max()) + 1.0
    east = shapely.intersection(unwrapped, shapely.box(west_edge, -LAT_LIMIT, LON_LIMIT, LAT_LIMIT))
    west = shapely.intersection(unwrapped, shapely.box(LON_LIMIT, -LAT_LIMIT, east_edge, LAT_LIMIT))
    west = shapely.transform(west, lambda xy: xy - np.array([360.0, 0.0]))
    return _polygon_parts(east) + _polygon_parts(west)


def split_at_antimeridian(geom: BaseGeometry) -> BaseGeometry:
    """``geom`` with every polygon that crosses the antimeridian split at +/-180.

    Longitudes of a crossing polygon are made continuous (each edge taken the short way), the
    polygon is cut at 180 and its part beyond is moved back by 360 degrees: the result is a
    MultiPolygon whose parts share the antimeridian as an edge (RFC 7946, section 3.1.9).
    Polygons that do not cross, and rings that wind around a pole, are kept as written.

    Parameters
    ----------
    geom : shapely geometry
        A footprint in CRS84.

    Returns
    -------
    shapely geometry
        ``geom`` itself when nothing crosses, else a (Multi)Polygon.
    """
    if not crossing_mask(np.array([geom], dtype=object))[0]:
        return geom
    parts: list[BaseGeometry] = []
    changed = False
    for part in shapely.get_parts(geom):
        pieces = None
        if shapely.get_type_id(part) == _POLYGON and crossing_mask(np.array([part], dtype=object))[0]:
            pieces = _split_polygon(part)
        if not pieces:  # not split (a polar ring), or nothing with an area came out
            parts.append(part)
        else:
            parts.extend(pieces)
            changed = True
    if not changed:
        return geom
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _wrapped_interval(low: np.ndarray, high: np.ndarray) -> tuple[float, float] | None:
    """(west, east) of the narrowest cover of the longitude intervals ``[low, high]`` across
    the antimeridian, when it is narrower than both the plain cover and 180 degrees."""
    if len(low) < 2:
        return None
    order = np.argsort(low, kind="stable")
    low, reach = low[order], np.maximum.accumulate(high[order])
    gaps = low[1:] - reach[:-1]  # > 0 between the merged intervals
    widest = int(np.argmax(gaps))
    around = low[0] + 360.0 - reach[-1]  # the gap across the antimeridian
    if gaps[widest] <= max(around, 0.0) or 360.0 - gaps[widest] >= LON_LIMIT:
        return None
    return float(low[widest + 1]), float(reach[widest])


def lonlat_bounds(geoms: np.ndarray) -> np.ndarray:
    """``(west, south, east, north)`` per footprint; ``west > east`` across the antimeridian.

    A footprint gets a crossing box when its parts (a split polygon, islands on both sides of
    the date line) are covered by an interval across the antimeridian narrower than their plain
    extent and than 180 degrees; every other footprint keeps its plain bounds.

    Parameters
    ----------
    geoms : numpy.ndarray
        Shapely geometries in CRS84 (already split where they cross).

    Returns
    -------
    numpy.ndarray
        ``(n, 4)`` float64 bounds.
    """
    geoms = np.asarray(geoms, dtype=object)
    bounds = shapely.bounds(geoms).reshape(-1, 4)
    wide = (bounds[:, 2] - bounds[:, 0] > LON_LIMIT) & (shapely.get_num_geometries(geoms) > 1)
    for row in np.flatnonzero(wide):
        parts = shapely.bounds(shapely.get_parts(geoms[row]))
        cover = _wrapped_interval(parts[:, 0], parts[:, 2])
        if cover is not None:
            bounds[row, 0], bounds[row, 2] = cover
    return bounds


def union_bounds(minx: np.ndarray, miny: np.ndarray, maxx: np.ndarray, maxy: np.ndarray
                 ) -> tuple[float, float, float, float] | None:
    """The bbox covering footprint bboxes (as stored: west > east across the antimeridian).

    Without crossing boxes it is the plain min/max. With some, the union is the narrowest
    longitude cover on the circle, crossing the antimeridian (west > east, RFC 7946 section
    5.2) when that is narrower than 180 degrees, else the whole range [-180, 180].

    Parameters
    ----------
    minx, miny, maxx, maxy : numpy.ndarray
        The ``bbox_*`` columns (nulls as NaN are ignored).

    Returns
    -------
    tuple of float or None
        ``(west, south, east, north)``; None when there is no finite box.
    """
    boxes = np.column_stack([np.asarray(v, dtype=np.float64) for v in (minx, miny, maxx, maxy)])
    boxes = boxes[np.isfinite(boxes).all(axis=1)]
    if not len(boxes):
        return None
    south, north = float(boxes[:, 1].min()), float(boxes[:, 3].max())
    crossing = boxes[:, 0] > boxes[:, 2]
    if not crossing.any():
        return float(boxes[:, 0].min()), south, float(boxes[:, 2].max()), north
    plain = boxes[~crossing]
    low = np.concatenate([plain[:, 0], boxes[crossing, 0], np.full(crossing.sum(), -LON_LIMIT)])
    high = np.concatenate([plain[:, 2], np.full(crossing.sum(), LON_LIMIT), boxes[crossing, 2]])
    cover = _wrapped_interval(low, high)
    if cover is None:
        return -LON_LIMIT, south, LON_LIMIT, north
    return cover[0], south, cover[1], north


def _extent(metadata: dict) -> BaseGeometry | None:
    """The raster's extent polygon in its own CRS, or None when the header lacks a part."""
    transform = metadata.get("transform")
    width, height = metadata.get("image_width"), metadata.get("image_height")
    if not transform or len(transform) < 6 or not width or not height:
        return None
    a, b, c, d, e, f = (float(v) for v in transform[:6])
    corners = [(0, 0), (width, 0), (width, height), (0, height)]
    ring = [(a * col + b * row + c, d * col + e * row + f) for col, row in corners]
    polygon = shapely.Polygon(ring)
    if not polygon.is_valid or polygon.area == 0:
        return None
    return shapely.geometry.polygon.orient(polygon)


def _header_crs(metadata: dict) -> str | None:
    """The CRS a header states, as pyproj input: its EPSG code, else the WKT rebuilt from its
    GeoKeys; None without either."""
    if metadata.get("crs_epsg"):
        return f"EPSG:{int(metadata['crs_epsg'])}"
    return metadata.get("crs_wkt") or None


def header_footprints(metadata: list[dict | None]) -> np.ndarray:
    """CRS84 footprints of rasters from their header metadata (``{band}_metadata`` values).

    Each footprint is the raster's extent (``transform``, ``image_width``,
    ``image_height``) in its CRS (``crs_epsg``, else the ``crs_wkt`` rebuilt from its
    GeoKeys), edges densified and reprojected to CRS84, split at the antimeridian when it
    crosses it. A raster on another body than Earth (Mars, the Moon, ...) gets its extent in
    its own body's longitude/latitude instead: nothing transforms between bodies, and its
    records are found by queries in that body's CRSs.

    Parameters
    ----------
    metadata : list of dict or None
        One header metadata dict per record.

    Returns
    -------
    numpy.ndarray
        Shapely geometries; None where the header has no CRS, transform or size, or
        where the extent does not reproject into CRS84's range.
    """
    from ..plan.geometry import CelestialBodyError, body_lonlat, reproject_geometries

    out = np.full(len(metadata), None, dtype=object)
    for row, md in enumerate(metadata):
        crs = None if not md else _header_crs(md)
        extent = None if crs is None else _extent(md)
        if extent is None:
            continue
        try:
            try:
                shape = reproject_geometries([extent], crs, "OGC:CRS84")[0]
            except CelestialBodyError:
                shape = reproject_geometries([extent], crs, body_lonlat(crs))[0]
        except (ValueError, RuntimeError):
            continue  # outside the CRS's domain: the record stays without a footprint
        if out_of_range_mask(np.array([shapely.bounds(shape)]))[0]:
            continue
        out[row] = split_at_antimeridian(shape if shape.is_valid else shapely.make_valid(shape))
    return out


def footprint_gap_message(table: pa.Table, shown: int = 5) -> str | None:
    """Why records without a footprint escape a geometry query (None when there are none).

    Parameters
    ----------
    table : pyarrow.Table
        ``id`` (and ``enrich_errors`` when the index has it) of the records whose footprint
        is null.
    shown : int, default 5
        Records named in the message.

    Returns
    -------
    str or None
    """
    if not table.num_rows:
        return None
    errors = table["enrich_errors"].to_pylist() if "enrich_errors" in table.column_names else None
    lines = []
    for row, record in enumerate(table["id"].to_pylist()[:shown]):
        failures = dict(errors[row]) if errors is not None and errors[row] else {}
        reason = (f"its header could not be read ({next(iter(failures.values()))})"
                  if failures else "it has not been enriched yet")
        lines.append(f"record {record!r}: no footprint (geometry null) and {reason}")
    more = table.num_rows - len(lines)
    tail = f"; and {more} more record(s)" if more > 0 else ""
    return (f"{table.num_rows} record(s) matching the other filters have no footprint, so no "
            "geometry can select them (enrichment fills footprints from the COG headers: run "
            f"collection.enrich()): {'; '.join(lines)}{tail}")


def intersecting_ids(dataset: ds.Dataset, filter: ds.Expression | None,
                     geometry: shapely.Geometry) -> pa.Array:
    """Ids of ``dataset``'s records (under ``filter``) whose footprint intersects ``geometry``
    (CRS84), tested exactly with shapely on the footprints read (only ``id`` and ``geometry``)."""
    table = dataset.to_table(columns=[S.ID, S.GEOMETRY], filter=filter)
    footprints = shapely.from_wkb(table[S.GEOMETRY].to_numpy(zero_copy_only=False))
    return table[S.ID].filter(pa.array(shapely.intersects(footprints, geometry))).combine_chunks()
