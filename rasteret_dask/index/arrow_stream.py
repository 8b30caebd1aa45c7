"""A collection's records as an Arrow stream whose geometry is marked ``geoarrow.wkb`` (CRS84).

What ``Collection.__arrow_c_stream__`` (the Arrow PyCapsule protocol), ``to_reader`` and
``to_batches`` hand to other libraries: the filtered dataset scanned batch by batch, each
batch relabelled with a schema whose ``geometry`` field carries the GeoArrow extension name
and OGC:CRS84 as PROJJSON, so geopandas, DuckDB and polars know it is a geometry and where.
Only field metadata changes: the column's bytes are handed over as they are stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.dataset as ds
import pyproj

from .. import schema as S
from .inputs import EXTENSION_METADATA, EXTENSION_NAME, GEOARROW_WKB

__all__ = ["geoarrow_schema", "stream_reader", "CRS84_PROJJSON"]

CRS84_PROJJSON = pyproj.CRS.from_user_input("OGC:CRS84").to_json_dict()


def geoarrow_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with ``geometry`` marked ``geoarrow.wkb`` in CRS84 (others unchanged).

    Parameters
    ----------
    schema : pyarrow.Schema
        A collection's (projected) schema, without metadata.

    Returns
    -------
    pyarrow.Schema
    """
    index = schema.get_field_index(S.GEOMETRY)
    if index < 0:
        return schema
    metadata = {EXTENSION_NAME: GEOARROW_WKB.encode(),
                EXTENSION_METADATA: json.dumps({"crs": CRS84_PROJJSON,
                                                "crs_type": "projjson"}).encode()}
    field = schema.field(index).with_metadata(metadata)
    return schema.set(index, field)


def stream_reader(dataset: ds.Dataset, columns: Sequence[str], filter: ds.Expression | None,
                  batch_size: int | None = None,
                  guard: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
                  | None = None) -> pa.RecordBatchReader:
    """A ``RecordBatchReader`` over the dataset's matching records, geometry marked.

    Parameters
    ----------
    dataset : pyarrow.dataset.Dataset
        The collection's dataset.
    columns : sequence of str
        Columns in output order.
    filter : pyarrow.dataset.Expression or None
        The collection's filter.
    batch_size : int, optional
        Maximum rows per batch (pyarrow's default otherwise).
    guard : callable, optional
        Wraps the batch iterator (the collection turns a vanished file into its error).

    Returns
    -------
    pyarrow.RecordBatchReader
        Lazy: files are read as batches are pulled.
    """
    options = {} if batch_size is None else {"batch_size": int(batch_size)}
    scanner = dataset.scanner(columns=list(columns), filter=filter, **options)
    schema = geoarrow_schema(scanner.projected_schema.remove_metadata())

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in scanner.to_batches():
            yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)

    source = batches() if guard is None else guard(batches())
    return pa.RecordBatchReader.from_batches(schema, source)
