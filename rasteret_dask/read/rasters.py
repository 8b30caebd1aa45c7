"""One object per record: ``Collection.iterate_rasters``, the execution layer's record entry.

The layer's requirements (Rasteret's schema contract) are checked when the iterator is made,
before any row is read: the four required columns (``id``, ``datetime``, ``geometry``,
``assets``), ``scene_bbox``, and ``{band}_metadata`` for each band asked for. The index is
then read batch by batch (``Collection.to_batches``), never whole: each row whose bands all
have metadata becomes a frozen :class:`Raster` (id, time, footprint, bbox, one typed
:class:`~rasteret_dask.tiff.cog_metadata.CogMetadata` per band) with a lazy :meth:`Raster.read`
of a pixel window or a geometry, planned by ``read.plan`` and fetched and decoded by the graph
of every array read. Rows without metadata for a band are skipped and said (or refused) per
batch, as ``on_missing`` says.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyproj
import shapely
import xarray as xr

from .. import schema as S
from ..index.geometry_input import decode_footprints
from ..plan.geometry import coerce_geometries
from ..plan.geometry import geometry_crs as carried
from ..plan.grid import GridSpec
from ..tiff.cog_metadata import CogMetadata
from .assemble import to_dataset
from .failures import check_errors
from .plan import ReadPlan, plan_read
from .select import Record, Selection, band_records, check_crs
from .skipped import check_on_missing, missing_records, settle_missing
from .source import ReadSource, read_source

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["Raster", "iterate_rasters", "check_layer"]

LAYER_COLUMNS = (*S.REQUIRED_COLUMNS, S.SCENE_BBOX)
"""Columns the execution layer needs besides the bands' ``{band}_metadata``."""


@dataclass(frozen=True)
class Raster:
    """One record of a collection, ready to read.

    ``metadata`` maps each band (as requested) to its typed header metadata; ``footprint``
    (CRS84, None when the record has none) and ``bbox`` (``scene_bbox``) come from the
    index; ``properties`` holds the other columns asked for (``iterate_rasters(columns=)``).
    :meth:`read` plans and fetches only when the returned Dataset is computed.
    """

    id: str
    datetime: np.datetime64
    footprint: shapely.Geometry | None
    bbox: tuple[float, float, float, float] | None
    metadata: Mapping[str, CogMetadata]
    source: ReadSource = field(repr=False)
    records: Mapping[str, Record] = field(repr=False)
    properties: Mapping[str, Any] = field(default_factory=dict)

    @property
    def bands(self) -> tuple[str, ...]:
        """The bands, as requested."""
        return tuple(self.metadata)

    @property
    def hrefs(self) -> dict[str, str]:
        """Band (as requested) -> the file it is read from."""
        return {asked: self.records[stored].href for asked, stored in self.source.bands.items()}

    @property
    def crs_epsg(self) -> int | None:
        """EPSG code of the first band's header (None for a custom CRS)."""
        return next(iter(self.metadata.values())).crs_epsg

    @property
    def crs(self) -> pyproj.CRS | None:
        """The first band's CRS: its EPSG code, else the CRS rebuilt from its GeoKeys."""
        return next(iter(self.metadata.values())).crs

    def _first(self) -> Record:
        return self.records[self.source.stored_bands[0]]

    def _window_geometry(self, window: Any) -> shapely.Geometry:
        if hasattr(window, "col_off"):
            col, row, width, height = window.col_off, window.row_off, window.width, window.height
        else:
            col, row, width, height = window
        record = self._first()
        md = record.metadata
        values = [col, row, width, height]
        if not all(float(v).is_integer() for v in values) or width <= 0 or height <= 0:
            raise ValueError(f"{record.label}: a window is (col_off, row_off, width, height) in "
                             f"whole pixels with a positive size, got {tuple(values)}")
        if col < 0 or row < 0 or col + width > md.image_width or row + height > md.image_height:
            raise ValueError(f"{record.label}: window {tuple(values)} is not inside the image "
                             f"({md.image_width} x {md.image_height} pixels)")
        corners = [md.transform @ (c, r) for c, r in
                   ((col, row), (col + width, row), (col + width, row + height),
                    (col, row + height))]
        return shapely.Polygon(corners)

    def selection(self, geometry: Any = None, *, window: Any = None,
                  geometry_crs: Any = 4326) -> Selection:
        """The read's selection: this record, its bands and grids, the query geometry."""
        record = self._first()
        check_crs(record, record.metadata.crs or pyproj.CRS.from_epsg(4326))
        if geometry is not None and window is not None:
            raise ValueError("give a geometry or a window, not both")
        if geometry is None:
            if window is None:
                window = (0, 0, record.metadata.image_width, record.metadata.image_height)
            shape, crs = self._window_geometry(window), record.metadata.crs
        else:
            shapes = coerce_geometries(geometry)
            if len(shapes) != 1:
                raise ValueError(f"{record.label}: read takes one geometry, got {len(shapes)}")
            shape, crs = shapes[0], carried(geometry) or geometry_crs
        records = {band: (r,) for band, r in self.records.items()}
        grids = {(band, r.id): GridSpec.from_metadata(r.metadata)
                 for band, r in self.records.items()}
        query_crs = pyproj.CRS.from_user_input(crs)
        for one in self.records.values():
            check_crs(one, query_crs)
        return Selection(self.source, shape, query_crs, records, grids, (), pa.table({}))

    def plan(self, geometry: Any = None, *, window: Any = None, geometry_crs: Any = 4326,
             all_touched: bool = False, chunks: int | None = None,
             max_tile_bytes: int | str | None = None) -> ReadPlan:
        """The read plan of :meth:`read` (no I/O); ``plan(...).explain()`` describes it."""
        selection = self.selection(geometry, window=window, geometry_crs=geometry_crs)
        return plan_read(selection, all_touched=all_touched, tiles_per_chunk=chunks or 1,
                         max_tile_bytes=max_tile_bytes)

    def read(self, geometry: Any = None, *, window: Any = None, geometry_crs: Any = 4326,
             all_touched: bool = False, chunks: int | None = None,
             storage_options: dict | None = None, max_concurrent: int | None = None,
             max_tile_bytes: int | str | None = None, errors: str = "raise") -> xr.Dataset:
        """A lazy (time=1, y, x) Dataset of this record's bands over a window or a geometry.

        Parameters
        ----------
        geometry
            One geometry (any form ``get_xarray`` takes) in ``geometry_crs`` unless it
            carries its own; the output is masked to it, as in ``get_xarray``.
        window : rasterio.windows.Window or (col_off, row_off, width, height), optional
            Whole pixels of the first band's image (used when ``geometry`` is None; default:
            the whole image).
        geometry_crs : CRS-like, default 4326
            CRS of ``geometry``.
        all_touched, chunks, storage_options, max_concurrent, max_tile_bytes, errors
            As ``Collection.get_xarray``.

        Returns
        -------
        xarray.Dataset
            Nothing is fetched until it is computed.

        Raises
        ------
        ValueError
            For a window outside the image, a geometry that misses it, a record without an
            EPSG code or bands whose grids do not line up (each naming the record, band and
            href where it applies).
        """
        check_errors(errors)
        plan = self.plan(geometry, window=window, geometry_crs=geometry_crs,
                         all_touched=all_touched, chunks=chunks, max_tile_bytes=max_tile_bytes)
        reader = self.source.reader(storage_options, max_concurrent)
        return to_dataset(plan, reader, errors=errors).rename(self.source.renames)


def check_layer(schema: pa.Schema, bands: Sequence[str]) -> None:
    """Refuse a collection that lacks a column the execution layer needs.

    Parameters
    ----------
    schema
        The collection's schema.
    bands
        The bands to read, as the index names them.

    Raises
    ------
    ValueError
        Naming every missing column (and ``enrich()`` for missing ``{band}_metadata``).
    """
    missing = [c for c in LAYER_COLUMNS if c not in schema.names]
    unenriched = [b for b in bands if S.metadata_column(b) not in schema.names]
    missing += [S.metadata_column(b) for b in unenriched]
    if missing:
        hint = f"; run collection.enrich({unenriched}) first" if unenriched else ""
        raise ValueError("iterate_rasters needs the columns id, datetime, geometry, assets, "
                         f"scene_bbox and {{band}}_metadata for each band; missing: "
                         f"{missing}{hint}")


def _bboxes(batch: pa.Table) -> list[tuple[float, float, float, float] | None]:
    return [None if b is None else tuple(b) for b in batch[S.SCENE_BBOX].to_pylist()]


def _rasters(subset: Collection, source: ReadSource, on_missing: str,
             batch_size: int | None, extra: Sequence[str]) -> Iterator[Raster]:
    stored = source.stored_bands
    columns = [*LAYER_COLUMNS, *(S.metadata_column(b) for b in stored)]
    columns += [c for c in extra if c not in columns]
    if S.ENRICH_ERRORS in subset.schema.names:  # why a row has no metadata, for the warning
        columns.append(S.ENRICH_ERRORS)
    for batch in subset.to_batches(columns, batch_size=batch_size):
        table = pa.Table.from_batches([batch])
        settle_missing([r for b in stored for r in missing_records(table, b)], on_missing,
                       "iterate_rasters")
        per_band = {b: {r.id: r for r in band_records(table, b)} for b in stored}
        decoded = decode_footprints(table[S.GEOMETRY])
        footprints = [None] * table.num_rows if isinstance(decoded, str) else decoded.geoms
        bboxes = _bboxes(table)
        values = {c: table[c].to_pylist() for c in extra}
        for k, record_id in enumerate(table[S.ID].to_pylist()):
            records = {b: per_band[b].get(record_id) for b in stored}
            if any(r is None for r in records.values()):
                continue
            first = records[stored[0]]
            metadata = {asked: records[b].metadata for asked, b in source.bands.items()}
            yield Raster(record_id, first.datetime, footprints[k], bboxes[k], metadata, source,
                         records, {c: values[c][k] for c in extra})


def iterate_rasters(collection: Collection, bands: Sequence[str] | str | None = None, *,
                    data_source: Any = None, on_missing: str = "skip",
                    batch_size: int | None = None, columns: Sequence[str] = (),
                    **filters: Any) -> Iterator[Raster]:
    """One :class:`Raster` per record, read lazily batch by batch.

    Parameters
    ----------
    collection
        The index.
    bands : sequence of str or str, optional
        Bands, as the index or the data source's band map names them (default: every
        enriched band).
    data_source : DatasetDescriptor or str, optional
        Overrides the collection's data source (band names, storage options, URL signing).
    on_missing : {"skip", "raise"}, default "skip"
        Rows without metadata (or href) for a band: left out with a warning per batch, or
        ``MissingRecordsError``.
    batch_size : int, optional
        Rows per batch read from the index.
    columns : sequence of str, optional
        Other columns to carry on each Raster (``Raster.properties``).
    **filters
        ``Collection.subset`` arguments.

    Returns
    -------
    iterator of Raster
        In the index's row order.

    Raises
    ------
    ValueError
        At the call: an unknown ``on_missing``, a band the collection does not know, or a
        column the layer needs that the collection lacks (see :func:`check_layer`), or an
        unknown column in ``columns``.
    """
    check_on_missing(on_missing)
    check_layer(collection.schema, [])  # the columns every band needs, before band lookup
    if bands is None:
        bands = collection.enriched_bands
        if not bands:
            raise ValueError("iterate_rasters needs {band}_metadata columns; the collection "
                             "has none: run collection.enrich() first")
    source = read_source(collection, bands, data_source)
    check_layer(collection.schema, source.stored_bands)
    unknown = [c for c in columns if c not in collection.schema.names]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown} in columns=")
    subset = collection.subset(**filters) if filters else collection
    return _rasters(subset, source, on_missing, batch_size, tuple(columns))
