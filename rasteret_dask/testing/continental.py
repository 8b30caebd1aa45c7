"""A synthetic continental archive for tests and benchmarks: a year of Sentinel-2-like records
over Europe whose pixels are a few real COGs.

:func:`continental_archive` lays out MGRS-like tiles (109.8 km every 100 km, UTM zones 29-38N
over Europe: :mod:`.continental_layout`), passes over them (a 5-day revisit per orbit, two
platforms, 10:30 local solar time, about 300,000 records a year), writes one COG per platform
and band (B02, B03, B04, B08 at 10 m, SCL at 20 m: :mod:`.continental_cogs`) and enriches them
once, then exports a hive-partitioned index whose every record carries its platform's enriched
``{band}_metadata`` with its own transform (its tile's UTM zone and origin) and CRS84 footprint
(its image's outline). A read anywhere on the continent fetches and decodes real tiles, placed
by the record's transform, while the data on disk stays a few COGs.

Hrefs (``layout``):

- ``"per-record"`` (default): ``{href_base}/archive/{tile}/{year}/{month}/{id}/{band}.tif``, one
  URL per record and band, as a real archive has; a :class:`~.servers.RangeServer` (or
  ``RangeServerProcess``) over :attr:`ContinentalArchive.served` with
  ``aliases=ARCHIVE_ALIASES`` serves each URL from the record's tile copy
  (:meth:`ContinentalArchive.locate`) or else its platform's COG. Every record is then its own
  object: nothing is shared between records by URL (fetch deduplication and caches see what a
  real archive shows them).
- ``"shared"``: ``{href_base}/cogs/{platform}/{band}.tif``: every record of a platform names
  the same object (an S3 bucket holding the ``cogs/`` folder, any store without aliases).

The index identifies objects by size only (the templates carry no ETag nor modification time,
so copies and uploads of the COGs read as the objects enrichment saw).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .. import schema as S
from .continental_cogs import ARCHIVE_BANDS, ArchiveCogs, locate_cog, write_archive_cogs
from .continental_layout import ArchiveSpec, Passes, Tiles, mgrs_tiles, passes, record_ids

if TYPE_CHECKING:
    import pystac

    from ..collection import Collection

__all__ = [
    "ARCHIVE_ALIASES",
    "LAYOUTS",
    "BuildTimes",
    "ContinentalArchive",
    "served_folder",
    "archive_table",
    "continental_archive",
]

LAYOUTS = ("per-record", "shared")
_URL = r"archive/(\w+)/\d{4}/\d{1,2}/([A-Z0-9]{3})_[^/]+/(\w+\.tif)"
ARCHIVE_ALIASES: tuple[tuple[str, str], ...] = (
    (_URL, r"located/\1/\2/\3"),
    (_URL, r"cogs/\2/\3"),
)
"""``RangeServer(aliases=...)`` for the ``"per-record"`` layout: a record's URL is served from
its tile's located copy when there is one, else from its platform's COG."""

_PLATFORM_NAMES = {"S2A": "sentinel-2a", "S2B": "sentinel-2b", "S2C": "sentinel-2c"}


@dataclass(frozen=True)
class BuildTimes:
    """Seconds spent building: COGs written (or reused) and enriched, the records' table, the
    index export."""

    cogs: float
    table: float
    export: float

    @property
    def total(self) -> float:
        """All of it."""
        return self.cogs + self.table + self.export


@dataclass(frozen=True)
class ContinentalArchive:
    """A built archive: its exported index, the COGs (and the folder to serve), where its hrefs
    point and how many records and tiles it has."""

    root: Path
    index_path: Path
    cogs: ArchiveCogs
    href_base: str
    layout: str
    records: int
    tiles: int
    times: BuildTimes

    @property
    def spec(self) -> ArchiveSpec:
        """What the archive holds."""
        return self.cogs.spec

    @property
    def served(self) -> Path:
        """The folder a local object store must serve at ``href_base``."""
        return self.cogs.served

    @property
    def bands(self) -> tuple[str, ...]:
        """The band names."""
        return tuple(b.name for b in self.cogs.bands)

    def load(self) -> Collection:
        """The index, loaded."""
        from ..loading import load

        return load(self.index_path)

    def cog_path(self, record_id: str, band: str) -> Path:
        """The COG whose bytes ``band`` of record ``record_id`` reads (its platform's)."""
        code = record_id.split("_", 1)[0]
        if (code, band) not in self.cogs.paths:
            raise KeyError(f"record {record_id!r}, band {band!r}: not a record and band of "
                           f"this archive (platforms {self.spec.platforms}, bands {self.bands})")
        return self.cogs.paths[code, band]

    def _records(self, geometry: Any, bands: Sequence[str], filters: dict) -> pa.Table:
        unknown = sorted(set(bands) - set(self.bands))
        if unknown:
            raise ValueError(f"unknown band(s) {unknown}; the archive has {self.bands}")
        columns = [S.ID, S.DATETIME, S.GEOMETRY, S.ASSETS, S.EPSG, S.CLOUD_COVER, "platform",
                   "s2:mgrs_tile", *(S.metadata_column(b) for b in bands)]
        return self.load().subset(geometries=geometry, **filters).to_table(columns=columns)

    def locate(self, geometry: Any, bands: Sequence[str], **filters: Any) -> list[Path]:
        """Copies of the COGs georeferenced where the records meeting ``geometry`` (CRS84) and
        ``filters`` (``Collection.subset``'s, e.g. ``date_range``) are,
        one per tile, platform and band (``located/{tile}/{platform}/{band}.tif``), so tools
        that read a file's own georeferencing (GDAL: odc-stac, stackstac) place every record
        as the index does. Only the ``"per-record"`` layout serves them.

        Returns
        -------
        list of Path
            The copies (existing ones are kept).
        """
        if self.layout != "per-record":
            raise ValueError(f"located copies are served through per-record URLs; this archive's "
                             f"hrefs are {self.layout!r} (build it with layout='per-record')")
        table = self._records(geometry, bands, filters)
        written: dict[Path, None] = {}
        for row in table.select([S.ID, "s2:mgrs_tile", S.EPSG, *(
                S.metadata_column(b) for b in bands)]).to_pylist():
            code = row[S.ID].split("_", 1)[0]
            for band in bands:
                target = self.served / "located" / row["s2:mgrs_tile"] / code / f"{band}.tif"
                if target in written or target.exists():
                    written[target] = None
                    continue
                transform = row[S.metadata_column(band)]["transform"]
                written[locate_cog(self.cog_path(row[S.ID], band), target, epsg=row[S.EPSG],
                                   origin=(transform[2], transform[5]))] = None
        return list(written)

    def items(self, geometry: Any, bands: Sequence[str], **filters: Any) -> list[pystac.Item]:
        """pystac Items of the records meeting ``geometry`` (CRS84) and ``filters``
        (``Collection.subset``'s, e.g. ``date_range``), in datetime then id order:
        the record's hrefs, and per asset ``proj:code``, ``proj:shape``, ``proj:transform`` and
        ``raster:bands`` (data type, nodata, resolution)."""
        from .continental_items import record_items

        return record_items(self._records(geometry, bands, filters), bands)


def served_folder(root: str | os.PathLike[str]) -> Path:
    """The folder under ``root`` that a local object store serves (created if missing): start
    the server on it before :func:`continental_archive`, which needs its URL."""
    folder = Path(root) / "served"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _lists(values: np.ndarray) -> pa.ListArray:
    """An (n, k) array as n lists of k float64 values."""
    n, k = values.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * k),
                                    pa.array(values.ravel().astype(np.float64)))


def _take(array: pa.Array, index: np.ndarray) -> pa.Array:
    """``array.take(index)``, list by list with NumPy index arithmetic (Arrow's take of nested
    lists is ten times slower, and the archive takes 300,000 rows of nested tile tables)."""
    kind = array.type
    valid = None if array.null_count == 0 else np.asarray(array.is_valid())[index]
    mask = None if valid is None else pa.array(~valid)
    if pa.types.is_struct(kind):
        return pa.StructArray.from_arrays([_take(array.field(i), index)
                                           for i in range(kind.num_fields)],
                                          fields=list(kind), mask=mask)
    if pa.types.is_list(kind):
        bounds = array.offsets.to_numpy().astype(np.int64)
        lengths = np.diff(bounds)[index]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        values = _take(array.values, np.repeat(bounds[:-1][index], lengths) + within)
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values,
                                        type=kind, mask=mask)
    return array.take(pa.array(index))


def _metadata(template: pa.StructArray, platform: np.ndarray, x0: np.ndarray, y0: np.ndarray,
              epsg: np.ndarray, resolution: float) -> pa.StructArray:
    """Each record's ``{band}_metadata``: its platform's template with its own transform, tie
    point and EPSG code."""
    taken = _take(template, platform).flatten()
    zeros, res = np.zeros(len(x0)), np.full(len(x0), float(resolution))
    replaced = {
        "transform": _lists(np.column_stack([res, zeros, x0, zeros, -res, y0])),
        "tiepoint": _lists(np.column_stack([zeros, zeros, zeros, x0, y0, zeros])),
        "crs_epsg": pa.array(epsg.astype(np.int32)),
    }
    fields = [replaced.get(f.name, column) for f, column in zip(S.METADATA_TYPE, taken,
                                                                 strict=True)]
    return pa.StructArray.from_arrays(fields, fields=list(S.METADATA_TYPE))


def _folders(href_base: str, layout: str, ids: np.ndarray, names: np.ndarray,
             when: np.ndarray, codes: np.ndarray) -> pa.Array:
    """Each record's folder URL (its bands' files are ``{folder}/{band}.tif``)."""
    import pyarrow.compute as pc

    base = href_base.rstrip("/")
    if layout == "shared":
        return pc.binary_join_element_wise(f"{base}/cogs", pa.array(codes, pa.string()), "/")
    months = when.astype("datetime64[M]").astype(int)
    return pc.binary_join_element_wise(
        f"{base}/archive", pa.array(names, pa.string()), pa.array((1970 + months // 12)
                                                                  .astype(str)),
        pa.array((months % 12 + 1).astype(str)), pa.array(ids, pa.string()), "/")


def archive_table(cogs: ArchiveCogs, tiles: Tiles, records: Passes, href_base: str, *,
                  layout: str = "per-record") -> pa.Table:
    """The records as an index table: ``id``, ``datetime``, ``geometry`` (the image's CRS84
    outline), ``assets`` (every band), ``eo:cloud_cover``, ``proj:epsg``, ``platform``,
    ``s2:mgrs_tile`` and each band's ``{band}_metadata`` (see the module docstring)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    import pyarrow.compute as pc
    import shapely

    spec, t = cogs.spec, records.tile
    ids = record_ids(spec, tiles, records)
    codes = np.array(spec.platforms, dtype=object)[records.platform]
    names, epsg = tiles.name[t], tiles.epsg[t]
    x0, y0 = tiles.x0[t], tiles.y0[t]
    wkb = np.array(shapely.to_wkb(tiles.footprint), dtype=object)[t]
    folders = _folders(href_base, layout, ids, names, records.datetime, codes)
    assets = pa.StructArray.from_arrays(
        [pa.StructArray.from_arrays(
            [pc.binary_join_element_wise(folders, f"{b.name}.tif", "/"),
             pa.array(np.zeros(len(ids), np.int32))], fields=list(S.ASSET_TYPE))
         for b in cogs.bands], names=[b.name for b in cogs.bands])
    return pa.table({
        S.ID: pa.array(ids, pa.string()),
        S.DATETIME: pa.array(records.datetime).cast(S.DATETIME_TYPE),
        S.GEOMETRY: pa.array(wkb, pa.binary()),
        S.ASSETS: assets,
        S.CLOUD_COVER: pa.array(records.cloud_cover, pa.float64()),
        S.EPSG: pa.array(epsg.astype(np.int32)),
        "platform": pa.array([_PLATFORM_NAMES.get(c, c.lower()) for c in codes], pa.string()),
        "s2:mgrs_tile": pa.array(names, pa.string()),
        **{S.metadata_column(b.name): _metadata(cogs.templates[b.name], records.platform, x0,
                                                y0, epsg, b.resolution) for b in cogs.bands},
    })


def continental_archive(root: str | os.PathLike[str], href_base: str,
                        spec: ArchiveSpec | None = None, *, layout: str = "per-record",
                        index: str | os.PathLike[str] | None = None,
                        name: str = "continental") -> ContinentalArchive:
    """Build the synthetic continental archive under ``root``.

    Parameters
    ----------
    root : path
        Folder of the archive: ``served/`` (COGs, located copies) and ``index/``. COGs written
        earlier under it for the same sizes, platforms and seed are reused, so building it again
        for another ``href_base`` or ``layout`` costs the table and the export only.
    href_base : str
        Where :attr:`ContinentalArchive.served` is served: ``http://127.0.0.1:PORT`` of a
        ``RangeServer(served_folder(root), aliases=ARCHIVE_ALIASES)``, or ``s3://bucket`` (with
        ``layout="shared"``) of a bucket holding the ``cogs/`` folder.
    spec : ArchiveSpec, optional
        What the archive holds; default: a year (2024) over Europe at Sentinel-2's sizes.
    layout : {"per-record", "shared"}
        One URL per record and band (served through aliases), or one per platform and band.
    index : path, optional
        Where to export the index (replacing one there); default ``root/index``.
    name : str
        The index's name.

    Returns
    -------
    ContinentalArchive
    """
    from ..loading import build_collection_from_table

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    spec = ArchiveSpec() if spec is None else spec
    root = Path(root)
    started = time.perf_counter()
    cogs = write_archive_cogs(served_folder(root), spec, ARCHIVE_BANDS)
    written = time.perf_counter()
    tiles = mgrs_tiles(spec)
    records = passes(spec, tiles)
    table = archive_table(cogs, tiles, records, href_base, layout=layout)
    tabled = time.perf_counter()
    index_path = Path(index) if index is not None else root / "index"
    build_collection_from_table(table, name=name).export(index_path, overwrite=True)
    del table
    exported = time.perf_counter()
    return ContinentalArchive(root, index_path, cogs, href_base, layout, len(records),
                              len(tiles), BuildTimes(written - started, tabled - written,
                                                     exported - tabled))
