"""Output-grid fixtures: small Sentinel-2-like scenes in two UTM zones meeting at 78 degrees E.

:func:`write_grid_scenes` writes the COGs (GDAL's COG driver, deflate, uint16, nodata 0,
overviews) of a few passes over one place near 13 N, 78 E: per pass one record in EPSG:32643
reaching east past 78 E and one in EPSG:32644 reaching west past it, overlapping, seconds apart
(one solar day). Every record has B02 (10 m, overviews down to 16x), B11 (20 m), B01 (60 m)
and SCL (20 m classes, uint8). :func:`grid_items` describes them as pystac Items with the
projection and raster extensions (``raster:bands`` scale/offset on the reflectance bands, none
on SCL) at a base URL; :func:`build_grid_index` turns the items into an enriched index.

Pixel values are smooth waves (at most about 3 counts per pixel in any band) with a different
phase per record, so resampled values differ between neighbours but stay within one count of
each other under sub-pixel shifts. Grid origins are multiples of 960 m, so every band's grid and
every resolution used by the tests (10, 20, 60, 160 m) have pixel edges on multiples of the
resolution. Records of the second pass carry a swath edge (a nodata triangle) inside the zones'
overlap, so a first-valid mosaic takes pixels of both zones there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from .cogs import write_cog

if TYPE_CHECKING:
    import pystac

    from ..collection import Collection

__all__ = [
    "GRID_BANDS",
    "GRID_EPSGS",
    "GridBand",
    "GridRecord",
    "GridScenes",
    "GridFixture",
    "write_grid_scenes",
    "grid_items",
    "build_grid_index",
    "grid_fixture",
]

#: The two UTM zones: 43N (72-78 E) and 44N (78-84 E).
GRID_EPSGS = (32643, 32644)
#: Top-left corners (x, y) of the records of each zone, metres, multiples of 960.
_ORIGINS = {32643: (812160.0, 1448640.0), 32644: (168960.0, 1445760.0)}
_ALIGN = 960.0
_FIRST_PASS = datetime(2024, 3, 5, 5, 10, 21, tzinfo=UTC)
_REVISIT = timedelta(days=5)
_ZONE_DELAY = timedelta(seconds=3)  # the 32644 tile of a pass is sensed 3 s after the 32643 one
_COLLECTION = "synthetic-s2-l2a"
_RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"


@dataclass(frozen=True)
class GridBand:
    """One band of the scenes: its name (the asset key and the index's band), pixel size,
    dtype, tile size and STAC ``raster:bands`` scale/offset (None: the item has none)."""

    name: str
    resolution: int
    dtype: str
    blocksize: int
    scale: float | None
    offset: float | None
    nodata: int = 0
    overview_count: int | None = None  # None: the COG driver's AUTO

    @property
    def rescaled(self) -> bool:
        """Whether the items give this band a scale and offset."""
        return self.scale is not None and self.offset is not None


#: Sentinel-2-like bands: three resolutions of reflectance (scale/offset) and a class band.
GRID_BANDS: tuple[GridBand, ...] = (
    GridBand("B02", 10, "uint16", 256, 0.0001, -0.1, overview_count=4),
    GridBand("B11", 20, "uint16", 256, 0.0002, -0.05),
    GridBand("B01", 60, "uint16", 128, 0.0001, -0.1),
    GridBand("SCL", 20, "uint8", 256, None, None),
)


@dataclass(frozen=True)
class GridRecord:
    """One record (a tile of one pass in one zone): id, datetime, EPSG, the top-left corner
    of its grid, its side in metres and the path of each band's COG."""

    id: str
    datetime: datetime
    epsg: int
    origin: tuple[float, float]
    extent: float
    paths: Mapping[str, Path]
    swath_edge: bool

    def band(self, name: str) -> GridBand:
        """The band called ``name``."""
        return next(b for b in GRID_BANDS if b.name == name)

    def shape(self, band: str) -> tuple[int, int]:
        """(height, width) of ``band``'s full-resolution image."""
        side = round(self.extent / self.band(band).resolution)
        return side, side

    def transform(self, band: str) -> tuple[float, float, float, float, float, float]:
        """GDAL-order affine coefficients (a, b, c, d, e, f) of ``band``'s image."""
        res = float(self.band(band).resolution)
        return (res, 0.0, self.origin[0], 0.0, -res, self.origin[1])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the record's CRS."""
        x0, y0 = self.origin
        return (x0, y0 - self.extent, x0 + self.extent, y0)

    def footprint(self, crs: Any = 4326, *, step: float = 240.0) -> Any:
        """The image's outline as a shapely polygon in ``crs`` (edges densified every
        ``step`` metres before reprojection)."""
        import pyproj
        import shapely

        ring = shapely.segmentize(shapely.box(*self.bounds), step)
        to = pyproj.Transformer.from_crs(self.epsg, crs, always_xy=True)
        return shapely.transform(ring, lambda xy: np.column_stack(to.transform(xy[:, 0],
                                                                                xy[:, 1])))

    def read(self, band: str, overview_level: int | None = None) -> np.ndarray:
        """``band``'s pixels from its local file (an overview level with rasterio's
        ``overview_level``: 0 is the first overview)."""
        import rasterio

        with rasterio.open(self.paths[band], overview_level=overview_level) as src:
            return src.read(1)


@dataclass(frozen=True)
class GridScenes:
    """The written COGs: their folder and records, in datetime order."""

    root: Path
    records: tuple[GridRecord, ...]
    bands: tuple[GridBand, ...] = GRID_BANDS

    def record(self, record_id: str) -> GridRecord:
        """The record called ``record_id``."""
        return next(r for r in self.records if r.id == record_id)

    def in_zone(self, epsg: int) -> tuple[GridRecord, ...]:
        """The records in one UTM zone."""
        return tuple(r for r in self.records if r.epsg == epsg)

    @property
    def passes(self) -> tuple[tuple[GridRecord, ...], ...]:
        """The records grouped by pass (one solar day each), in order."""
        days: dict[object, list[GridRecord]] = {}
        for record in self.records:
            days.setdefault(record.datetime.date(), []).append(record)
        return tuple(tuple(group) for group in days.values())

    def overlap(self, crs: Any = 4326) -> Any:
        """Where both zones' records cover the ground: a shapely polygon in ``crs``."""
        import shapely

        first = [r for r in self.records if r.epsg == GRID_EPSGS[0]][0]
        second = [r for r in self.records if r.epsg == GRID_EPSGS[1]][0]
        return shapely.intersection(first.footprint(crs), second.footprint(crs))

    def union(self, crs: Any = 4326) -> Any:
        """The ground covered by any record: a shapely polygon in ``crs``."""
        import shapely

        return shapely.union_all([r.footprint(crs) for r in self.records])


@dataclass(frozen=True)
class GridFixture:
    """Scenes served over HTTP: the COGs, the base URL, the pystac Items (datetime, then id
    order) and the enriched index built from them."""

    scenes: GridScenes
    base_url: str
    items: tuple[pystac.Item, ...]
    collection: Collection

    def items_in_zone(self, epsg: int) -> list[pystac.Item]:
        """The items of one UTM zone, in order."""
        ids = {r.id for r in self.scenes.in_zone(epsg)}
        return [item for item in self.items if item.id in ids]

    def href(self, record_id: str, band: str) -> str:
        """The URL of one record's band."""
        path = self.scenes.record(record_id).paths[band]
        return f"{self.base_url}/{path.relative_to(self.scenes.root).as_posix()}"


def _waves(shape: tuple[int, int], resolution: float, rng: np.random.Generator,
           centre: float) -> np.ndarray:
    """Smooth float pixels around ``centre``: two crossed waves whose steepest slope is about
    2.5 counts per pixel at any resolution, plus a gentle ramp."""
    height, width = shape
    wavelength = 15000.0 / resolution  # pixels: 1.5 km at 10 m, 250 px at 60 m
    amplitude = 2.5 * wavelength / (2 * math.pi) / 2  # two waves: slope <= 2.5 per pixel
    rows = np.arange(height, dtype=np.float64)[:, None]
    cols = np.arange(width, dtype=np.float64)[None, :]
    px, py = rng.uniform(0, 2 * math.pi, 2)
    stretch = rng.uniform(0.8, 1.25)
    return (centre + amplitude * np.sin(2 * math.pi * cols / (wavelength * stretch) + px)
            + amplitude * np.cos(2 * math.pi * rows / (wavelength / stretch) + py)
            + 0.2 * (rows + cols) * 10.0 / resolution)


def _classes(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """SCL-like classes 1..11 in blocks of about 600 m."""
    height, width = shape
    rows = np.arange(height)[:, None] // 30
    cols = np.arange(width)[None, :] // 30
    return (1 + (rows * 7 + cols * 3 + int(rng.integers(0, 11))) % 11).astype(np.uint8)


def _swath_mask(shape: tuple[int, int], epsg: int) -> np.ndarray:
    """A nodata triangle inside the zones' overlap: the east corner of a 32643 image, the
    west corner of a 32644 one (the part of a swath outside the sensor's view)."""
    height, width = shape
    rows = np.arange(height, dtype=np.float64)[:, None] / height
    cols = np.arange(width, dtype=np.float64)[None, :] / width
    if epsg == GRID_EPSGS[0]:
        return cols - rows > 0.55  # north-east corner
    return rows - cols > 0.55  # south-west corner


def _pixels(record_index: int, epsg: int, band: GridBand, shape: tuple[int, int],
            swath_edge: bool) -> np.ndarray:
    rng = np.random.default_rng([record_index, GRID_BANDS.index(band)])
    if band.dtype == "uint8":
        data = _classes(shape, rng)
    else:
        data = np.rint(_waves(shape, band.resolution, rng, 3000.0 + 400 * record_index))
        data = np.clip(data, 1, np.iinfo(band.dtype).max).astype(band.dtype)
    if swath_edge:
        data[_swath_mask(shape, epsg)] = band.nodata
    return data


def write_grid_scenes(root: str | os.PathLike[str], *, pixels: int = 1920,
                      passes: int = 3) -> GridScenes:
    """Write the COGs of ``passes`` passes (two records each, one per UTM zone) under ``root``.

    Parameters
    ----------
    root : path
        An existing folder; files are ``<record id>/<band>.tif``.
    pixels : int, default 1920
        Side of a record's 10 m image (a multiple of 96: the 60 m band and the 16x overview
        divide it).
    passes : int, default 3
        Number of passes (dates five days apart).

    Returns
    -------
    GridScenes
        The records in datetime order.
    """
    if pixels <= 0 or pixels % 96:
        raise ValueError(f"pixels must be a positive multiple of 96, not {pixels!r}")
    if passes <= 0:
        raise ValueError(f"passes must be positive, not {passes!r}")
    root = Path(root)
    extent = pixels * 10.0
    records: list[GridRecord] = []
    for p in range(passes):
        for z, epsg in enumerate(GRID_EPSGS):
            index = 2 * p + z
            when = _FIRST_PASS + p * _REVISIT + z * _ZONE_DELAY
            record_id = f"S2_{epsg % 100}_{when:%Y%m%d}"
            folder = root / record_id
            folder.mkdir(parents=True, exist_ok=True)
            swath_edge = p % 3 == 1
            paths: dict[str, Path] = {}
            for band in GRID_BANDS:
                side = round(extent / band.resolution)
                data = _pixels(index, epsg, band, (side, side), swath_edge)
                x0, y0 = _ORIGINS[epsg]
                options: dict[str, Any] = {"level": 6}
                if band.overview_count is not None:
                    options["overview_count"] = band.overview_count
                paths[band.name] = write_cog(
                    folder / f"{band.name}.tif", data=data, blocksize=band.blocksize,
                    crs=f"EPSG:{epsg}", transform=(band.resolution, 0.0, x0, 0.0,
                                                   -band.resolution, y0),
                    nodata=band.nodata, compress="deflate", predictor=2, **options)
            records.append(GridRecord(record_id, when, epsg, _ORIGINS[epsg], extent,
                                      MappingProxyType(paths), swath_edge))
    return GridScenes(root, tuple(records))


def _item(record: GridRecord, href_of: Mapping[str, str]) -> pystac.Item:
    import pystac
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    footprint = record.footprint(4326)
    item = pystac.Item(
        id=record.id, geometry=footprint.__geo_interface__, bbox=list(footprint.bounds),
        datetime=record.datetime, collection=_COLLECTION,
        properties={"platform": "sentinel-2a", "constellation": "sentinel-2",
                    "eo:cloud_cover": 5.0, "s2:mgrs_tile": f"{record.epsg % 100}PQR"})
    for band in GRID_BANDS:
        asset = pystac.Asset(href=href_of[band.name], media_type=pystac.MediaType.COG,
                             roles=["data"], title=band.name)
        item.add_asset(band.name, asset)
        proj = ProjectionExtension.ext(asset, add_if_missing=True)
        proj.code = f"EPSG:{record.epsg}"
        proj.shape = list(record.shape(band.name))
        proj.transform = list(record.transform(band.name))
        dtype = DataType.UINT8 if band.dtype == "uint8" else DataType.UINT16
        raster = RasterBand.create(nodata=band.nodata, data_type=dtype,
                                   spatial_resolution=band.resolution)
        if band.rescaled:
            raster.scale, raster.offset = band.scale, band.offset
        RasterExtension.ext(asset, add_if_missing=True).bands = [raster]
    if _RASTER_EXT not in item.stac_extensions:
        item.stac_extensions.append(_RASTER_EXT)
    return item


def grid_items(scenes: GridScenes, base_url: str) -> list[pystac.Item]:
    """pystac Items of the scenes with hrefs under ``base_url`` (the folder ``scenes.root``
    served over HTTP), in datetime then id order.

    Every asset has ``proj:code``, ``proj:shape``, ``proj:transform`` and ``raster:bands``
    (nodata, data type, resolution; scale/offset on the reflectance bands).
    """
    base = base_url.rstrip("/")
    items = []
    for record in sorted(scenes.records, key=lambda r: (r.datetime, r.id)):
        hrefs = {name: f"{base}/{path.relative_to(scenes.root).as_posix()}"
                 for name, path in record.paths.items()}
        items.append(_item(record, hrefs))
    return items


def build_grid_index(items: Sequence[pystac.Item], workspace: str | os.PathLike[str], *,
                     name: str = "grid-oracle") -> Collection:
    """The enriched index of ``items``, through :func:`rasteret_dask.build_from_table` (the
    STAC item ingest path: asset keys become bands, ``raster:bands`` are carried)."""
    from ..build import build_from_table

    return build_from_table(list(items), name=name, workspace_dir=workspace, progress=False)


def grid_fixture(tmp_root: str | os.PathLike[str], scenes: GridScenes,
                 base_url: str) -> GridFixture:
    """Items at ``base_url`` and their index (built under ``tmp_root``) for ``scenes``."""
    items = grid_items(scenes, base_url)
    collection = build_grid_index(items, tmp_root)
    return GridFixture(scenes, base_url.rstrip("/"), tuple(items), collection)
