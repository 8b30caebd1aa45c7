"""Opening and writing collections: ``load`` (an index, a Parquet file or a registered dataset
id), ``build_collection_from_table`` (records in memory, validated and normalised) and
``export_collection`` (a collection written as a new index version)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from . import schema as S
from .collection import Collection
from .index.dataset import open_dataset
from .index.geoparquet import CollectionInfo
from .index.normalize import normalize_table
from .index.objectstore import open_store
from .index.storage import ConcurrentWriteError, prepare_export, write_partitioned

__all__ = ["as_input_table", "build_collection_from_table", "export_collection", "load"]


def as_input_table(data: Any, **item_options: Any) -> pa.Table:
    """STAC items (``ItemCollection``, ``Item``s, item dicts, a FeatureCollection) as rows
    (``ingest.stac_items.items_to_table``, ``item_options`` passed on), anything else through
    ``index.inputs.as_arrow_table``."""
    from .index.inputs import as_arrow_table
    from .ingest.stac_items import item_dicts, items_to_table

    items = item_dicts(data)
    if items is not None:
        return items_to_table(items, **item_options)
    return as_arrow_table(data)


def build_collection_from_table(
    table: Any, *, name: str, data_source: str | None = None, description: str | None = None
) -> Collection:
    """Validate and normalise records into an in-memory Collection.

    Parameters
    ----------
    table : table-like or STAC items
        An Arrow table/batch/reader, a (geo)pandas frame, an object with
        ``__arrow_c_stream__`` / ``__arrow_c_array__``, a pystac ``ItemCollection``, a list
        of pystac ``Item``s or STAC item dicts, or a GeoJSON FeatureCollection of items.
    name : str
        The collection's name.
    data_source : str, optional
        A descriptor id stored with the collection.
    description : str, optional
        Stored in the collection metadata.

    Returns
    -------
    Collection
        In memory; ``export`` writes it as an index.

    Raises
    ------
    ValueError
        When the records do not satisfy the contract (every problem listed).
    """
    normalized = normalize_table(as_input_table(table))
    info = CollectionInfo(
        name=name, data_source=data_source, description=description,
        bands=tuple(f.name for f in normalized.schema.field(S.ASSETS).type),
        extra={"column_order": normalized.column_names},
    )
    return Collection(ds.dataset(normalized), info)


def _published_index(path: str | os.PathLike, storage_options: dict | None,
                     data_source: str | None) -> tuple[str, dict | None, str | None]:
    """``path`` itself, or the index a registered dataset id publishes (with its options)."""
    text = os.fspath(path)
    if "://" in text or os.path.exists(text):
        return text, storage_options, data_source
    from .catalog import registered

    descriptor = registered(text)
    if descriptor is None:
        return text, storage_options, data_source
    if descriptor.index_uri is None:
        raise ValueError(
            f"dataset {descriptor.id!r} publishes no index of this format (no index_uri); "
            f"build one: rasteret_dask.build({descriptor.id!r}, bbox=..., date_range=...)")
    is_source = bool(descriptor.band_map or descriptor.signer or descriptor.storage_options)
    return (descriptor.index_uri, storage_options or descriptor.storage_options_dict(),
            data_source or (descriptor.id if is_source else None))


def load(path: str | os.PathLike, *, name: str | None = None, data_source: str | None = None,
         storage_options: dict | None = None) -> Collection:
    """Open an index (its latest version) or a single (Geo)Parquet file lazily; never writes.

    Parameters
    ----------
    path : str or os.PathLike
        A local path or any fsspec URL: an index folder, or one (Geo)Parquet file; or a
        registered dataset id (``"local/bangalore"`` from ``register_local``, or a
        descriptor with an ``index_uri``) when no such path exists.
    name : str, optional
        Overrides the stored collection name.
    data_source : str, optional
        Overrides the stored data source (a descriptor id).
    storage_options : dict, optional
        fsspec options for ``path``, merged over the ``rasteret_dask.storage_options`` dask
        config for its protocol.

    Returns
    -------
    Collection
        A lazy collection of the latest committed version (no row is read).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    ValueError
        The data lacks a required column (``id``, ``datetime``, ``geometry``, ``assets``), or
        ``path`` names a registered dataset that publishes no index.
    """
    path, storage_options, data_source = _published_index(path, storage_options, data_source)
    opened = open_dataset(path, storage_options=storage_options)
    dataset, info = opened.dataset, opened.info
    missing = [c for c in (S.ID, S.GEOMETRY, S.ASSETS) if c not in dataset.schema.names]
    if S.DATETIME not in dataset.schema.names and S.START_DATETIME not in dataset.schema.names:
        missing.append(S.DATETIME)
    if missing:
        raise ValueError(f"{path} is not a collection index: missing required column(s) {missing}")
    if info is None:
        info = CollectionInfo(name=name or Path(str(path).rstrip("/")).stem)
    updates = {k: v for k, v in (("name", name), ("data_source", data_source)) if v is not None}
    if updates:
        info = dataclasses.replace(info, **updates)
    version = opened.manifest.version if opened.manifest is not None else None
    return Collection(dataset, info, path=os.fspath(path), version=version,
                      storage_options=storage_options)


def export_collection(collection: Collection, path: str | os.PathLike,
                      partition_by: Sequence[str] = S.PARTITION_COLUMNS, *,
                      overwrite: bool = False, storage_options: dict | None = None
                      ) -> Collection:
    """Write ``collection``'s records as one committed version of the index at ``path``.

    Parameters, return value and errors: :meth:`rasteret_dask.Collection.export`.
    """
    store = open_store(path, storage_options)
    base = prepare_export(store, overwrite=overwrite)
    own = collection.store()
    if (base is not None and own is not None and collection.version is not None
            and own.root == store.root and type(own.fs) is type(store.fs)
            and base.version != collection.version):
        raise ConcurrentWriteError(
            f"the index at {store.url} changed (version {collection.version} -> "
            f"{base.version}) since this collection was loaded; nothing was changed; load() "
            "it and run again")
    table = collection.to_table()
    date = collection.date_range()
    info = dataclasses.replace(
        collection.info,
        bands=tuple(collection.bands),
        date_range=None if date is None else (date[0].isoformat(), date[1].isoformat()),
        extra={**collection.info.extra, "column_order": table.column_names},
    )
    write_partitioned(table, store, info, base=base, partition_by=partition_by)
    return load(path, storage_options=storage_options)
