"""Where and when the synthetic continental archive's records are (pure: no files, no I/O).

Tiles are laid out like Sentinel-2's MGRS tiles: in each UTM zone (northern hemisphere), square
images of ``side`` metres whose top-left corners sit at ``(k * step - 40, r * step + 40)``
(``99960, 5300040`` for a 109.8 km tile every 100 km, as Sentinel-2 has them), kept where the
image's outline meets both the zone's 6 degree band and the archive's bounding box.

Passes follow a simple sun-synchronous model: relative-orbit ground tracks run along meridians
every ``360 / 143`` degrees (Sentinel-2's 143 orbits per cycle); a tile is acquired by every
track whose swath covers at least a quarter of its width (the track within ``swath_km / 2``
plus a quarter tile of its centre, at its centre latitude), so most tiles have two or three
orbits (about 300,000 records a year over Europe). Each track is revisited every
``revisit_days`` by the constellation, the platforms taking turns (Sentinel-2A, then 2B five days
later), neighbouring tracks on different days (track ``k`` on days ``3k`` modulo the cycle).
A pass is sensed at 10:30 local solar time of its track's longitude, a few minutes earlier the
further north (the satellite descends at about 16.8 s per degree of latitude), plus up to half
a minute of jitter; a fraction ``drop`` of passes is missing (seeded). Every record's local solar
date (``groupby="solar_day"``) is therefore its pass's date.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EUROPE",
    "TRACK_SPACING",
    "ArchiveSpec",
    "Tiles",
    "Passes",
    "mgrs_tiles",
    "passes",
    "record_ids",
    "solar_dates",
]

EUROPE = (-10.0, 35.0, 45.0, 71.0)
"""Europe as a CRS84 bounding box (west, south, east, north)."""

TRACK_SPACING = 360.0 / 143.0
"""Degrees of longitude between neighbouring relative-orbit tracks."""

_FIRST_TRACK = 1.1  # longitude of track 0, degrees
_DESCENT = 100.6 * 60.0 / 360.0  # seconds per degree of latitude along a descending track
_LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_COLUMNS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_ROWS = "ABCDEFGHJKLMNPQRSTUV"


@dataclass(frozen=True)
class ArchiveSpec:
    """What the synthetic continental archive holds.

    Attributes
    ----------
    bbox : (west, south, east, north)
        CRS84 bounds the tiles must meet; default :data:`EUROPE`.
    zones : tuple of int
        UTM zones (north) tiled; default 29-38.
    start : datetime.date
        First day of the archive.
    months : int
        Calendar months covered from ``start``.
    pixels : int
        Side of a record's 10 m image (even: the 20 m SCL band is half of it); 10980 as
        Sentinel-2.
    step : float
        Metres between neighbouring tile origins (100 km as MGRS); at most the image's side.
    blocksize : int
        Tile size of the COGs (1024 as Sentinel-2's).
    overview_count : int, optional
        Overview levels of the COGs (GDAL's COG driver ``OVERVIEW_COUNT``: factors 2, 4, ...
        ``2**overview_count``); default None, the driver's ``OVERVIEWS=AUTO``, which stops
        once a level fits in one block (4 levels, down to 687 px, for 10980 px in 1024 px
        blocks). Deep overviews (7: 1/128) let a kilometre-scale read take a level near its
        own resolution, as producers that set the count have it.
    platforms : tuple of str
        Platform codes taking turns on each track (``"S2A"``: platform ``"sentinel-2a"``);
        every platform has its own COG of each band.
    revisit_days : int
        Days between passes of the constellation over one track.
    swath_km : float
        Swath width.
    drop : float
        Fraction of passes missing at random.
    seed : int
        Seed of the random parts (missing passes, time jitter, cloud cover).
    """

    bbox: tuple[float, float, float, float] = EUROPE
    zones: tuple[int, ...] = tuple(range(29, 39))
    start: dt.date = dt.date(2024, 1, 1)
    months: int = 12
    pixels: int = 10980
    step: float = 100_000.0
    blocksize: int = 1024
    overview_count: int | None = None
    platforms: tuple[str, ...] = ("S2A", "S2B")
    revisit_days: int = 5
    swath_km: float = 290.0
    drop: float = 0.02
    seed: int = 0
    end: dt.date = field(init=False)

    def __post_init__(self) -> None:
        west, south, east, north = (float(v) for v in self.bbox)
        if not (-180 <= west < east <= 180 and 0 <= south < north <= 84):
            raise ValueError(f"bbox must be (west, south, east, north) in the northern "
                             f"hemisphere, not {self.bbox!r}")
        if not self.zones or any(not 1 <= int(z) <= 60 for z in self.zones):
            raise ValueError(f"zones must be UTM zone numbers 1-60, not {self.zones!r}")
        if self.pixels <= 0 or self.pixels % 2:
            raise ValueError(f"pixels must be a positive even number, not {self.pixels!r}")
        if not 0 < self.step <= self.side:
            raise ValueError(f"step must be in (0, {self.side:g}] metres (the image's side), "
                             f"not {self.step!r}")
        if self.blocksize <= 0 or self.blocksize % 16:
            raise ValueError(f"blocksize must be a positive multiple of 16, not "
                             f"{self.blocksize!r}")
        if self.overview_count is not None and (
                isinstance(self.overview_count, bool) or not isinstance(self.overview_count, int)
                or not 1 <= self.overview_count <= 16):
            raise ValueError(f"overview_count must be None (the COG driver's AUTO) or a whole "
                             f"number of levels 1-16, not {self.overview_count!r}")
        if self.months < 1 or self.revisit_days < 1:
            raise ValueError(f"months and revisit_days must be at least 1, not "
                             f"{self.months!r} and {self.revisit_days!r}")
        codes = tuple(self.platforms)
        if not codes or len(set(codes)) != len(codes) or any(
                len(c) != 3 or not c.isalnum() or not c.isupper() for c in codes):
            raise ValueError(f"platforms must be distinct codes like 'S2A', not {codes!r}")
        if not 0.0 <= self.drop < 1.0 or self.swath_km <= 0:
            raise ValueError(f"drop must be in [0, 1) and swath_km positive, not {self.drop!r} "
                             f"and {self.swath_km!r}")
        years, month = divmod(self.start.month - 1 + self.months, 12)
        end = dt.date(self.start.year + years, month + 1,
                      min(self.start.day, calendar.monthrange(self.start.year + years,
                                                              month + 1)[1]))
        object.__setattr__(self, "bbox", (west, south, east, north))
        object.__setattr__(self, "zones", tuple(int(z) for z in self.zones))
        object.__setattr__(self, "platforms", codes)
        object.__setattr__(self, "end", end)

    @property
    def side(self) -> float:
        """Side of a record's image in metres (10 m pixels)."""
        return self.pixels * 10.0

    @property
    def days(self) -> int:
        """Days covered, ``start`` included, ``end`` excluded."""
        return (self.end - self.start).days

    @property
    def cycle_days(self) -> int:
        """Days until the same platform passes over a track again."""
        return self.revisit_days * len(self.platforms)


@dataclass(frozen=True)
class Tiles:
    """The archive's tiles in columns (one row per tile).

    ``x0``/``y0`` are the top-left corner in the zone's CRS (EPSG ``32600 + zone``), ``lon`` /
    ``lat`` the image centre in CRS84 and ``footprint`` the image's outline in CRS84 (shapely
    polygons, edges densified before reprojection).
    """

    name: np.ndarray
    zone: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    footprint: np.ndarray

    def __len__(self) -> int:
        return len(self.name)

    @property
    def epsg(self) -> np.ndarray:
        """EPSG code of each tile's UTM zone."""
        return 32600 + self.zone


@dataclass(frozen=True)
class Passes:
    """The archive's records in columns, in datetime order: the tile (row of :class:`Tiles`),
    track, platform (index into ``ArchiveSpec.platforms``), UTC datetime (``datetime64[us]``)
    and cloud cover (percent)."""

    tile: np.ndarray
    track: np.ndarray
    platform: np.ndarray
    datetime: np.ndarray
    cloud_cover: np.ndarray

    def __len__(self) -> int:
        return len(self.tile)


def _square_name(zone: int, x0: np.ndarray, y0: np.ndarray, lat: np.ndarray,
                 step: float) -> np.ndarray:
    """MGRS-like names: zone, latitude band of the centre, the 100 km square letters of the
    tile's top-left corner (plus its position in the square when ``step`` < 100 km)."""
    east = np.floor((x0 + 40.0) / 100_000.0).astype(int)
    north = np.floor((y0 - 40.0 - 1.0) / 100_000.0).astype(int)
    band = np.clip(np.floor((lat + 80.0) / 8.0).astype(int), 0, len(_LAT_BANDS) - 1)
    column_set, row_shift = ((zone - 1) % 3) * 8, 5 if zone % 2 == 0 else 0
    names = [f"{zone}{_LAT_BANDS[b]}{_COLUMNS[(column_set + e - 1) % 24]}"
             f"{_ROWS[(n + row_shift) % 20]}" for b, e, n in zip(band, east, north, strict=True)]
    if step < 100_000.0:
        sub_x = np.floor(((x0 + 40.0) % 100_000.0) / step).astype(int)
        sub_y = np.floor(((y0 - 40.0 - 1.0) % 100_000.0) / step).astype(int)
        names = [f"{n}{i:02d}{j:02d}" for n, i, j in zip(names, sub_x, sub_y, strict=True)]
    return np.array(names, dtype=object)


def mgrs_tiles(spec: ArchiveSpec) -> Tiles:
    """The MGRS-like tiles of ``spec`` (see the module docstring), zone by zone, west to east
    and north to south within a zone."""
    import pyproj
    import shapely

    west, south, east, north = spec.bbox
    side, step = spec.side, spec.step
    columns: dict[str, list] = {k: [] for k in ("name", "zone", "x0", "y0", "lon", "lat",
                                                "footprint")}
    for zone in spec.zones:
        lo, hi = max(west, 6.0 * zone - 186.0), min(east, 6.0 * zone - 180.0)
        if lo >= hi:
            continue
        area = shapely.box(lo, south, hi, north)
        to_utm = pyproj.Transformer.from_crs(4326, 32600 + zone, always_xy=True)
        to_lonlat = pyproj.Transformer.from_crs(32600 + zone, 4326, always_xy=True)
        edge = shapely.segmentize(area, 0.25)
        minx, miny, maxx, maxy = shapely.transform(edge, to_utm.transform,
                                                   interleaved=False).bounds
        ks = np.arange(np.floor((minx - side) / step), np.ceil(maxx / step) + 1)
        rs = np.arange(np.ceil((maxy + side) / step), np.floor(miny / step) - 1, -1)
        x0, y0 = np.meshgrid(ks * step - 40.0, rs * step + 40.0)
        x0, y0 = x0.ravel(), y0.ravel()
        boxes = shapely.segmentize(shapely.box(x0, y0 - side, x0 + side, y0), side / 8.0)
        outlines = shapely.transform(boxes, to_lonlat.transform, interleaved=False)
        keep = shapely.intersects(outlines, area)
        centre_lon, centre_lat = to_lonlat.transform(x0[keep] + side / 2, y0[keep] - side / 2)
        columns["name"].append(_square_name(zone, x0[keep], y0[keep], np.asarray(centre_lat),
                                            step))
        columns["zone"].append(np.full(int(keep.sum()), zone))
        columns["x0"].append(x0[keep])
        columns["y0"].append(y0[keep])
        columns["lon"].append(np.asarray(centre_lon))
        columns["lat"].append(np.asarray(centre_lat))
        columns["footprint"].append(outlines[keep])
    if not columns["name"]:
        raise ValueError(f"no tile of zones {spec.zones} meets bbox {spec.bbox}")
    tiles = Tiles(**{k: np.concatenate(v) for k, v in columns.items()})
    names, counts = np.unique(tiles.name.astype(str), return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"tile names collide ({names[counts > 1][:3].tolist()}); use a step "
                         "that divides 100 km")
    return tiles


def _tracks(tiles: Tiles, spec: ArchiveSpec) -> tuple[np.ndarray, np.ndarray]:
    """(tile row, track) of every track whose swath reaches a tile."""
    km_per_degree = 111.32 * np.cos(np.radians(tiles.lat))
    reach = (spec.swath_km / 2.0 + spec.side / 4000.0) / km_per_degree  # degrees of longitude
    first = np.ceil((tiles.lon - reach - _FIRST_TRACK) / TRACK_SPACING).astype(int)
    last = np.floor((tiles.lon + reach - _FIRST_TRACK) / TRACK_SPACING).astype(int)
    counts = np.maximum(last - first + 1, 0)
    tile = np.repeat(np.arange(len(tiles)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return tile, np.repeat(first, counts) + offset


def passes(spec: ArchiveSpec, tiles: Tiles) -> Passes:
    """Every record of the archive: one per pass of a track over a tile (module docstring)."""
    rng = np.random.default_rng(spec.seed)
    tile, track = _tracks(tiles, spec)
    cycle, revisit = spec.cycle_days, spec.revisit_days
    base = (3 * track) % cycle  # day of the track's first platform in the cycle
    first = base % revisit
    per_track = (spec.days - first + revisit - 1) // revisit
    row = np.repeat(np.arange(len(tile)), per_track)
    visit = np.arange(per_track.sum()) - np.repeat(np.cumsum(per_track) - per_track, per_track)
    day = first[row] + visit * revisit
    platform = ((day - base[row]) // revisit) % len(spec.platforms)
    t = tile[row]
    longitude = _FIRST_TRACK + track[row] * TRACK_SPACING
    seconds = (10.5 * 3600.0 - 240.0 * longitude - _DESCENT * tiles.lat[t]
               + rng.uniform(-30.0, 30.0, len(row)))
    when = (np.datetime64(spec.start, "us") + day.astype("timedelta64[D]")
            + np.round(seconds * 1e6).astype("timedelta64[us]"))
    keep = rng.uniform(0.0, 1.0, len(row)) >= spec.drop
    cloud = np.round(100.0 * rng.beta(0.5, 0.9, len(row)), 2)
    order = np.lexsort((t[keep], when[keep]))
    return Passes(t[keep][order], track[row][keep][order], platform[keep][order],
                  when[keep][order], cloud[keep][order])


def record_ids(spec: ArchiveSpec, tiles: Tiles, records: Passes) -> np.ndarray:
    """Sentinel-2-like ids: ``S2A_33UUP_20240105_0_L2A`` (platform, tile, UTC date)."""
    days = np.datetime_as_string(records.datetime, unit="D")
    codes = np.array(spec.platforms, dtype=object)[records.platform]
    names = tiles.name[records.tile]
    return np.array([f"{c}_{n}_{d.replace('-', '')}_0_L2A"
                     for c, n, d in zip(codes, names, days, strict=True)], dtype=object)


def solar_dates(tiles: Tiles, records: Passes) -> np.ndarray:
    """The local solar date (``datetime64[D]``) of each record at its tile's centre."""
    shift = np.round(tiles.lon[records.tile] * 240.0 * 1e6).astype("timedelta64[us]")
    return (records.datetime + shift).astype("datetime64[D]")
