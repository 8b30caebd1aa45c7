"""The ``Collection``: a lazy, filterable view of an index, and the face of every layer below it."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from . import schema as S
from .collection_reads import CollectionReads
from .index import filters as F
from .index.arrow_stream import geoarrow_schema, stream_reader
from .index.dataset import IndexChangedError
from .index.footprints import footprint_gap_message, intersecting_ids, union_bounds
from .index.frames import FragmentReader, to_geodataframe
from .index.geoparquet import CollectionInfo
from .index.objectstore import Store, open_store
from .index.subset import subset_expression
from .summary import CollectionSummary, collection_html

__all__ = ["Collection", "MissingFootprintWarning", "as_input_table",
           "build_collection_from_table", "load"]


class MissingFootprintWarning(UserWarning):
    """Records matching a query's other filters have no footprint, so no geometry meets them."""


class Collection(CollectionReads):
    """A set of records (scenes) with COG assets, backed by an Arrow dataset and a filter.

    A Collection loaded from an index reads the files of the version it was loaded at
    (``version``); once a later write has replaced them, reading raises
    ``IndexChangedError``: ``load()`` the index again.
    """

    def __init__(
        self,
        dataset: ds.Dataset,
        info: CollectionInfo,
        *,
        path: str | None = None,
        filter: ds.Expression | None = None,
        version: int | None = None,
        storage_options: dict | None = None,
    ) -> None:
        self._dataset = dataset
        self.info = info
        self.path = path
        self.filter = filter
        self.version = version
        self.storage_options = dict(storage_options or {})
        self._without_footprint: pa.Table | None = None

    def store(self) -> Store | None:
        """Where the index lives (None in memory), with the options it was loaded with."""
        return None if self.path is None else open_store(self.path, self.storage_options)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn a vanished file of this version into an error that says what happened."""
        try:
            yield
        except FileNotFoundError as exc:
            if self.version is None or isinstance(exc, IndexChangedError):
                raise
            raise IndexChangedError(
                f"the index at {self.path} changed since this collection was loaded (version "
                f"{self.version}; its files were replaced by a later write): load() it again"
            ) from exc

    # --- identity -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info.name

    @property
    def data_source(self) -> str | None:
        return self.info.data_source

    @property
    def description(self) -> str | None:
        return self.info.description

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else " (in memory)"
        filt = f", filter={self.filter}" if self.filter is not None else ""
        return f"<Collection {self.name!r}{where}, bands={self.bands}{filt}>"

    # --- data access ----------------------------------------------------------------
    @property
    def schema(self) -> pa.Schema:
        """The records' schema as they are read and exported: every column (partition keys
        included) in the stored order, ``geometry`` marked ``geoarrow.wkb`` in CRS84. It is
        the schema of ``__arrow_c_stream__`` (DuckDB checks the two agree)."""
        base = self._dataset.schema
        fields = [base.field(name) for name in self._ordered_columns(None)]
        return geoarrow_schema(pa.schema(fields))

    @property
    def dataset(self) -> ds.Dataset:
        """The ``pyarrow.dataset.Dataset`` of this collection, with its filter applied."""
        return self._dataset if self.filter is None else self._dataset.filter(self.filter)

    def _ordered_columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is not None:
            return list(columns)
        names = self._dataset.schema.names
        order = [c for c in self.info.extra.get("column_order", []) if c in names]
        return order + [c for c in names if c not in order]

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Materialise the (filtered) records as an Arrow table, in the stored column order."""
        with self._reading():
            table = self._dataset.to_table(columns=self._ordered_columns(columns),
                                           filter=self.filter)
        return table.replace_schema_metadata(None)

    def fragments(self) -> list[ds.Fragment]:
        """The files (one per partition) that the filter can match: pruned by partition keys."""
        return list(self._dataset.get_fragments(filter=self.filter))

    def __len__(self) -> int:
        with self._reading():
            return self._dataset.count_rows(filter=self.filter)

    def head(self, n: int = 5, columns: Sequence[str] | None = None) -> pa.Table:
        """The first ``n`` records (of ``columns``, default all in the stored order)."""
        with self._reading():
            table = self._dataset.head(n, columns=self._ordered_columns(columns),
                                       filter=self.filter)
        return table.replace_schema_metadata(None)

    # --- Arrow export (PyCapsule protocol) ---------------------------------------------
    def _guarded(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        with self._reading():
            yield from batches

    def to_reader(self, columns: Sequence[str] | None = None, *,
                  batch_size: int | None = None) -> pa.RecordBatchReader:
        """The (filtered) records as a lazy ``pyarrow.RecordBatchReader``.

        Parameters
        ----------
        columns : sequence of str, optional
            Columns to read, in this order; default all, in the stored order.
        batch_size : int, optional
            Maximum rows per batch.

        Returns
        -------
        pyarrow.RecordBatchReader
            ``geometry`` is marked ``geoarrow.wkb`` with OGC:CRS84 (PROJJSON) in its field
            metadata; files are read as batches are pulled.
        """
        return stream_reader(self._dataset, self._ordered_columns(columns), self.filter,
                             batch_size, guard=self._guarded)

    def to_batches(self, columns: Sequence[str] | None = None, *,
                   batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        """The (filtered) records batch by batch (see :meth:`to_reader`)."""
        yield from self.to_reader(columns, batch_size=batch_size)

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """Export the records through the Arrow PyCapsule protocol.

        ``pa.table(collection)``, ``geopandas.GeoDataFrame.from_arrow(collection)``,
        ``duckdb.sql("select ... from collection")`` and ``polars.from_arrow(collection)``
        read it; the geometry is ``geoarrow.wkb`` in CRS84.

        Parameters
        ----------
        requested_schema : PyCapsule, optional
            A schema the consumer asks for; pyarrow casts to it when it can.

        Returns
        -------
        PyCapsule
            An ``arrow_array_stream`` capsule.
        """
        return self.to_reader().__arrow_c_stream__(requested_schema)

    @property
    def bands(self) -> list[str]:
        """Band codes of the ``assets`` struct."""
        return [f.name for f in self.schema.field(S.ASSETS).type]

    @property
    def enriched_bands(self) -> list[str]:
        """Bands that have a ``{band}_metadata`` column."""
        return S.metadata_bands(self.schema)

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """Union bbox of the (filtered) footprints in CRS84, read from the bbox columns only
        (west > east when it crosses the antimeridian, as in RFC 7946)."""
        with self._reading():
            table = self._dataset.to_table(columns=list(S.BBOX_COLUMNS), filter=self.filter)
        if table.num_rows == 0:
            return None
        return union_bounds(*(table[c].to_numpy() for c in S.BBOX_COLUMNS))

    @property
    def epsg(self) -> list[int]:
        """Distinct EPSG codes of the records (``proj:epsg``, else the enriched headers)."""
        with self._reading():
            return self._epsg()

    def _epsg(self) -> list[int]:
        codes: set[int] = set()
        if S.EPSG in self.schema.names:
            column = self._dataset.to_table(columns=[S.EPSG], filter=self.filter)[S.EPSG]
            codes.update(int(v) for v in pc.unique(column.drop_null()).to_pylist())
        if not codes:
            for band in self.enriched_bands:
                column = self._dataset.to_table(
                    columns={"e": pc.struct_field(ds.field(S.metadata_column(band)), "crs_epsg")},
                    filter=self.filter,
                )["e"]
                codes.update(int(v) for v in pc.unique(column.drop_null()).to_pylist())
        return sorted(codes)

    @property
    def crs(self) -> list[str]:
        """Distinct CRSs of the records as ``"EPSG:<code>"`` (see :attr:`epsg`)."""
        return [f"EPSG:{code}" for code in self.epsg]

    def date_range(self) -> tuple[Any, Any] | None:
        """(first, last) datetime of the (filtered) records."""
        with self._reading():
            column = self._dataset.to_table(columns=[S.DATETIME], filter=self.filter)[S.DATETIME]
        if len(column) == column.null_count:
            return None
        return pc.min(column).as_py(), pc.max(column).as_py()

    def describe(self) -> CollectionSummary:
        """A summary: records, partitions, date range, bounds, CRSs, bands, enrichment per band.

        Returns
        -------
        CollectionSummary
            Printed (or shown in a notebook) it reads as a short table; it is also a
            read-only mapping (``describe()["records"]``) and ``to_dict()`` gives plain values.
        """
        enriched = {}
        for band in self.enriched_bands:
            with self._reading():
                col = self._dataset.to_table(columns=[S.metadata_column(band)],
                                             filter=self.filter)
            enriched[band] = int(col.num_rows - col.column(0).null_count)
        return CollectionSummary(
            name=self.name, data_source=self.data_source, records=len(self),
            partitions=len(self.fragments()), date_range=self.date_range(),
            bounds=self.bounds, bands=self.bands, epsg=self.epsg, enriched=enriched,
            columns=self.schema.names, path=self.path, version=self.version)

    def _repr_html_(self) -> str:
        """A notebook's view: name, where, version, filter, records, bands, columns."""
        return collection_html(self.name, path=self.path, version=self.version,
                               filter=self.filter, records=len(self),
                               partitions=len(self.fragments()), bands=self.bands,
                               enriched_bands=self.enriched_bands, columns=self.schema.names)

    # --- filtering ------------------------------------------------------------------
    def where(self, expression: ds.Expression | str) -> Collection:
        """A new Collection restricted by a ``pyarrow.compute`` expression (pushed down).

        Parameters
        ----------
        expression : pyarrow.dataset.Expression or str
            E.g. ``pc.field("platform") == "sentinel-2a"``, or the same as SQL text
            (``"eo:cloud_cover < 20 AND platform = 'sentinel-2a'"``, parsed by DuckDB into an
            Arrow expression: ``index/where.py``); combined with this collection's filter by
            AND. Partition keys and bbox columns in it prune files and row groups.

        Returns
        -------
        Collection
            A lazy view; nothing is read.

        Raises
        ------
        ValueError
            For text that is not one condition over the collection's columns (the message
            names the problem).
        """
        if isinstance(expression, str):
            from .index.where import where_expression

            expression = where_expression(expression, self.schema)
        combined = F.and_all([self.filter, expression])
        return Collection(self._dataset, self.info, path=self.path, filter=combined,
                          version=self.version, storage_options=self.storage_options)

    def subset(
        self,
        *,
        cloud_cover_lt: float | None = None,
        date_range: Sequence[Any] | None = None,
        bbox: Sequence[float] | None = None,
        geometries: Any = None,
        split: str | Sequence[str] | None = None,
        split_column: str = "split",
        where: ds.Expression | str | None = None,
        **equals: Any,
    ) -> Collection:
        """A new Collection of the records matching every given condition (AND).

        Parameters
        ----------
        cloud_cover_lt : float, optional
            Records whose ``eo:cloud_cover`` (or ``cloud_cover``) is below this.
        date_range : (start, end), optional
            ISO dates or datetimes, both ends included (a date end means the whole day);
            prunes month partitions.
        bbox : (minx, miny, maxx, maxy), optional
            In degrees (CRS84); records whose footprint bbox meets it (west > east crosses the
            antimeridian). Prunes row groups by their bbox statistics.
        geometries : geometry or geometries, optional
            Anything ``get_xarray`` accepts (CRS84): exact footprint intersection.
        split : str or sequence of str, optional
            Records whose ``split_column`` equals this value (or one of these).
        split_column : str, default "split"
            The column ``split`` refers to.
        where : pyarrow.dataset.Expression or str, optional
            Any further condition, as :meth:`where` takes it (SQL text such as
            ``"eo:cloud_cover < 20 AND platform = 'sentinel-2a'"``, or an expression).
        **equals
            ``column=value`` (or a list of values) for any other column.

        Returns
        -------
        Collection
            A lazy view; only ``geometries`` reads the footprints of the bbox candidates.

        Raises
        ------
        ValueError
            For a column the collection does not have, or an invalid date range or bbox.
        TypeError
            For a value that does not match its column's type (``split=123`` on a text
            column), a non-numeric ``cloud_cover_lt`` or bbox, or a nested column compared
            with a value: at the call, naming the column and the value.

        Warns
        -----
        MissingFootprintWarning
            With ``geometries``, when records matching the other filters have no footprint
            (their geometry was null and enrichment has not filled it from the header).
        """
        condition = subset_expression(
            self.schema, cloud_cover_lt=cloud_cover_lt, date_range=date_range, bbox=bbox,
            split=split, split_column=split_column, equals=equals)
        result = self if condition is None else self.where(condition)
        if where is not None:
            result = result.where(where)
        if geometries is not None:
            result = result._intersecting(geometries)
        return result

    def _intersecting(self, geometries: Any) -> Collection:
        """Exact footprint intersection: bbox pushdown, then shapely on the remaining rows."""
        import shapely

        from .plan.geometry import coerce_geometries

        shapes = coerce_geometries(geometries)
        union = shapely.union_all(shapes)
        self._warn_missing_footprints()
        narrowed = self.where(F.bbox_expression(shapely.bounds(union).tolist()))
        with self._reading():
            hits = intersecting_ids(narrowed._dataset, narrowed.filter, union)
        return narrowed.where(pc.is_in(ds.field(S.ID), value_set=hits))

    def _warn_missing_footprints(self) -> None:
        """Name the records no geometry can meet because they have no footprint, and why."""
        if S.BBOX_COLUMNS[0] not in self.schema.names:
            return
        if self._without_footprint is None:  # a view never changes: scan once per view
            lacking = self.where(ds.field(S.BBOX_COLUMNS[0]).is_null())
            columns = [S.ID] + [S.ENRICH_ERRORS] * (S.ENRICH_ERRORS in self.schema.names)
            with self._reading():
                self._without_footprint = lacking._dataset.to_table(columns=columns,
                                                                    filter=lacking.filter)
        message = footprint_gap_message(self._without_footprint)
        if message is not None:
            warnings.warn(message, MissingFootprintWarning, stacklevel=3)

    # --- enrichment -----------------------------------------------------------------
    def enrich(
        self,
        bands: Sequence[str] | None = None,
        *,
        client: Any = None,
        only_missing: bool = True,
        storage_options: dict | None = None,
        max_concurrent: int = 64,
        progress: bool = False,
        data_source: Any = None,
        verify: bool | float = False,
    ):
        """Fill ``{band}_metadata`` from COG headers: one Dask task per partition.

        Each task fetches its records' headers concurrently (one GET per GDAL COG in the usual
        case), writes its partition's new file, and the client commits one new version of the
        index; another writer's concurrent changes are merged or the affected partitions
        redone. A header that fails leaves that record's band metadata null with the reason in
        ``enrich_errors``.

        Parameters
        ----------
        bands : sequence of str, optional
            Bands to enrich; default all of the collection's bands.
        client : distributed.Client, optional
            Where to run; default the active ``distributed`` client, else local threads.
        only_missing : bool, default True
            Fetch only headers whose metadata is null (missing or failed); False re-reads all.
        storage_options : dict, optional
            fsspec options for the COGs (default: the data source's, merged over the
            ``rasteret_dask.storage_options`` dask config).
        max_concurrent : int, default 64
            Requests in flight per task.
        progress : bool, default False
            Show a progress bar of the tasks (``tqdm`` on local threads, a widget in a
            notebook, ``distributed.progress`` on a cluster).
        data_source : str or DatasetDescriptor, optional
            Overrides the collection's data source (band aliases, storage options, signer).
        verify : bool or float, default False
            First check every enriched record's object (one HEAD each, in the same tasks)
            against the ETag, size and Last-Modified stored at enrichment, and enrich again the
            records whose object changed or has no stored identity; a float in (0, 1] checks
            that stable fraction of the objects (by a hash of the href).

        Returns
        -------
        EnrichReport
            Records enriched, failed and skipped, partitions rewritten, the first errors, and
            ``.collection``, the enriched collection (this collection's filter kept).

        Raises
        ------
        ValueError
            For a band the collection does not have.
        ConcurrentWriteError
            When another writer kept changing the same partitions (after 5 attempts).
        """
        from .enrich import enrich_collection
        from .read.source import read_source

        reader = read_source(self, None, data_source).reader(storage_options, max_concurrent)
        verification = None
        if verify is not False:
            from .enrich import Verification

            verification = Verification(1.0 if verify is True else float(verify))
        return enrich_collection(self, bands, client=client, only_missing=only_missing,
                                 reader=reader, progress=progress, verify=verification)

    # --- conversion and storage -----------------------------------------------------
    def to_dask_geopandas(self):
        """A dask-geopandas GeoDataFrame with one partition per file (per year/month)."""
        import dask.dataframe as dd
        import dask_geopandas  # noqa: F401  (registers the geopandas dispatch for dask)

        columns = self._ordered_columns(None)
        fragments = self.fragments() if self.path else [None]
        reader = FragmentReader(self._dataset.schema, self._dataset if not self.path else None,
                                columns, self.filter)
        meta = to_geodataframe(self._dataset.schema.empty_table().select(columns))
        return dd.from_map(reader, fragments, meta=meta)

    def export(self, path: str | os.PathLike, partition_by: Sequence[str] = S.PARTITION_COLUMNS,
               *, overwrite: bool = False, storage_options: dict | None = None) -> Collection:
        """Write the records as a hive-partitioned GeoParquet index and return it loaded.

        The write is one committed version: readers see the previous index or this one, never
        a mix.

        Parameters
        ----------
        path : str or os.PathLike
            A local folder or any fsspec URL (``s3://bucket/index``).
        partition_by : sequence of str, default ("year", "month")
            Hive partition keys.
        overwrite : bool, default False
            Replace an existing index at ``path`` (only its own files are removed).
        storage_options : dict, optional
            fsspec options for ``path`` (merged over the ``rasteret_dask.storage_options``
            dask config).

        Returns
        -------
        Collection
            The written index, loaded.

        Raises
        ------
        NotAnIndexError
            ``path`` is a non-empty folder that is not an index (nothing in it is touched).
        IndexExistsError
            ``path`` holds an index and ``overwrite`` is False.
        ConcurrentWriteError
            Another writer committed to ``path`` meanwhile; nothing was changed.
        """
        from .loading import export_collection

        return export_collection(self, path, partition_by, overwrite=overwrite,
                                 storage_options=storage_options)


# load and build_collection_from_table live in loading.py (they return Collections)
from .loading import as_input_table, build_collection_from_table, load  # noqa: E402
