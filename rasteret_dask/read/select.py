"""Read preparation: bands, data source, index query -> typed records per band and their grids.

Every read (``get_xarray``, ``get_numpy``, ``get_gdf``, ``sample_points``, ``explain``) and the
workflows start here, before any plan or graph exists: the requested bands are checked (known
to the collection or its data source, enriched), the data source is resolved once, each query
geometry is taken to EPSG:4326 to find the index rows it meets, and those rows become frozen
:class:`Record` values (each with its :class:`~rasteret_dask.tiff.cog_metadata.CogMetadata`)
and :class:`~rasteret_dask.plan.grid.GridSpec` grids, gathered in a :class:`Selection`. Rows a
band cannot be read from are listed (``skipped``) or refused (``on_missing="raise"``). The
rules a read's records must meet (a CRS each: an EPSG code or one rebuilt from the file's
GeoKeys; on the query geometry's celestial body; one CRS for an array read) live here once.

Records on another body than Earth (Mars, the Moon, ...) have footprints in their body's
longitude/latitude; a query geometry in such a body's CRS finds them through its body's
longitude/latitude, and a query in an Earth CRS over them is refused, naming both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyproj
import shapely

from .. import schema as S
from ..plan.geometry import (
    CelestialBodyError,
    body_lonlat,
    coerce_geometries,
    reproject_geometries,
    transformer,
)
from ..plan.geometry import geometry_crs as carried_crs
from ..plan.grid import GridSpec, as_crs, crs_name, epsg_code, same_crs, union_grid
from ..redact import redact_url
from ..tiff.cog_metadata import CogMetadata
from .skipped import SkippedRecord, check_on_missing, missing_records, settle_missing
from .source import ReadSource, read_source

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["Record", "Selection", "select", "read_bands", "query_geometries", "band_records",
           "record_label", "check_crs"]

_LONLAT = pyproj.CRS.from_epsg(4326)


def record_label(record_id: str, band: str, href: str | None) -> str:
    """How messages name a record's band: ``record 'id', band 'B04', href <redacted href>``."""
    return f"record {record_id!r}, band {band!r}, href {redact_url(href)}"


@dataclass(frozen=True, slots=True)
class Record:
    """One record's band: where its file is and its typed header metadata (a row of the index)."""

    id: str
    band: str
    datetime: np.datetime64
    href: str
    band_index: int
    metadata: CogMetadata
    cloud_cover: float | None = None

    @property
    def label(self) -> str:
        """Record, band and (redacted) href, as every message about this record names them."""
        return record_label(self.id, self.band, self.href)


def band_records(table: pa.Table, band: str) -> list[Record]:
    """The records of ``band`` in index rows, in row order.

    Rows without metadata or href for the band are left out (``read.skipped.missing_records``
    lists them). Each record's ``{band}_metadata`` struct becomes a ``CogMetadata``.

    Parameters
    ----------
    table
        Index rows with ``id``, ``datetime``, ``assets`` and ``{band}_metadata`` (and a cloud
        cover column when one is wanted on the records).
    band
        The band as the index names it.

    Raises
    ------
    rasteret_dask.tiff.cog_metadata.MetadataError
        When a row's metadata is incomplete or inconsistent (e.g. it lacks the transform); the
        message names the record, band and href.
    """
    ids = table[S.ID].to_pylist()
    times = table[S.DATETIME].to_numpy(zero_copy_only=False)
    assets = table[S.ASSETS].combine_chunks().field(band)
    hrefs = assets.field("href").to_pylist()
    indices = assets.field("band_index").to_pylist()
    metadata = CogMetadata.from_arrow(table[S.metadata_column(band)],
                                      lambda k: record_label(ids[k], band, hrefs[k]))
    cloud = None
    for name in S.CLOUD_COVER_COLUMNS:
        if name in table.column_names:
            cloud = table[name].to_pylist()
            break
    out = []
    for k in range(table.num_rows):
        if metadata[k] is None or hrefs[k] is None:
            continue
        out.append(Record(ids[k], band, np.datetime64(times[k], "ns"), hrefs[k],
                          int(indices[k] or 0), metadata[k], None if cloud is None else cloud[k]))
    return out


def _aligned(per_band: dict[str, list[Record]], order: Sequence[str]) -> dict[str, list[Record]]:
    """Records present in every band, sorted by time then id (the output time axis)."""
    common = set.intersection(*({r.id for r in recs} for recs in per_band.values()))
    result = {}
    for band in order:
        recs = [r for r in per_band[band] if r.id in common]
        recs.sort(key=lambda r: (r.datetime, r.id))
        result[band] = recs
    return result


def query_geometries(geometries: Any, geometry_crs: Any = 4326
                     ) -> tuple[list[shapely.Geometry], pyproj.CRS]:
    """The shapes of a read's geometries and their CRS.

    Parameters
    ----------
    geometries
        Anything ``plan.geometry.coerce_geometries`` takes (shapely, WKB, WKT, GeoJSON, bbox,
        sequences of those, GeoSeries/GeoDataFrame, Arrow WKB).
    geometry_crs
        Their CRS (anything ``pyproj`` accepts) unless they carry their own (GeoSeries,
        GeoParquet table), which wins.

    Returns
    -------
    (list of shapely.Geometry, pyproj.CRS)
        The non-empty geometries in input order, and the CRS of their coordinates.
    """
    shapes = coerce_geometries(geometries)
    carried = carried_crs(geometries)
    return shapes, pyproj.CRS.from_user_input(geometry_crs if carried is None else carried)


@dataclass(frozen=True)
class Selection:
    """A read's records for one query geometry: per band, with their grids, before planning.

    ``records_by_band`` is keyed by the bands as the index names them, in request order; for
    an aligned selection (the default) every band holds the same records, sorted by time then
    id (the output's time axis). ``grids`` holds each record's pixel grid keyed (band, record
    id). ``skipped`` lists the matching rows a band cannot be read from; ``table`` holds the
    index rows the query met (the columns read).
    """

    source: ReadSource
    geometry: shapely.Geometry
    geometry_crs: pyproj.CRS
    records_by_band: Mapping[str, tuple[Record, ...]]
    grids: Mapping[tuple[str, str], GridSpec]
    skipped: tuple[SkippedRecord, ...]
    table: pa.Table

    @property
    def bands(self) -> list[str]:
        """The bands as the index names them, in request order."""
        return list(self.records_by_band)

    @property
    def records(self) -> tuple[Record, ...]:
        """The first band's records (for an aligned selection: the output's time axis)."""
        return next(iter(self.records_by_band.values()))

    @property
    def is_empty(self) -> bool:
        """Whether no band has a record."""
        return not any(self.records_by_band.values())

    @property
    def crs(self) -> pyproj.CRS:
        """The CRS every record shares: an array read needs one CRS.

        Raises
        ------
        ValueError
            When the records are in several CRSs, or there is no record.
        """
        return self._one_crs()

    @property
    def crs_epsg(self) -> int | None:
        """The EPSG code of the CRS every record shares (:attr:`crs`); None for a custom CRS.

        Raises
        ------
        ValueError
            When the records are in several CRSs, or there is no record.
        """
        return epsg_code(self._one_crs())

    def _one_crs(self) -> pyproj.CRS:
        found: list[tuple[pyproj.CRS, tuple[str, str]]] = []
        for key, grid in self.grids.items():
            if not any(same_crs(grid.crs, crs) for crs, _ in found):
                found.append((grid.crs, key))
        if not found:
            raise ValueError("the selection holds no record")
        if len(found) > 1:
            labels = {(band, r.id): r.label for band, rs in self.records_by_band.items()
                      for r in rs}
            found.sort(key=lambda item: crs_name(item[0]))
            names = ", ".join(crs_name(crs) for crs, _ in found)
            examples = "; ".join(f"{labels.get(key, key)} in {crs_name(crs)}"
                                 for crs, key in found)
            raise ValueError(f"the records are in several CRSs ({names}): {examples}; subset "
                             "to one CRS (e.g. subset(**{'proj:epsg': ...})) before reading")
        return found[0][0]

    def union(self) -> tuple[GridSpec, dict[tuple[str, str], tuple[int, int]]]:
        """The smallest grid holding every record's grid, and each (band, record id)'s
        (row, col) offset in it.

        Raises
        ------
        ValueError
            When the records are in several CRSs (see :attr:`crs`), differ in pixel size
            or orientation, or their origins are not whole pixels apart.
        """
        self._one_crs()  # raises, with its message, unless there is one
        keys = list(self.grids)
        labels = {(band, r.id): r.label for band, rs in self.records_by_band.items()
                  for r in rs}
        union, offsets = union_grid([self.grids[k] for k in keys],
                                    [labels.get(k, f"record {k[1]!r}, band {k[0]!r}")
                                     for k in keys])
        return union, dict(zip(keys, offsets, strict=True))

    def geometry_in(self, crs: int | pyproj.CRS) -> shapely.Geometry:
        """The query geometry reprojected into ``crs`` (an EPSG code or a pyproj CRS; edges
        densified)."""
        return reproject_geometries([self.geometry], self.geometry_crs, as_crs(crs))[0]

    def empty_error(self) -> ValueError:
        """The error of a read that found no record to read, naming what was skipped."""
        note = (f" ({len(self.skipped)} matching record(s) have no metadata, e.g. "
                f"{self.skipped[0]})" if self.skipped else "")
        return ValueError(f"no enriched record intersects the geometry{note}; check its CRS "
                          "(geometry_crs=, --aoi-crs), the filters and the index's extent "
                          "(collection.bounds, rasteret-dask info)")


def _read_columns(schema_names: Sequence[str], bands: Sequence[str]) -> list[str]:
    columns = [S.ID, S.DATETIME, S.ASSETS] + [S.metadata_column(b) for b in bands]
    columns += [c for c in S.CLOUD_COVER_COLUMNS if c in schema_names][:1]
    columns += [S.ENRICH_ERRORS] if S.ENRICH_ERRORS in schema_names else []
    columns += [S.RASTER_BANDS] if S.RASTER_BANDS in schema_names else []
    return columns


def check_crs(record: Record, query_crs: pyproj.CRS) -> pyproj.CRS:
    """The record's CRS, checked: it has one, on the query geometry's celestial body.

    Raises
    ------
    ValueError
        Naming the record, band and href (and both CRSs when they are on different bodies).
    """
    crs = record.metadata.crs
    if crs is None:
        raise ValueError(
            f"{record.label}: no CRS in its header (no EPSG code, and no GeoKeys a CRS can be "
            "rebuilt from; an index enriched before custom CRSs were kept gets them with "
            "collection.enrich(only_missing=False)); reading needs a CRS")
    try:
        transformer(query_crs, crs)
    except CelestialBodyError as exc:
        bodies = exc.bodies or ("one body", "another")
        raise ValueError(
            f"{record.label}: the query geometry's CRS {crs_name(query_crs)} is on "
            f"{bodies[0]} and the record's CRS {crs_name(crs)} on {bodies[1]}: the two do not "
            "mix (no transformation exists between celestial bodies); give the geometry in "
            "the record's CRS or its body's longitude/latitude (geometry_crs=)") from None
    return crs


def _check_crs(per_band: Mapping[str, Sequence[Record]], query_crs: pyproj.CRS) -> None:
    """Every record has a CRS, on the query geometry's celestial body (each CRS checked
    once)."""
    checked: list[pyproj.CRS] = []
    for records in per_band.values():
        for record in records:
            crs = record.metadata.crs
            if crs is not None and any(crs is seen for seen in checked):
                continue
            checked.append(check_crs(record, query_crs))


def _index_query(shape: shapely.Geometry, crs: pyproj.CRS) -> shapely.Geometry:
    """The query geometry as the index's footprints hold it: CRS84, or for a CRS on another
    body than Earth that body's longitude/latitude (as its records' footprints are)."""
    try:
        return reproject_geometries([shape], crs, _LONLAT)[0]
    except CelestialBodyError:
        return reproject_geometries([shape], crs, body_lonlat(crs))[0]


def read_bands(collection: Collection, bands: Sequence[str] | str,
               data_source: Any = None) -> ReadSource:
    """The bands of a read, checked, and its data source, resolved.

    Parameters
    ----------
    collection
        The index to read from.
    bands
        Bands as the index names them, or as the data source's band map does.
    data_source : DatasetDescriptor or str, optional
        Overrides the collection's data source.

    Returns
    -------
    ReadSource
        Requested band -> band as the index names it, and how bytes are fetched.

    Raises
    ------
    ValueError
        For a band the collection (or its data source) does not know, or one without a
        ``{band}_metadata`` column (not enriched).
    """
    source = read_source(collection, bands, data_source)
    missing = [b for b in source.stored_bands if b not in collection.enriched_bands]
    if missing:
        raise ValueError(f"band(s) {missing} have no COG metadata; run collection.enrich() first")
    return source


def select(
    collection: Collection,
    geometries: Any,
    bands: Sequence[str] | str,
    *,
    geometry_crs: Any = 4326,
    data_source: Any = None,
    on_missing: str = "skip",
    align: bool = True,
    whole_rows: bool = False,
    **filters: Any,
) -> list[Selection]:
    """Prepare a read: one :class:`Selection` per query geometry (no COG is read).

    Parameters
    ----------
    collection
        The index to read from.
    geometries
        One or several query geometries (see :func:`query_geometries`).
    bands
        Bands to read: as the index names them, or as the data source's band map does.
    geometry_crs : CRS-like, default 4326
        CRS of ``geometries`` unless they carry their own.
    data_source : DatasetDescriptor or str, optional
        Overrides the collection's data source (band names, storage options, URL signing).
    on_missing : {"skip", "raise"}, default "skip"
        Matching rows a band has no metadata (or href) for: listed in ``skipped`` (the caller
        says so once), or ``MissingRecordsError``.
    align : bool, default True
        Keep only records readable in every band, sorted by time then id (array reads); with
        False every band keeps its own records in index order (point samples).
    whole_rows : bool, default False
        Read every column of the matching rows into ``table`` (the workflows keep them);
        otherwise only the columns a read needs.
    **filters
        ``Collection.subset`` arguments applied before the geometry query.

    Returns
    -------
    list of Selection
        In the order of the geometries.

    Raises
    ------
    ValueError
        For an unknown ``on_missing``, an unknown or unenriched band, a record without a CRS,
        or one on another celestial body than the query geometry's CRS (the message names
        record, band, href and both CRSs).
    MissingRecordsError
        With ``on_missing="raise"``, when a matching row cannot be read for a band.
    rasteret_dask.tiff.cog_metadata.MetadataError
        For a record whose metadata is incomplete (named with its band and href).
    """
    check_on_missing(on_missing)
    source = read_bands(collection, bands, data_source)
    shapes, crs = query_geometries(geometries, geometry_crs)
    subset = collection.subset(**filters) if filters else collection
    return [_select_one(subset, shape, crs, source, on_missing, align, whole_rows)
            for shape in shapes]


def _select_one(subset: Collection, shape: shapely.Geometry, crs: pyproj.CRS,
                source: ReadSource, on_missing: str, align: bool, whole_rows: bool) -> Selection:
    bands = source.stored_bands
    hits = subset.subset(geometries=_index_query(shape, crs))
    table = hits.to_table() if whole_rows else hits.to_table(
        columns=_read_columns(hits.schema.names, bands))
    skipped = tuple(r for b in bands for r in missing_records(table, b))
    if on_missing == "raise":
        settle_missing(skipped, on_missing, "the read")
    per_band = {b: band_records(table, b) for b in bands}
    if align:
        per_band = _aligned(per_band, bands)
    _check_crs(per_band, crs)
    grids = {(band, r.id): GridSpec.from_metadata(r.metadata)
             for band, records in per_band.items() for r in records}
    return Selection(source, shape, crs, {b: tuple(rs) for b, rs in per_band.items()}, grids,
                     skipped, table)
