"""Reading an index: the files of one version as a lazy ``pyarrow.dataset``, never a write.

``open_dataset`` lists the version log, reads the latest manifest and opens exactly its files,
with the schema and partition values the manifest gives (no directory discovery, no footer
read, no request per file), so a reader sees one whole version even while a writer commits
the next. An index of the previous format (no log) is read from the files it holds; a single
(Geo)Parquet file or a plain hive-partitioned folder is read as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from .. import schema as S
from .geoparquet import CollectionInfo, read_collection_info
from .legacy import COMMON_METADATA, legacy_manifest, read_common_schema
from .objectstore import Store, arrow_filesystem, open_store
from .versions import FileEntry, Manifest, latest_manifest

__all__ = ["IndexChangedError", "OpenedIndex", "open_dataset", "manifest_dataset",
           "partitioning", "fragment_dataset"]


_ATTEMPTS = 5


class IndexChangedError(FileNotFoundError):
    """A file of the version a Collection was loaded at is gone: a later write replaced it."""


@dataclass(frozen=True)
class OpenedIndex:
    """What ``open_dataset`` found: the dataset, the collection metadata, and its version."""

    dataset: ds.Dataset
    info: CollectionInfo | None
    store: Store
    manifest: Manifest | None  # None for a single file or a plain folder


def partitioning(partition_by=S.PARTITION_COLUMNS) -> ds.Partitioning:
    """Hive partitioning with int64 keys, so year/month load with the contract's type."""
    return ds.partitioning(
        pa.schema([pa.field(name, pa.int64()) for name in partition_by]), flavor="hive"
    )


def _partition_expression(entry: FileEntry) -> ds.Expression | None:
    expression = None
    for key, value in entry.partition:
        term = ds.field(key) == pa.scalar(int(value), pa.int64())
        expression = term if expression is None else expression & term
    return expression


def manifest_dataset(store: Store, manifest: Manifest) -> ds.Dataset:
    """The dataset of exactly ``manifest``'s files (no listing, no request)."""
    filesystem = arrow_filesystem(store)
    fmt = ds.ParquetFileFormat()
    fragments = []
    for entry in manifest.files:
        expression = _partition_expression(entry)
        kwargs: dict[str, Any] = {"file_size": entry.size} if entry.size else {}
        if expression is not None:
            kwargs["partition_expression"] = expression
        fragments.append(fmt.make_fragment(store.path(entry.path), filesystem=filesystem,
                                           **kwargs))
    return ds.FileSystemDataset(fragments, manifest.dataset_schema(), fmt, filesystem)


def fragment_dataset(fragment: ds.Fragment, schema: pa.Schema) -> ds.Dataset:
    """A dataset of one fragment of :func:`manifest_dataset` (picklable pieces, for tasks)."""
    return ds.FileSystemDataset([fragment], schema, fragment.format, fragment.filesystem)


def _plain(store: Store) -> OpenedIndex:
    filesystem = arrow_filesystem(store)
    if store.fs.isfile(store.root):
        dataset = ds.dataset(store.root, format="parquet", filesystem=filesystem)
        return OpenedIndex(dataset, read_collection_info(dataset.schema), store, None)
    if not store.fs.isdir(store.root):
        raise FileNotFoundError(f"no collection index at {store.url}: check the path, or build "
                                "one first (build_from_table / build_from_stac; on the "
                                "command line build-table / build-stac)")
    part = partitioning()
    schema = None
    common = read_common_schema(store, COMMON_METADATA)
    if common is not None:
        schema = pa.unify_schemas([common, part.schema]).with_metadata(common.metadata)
    dataset = ds.dataset(store.root, format="parquet", partitioning=part, schema=schema,
                         filesystem=filesystem)
    return OpenedIndex(dataset, read_collection_info(dataset.schema), store, None)


def open_dataset(path: str | os.PathLike | Store, *,
                 storage_options: Mapping[str, Any] | None = None) -> OpenedIndex:
    """Open the latest version of an index (or a single (Geo)Parquet file) lazily.

    Nothing is written. ``storage_options`` merge over the dask config ones for the path's
    protocol (``rasteret_dask.storage_options``).
    """
    store = path if isinstance(path, Store) else open_store(path, storage_options)
    if store.fs.isfile(store.root):
        return _plain(store)
    for attempt in range(_ATTEMPTS):
        try:
            manifest = latest_manifest(store) or legacy_manifest(store)
        except FileNotFoundError:
            # a previous-format file vanished while its footer was read: a writer is
            # converting the index; its first version is (about to be) there
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        if manifest is None:
            return _plain(store)
        return OpenedIndex(manifest_dataset(store, manifest), manifest.info, store, manifest)
    raise AssertionError("unreachable")
