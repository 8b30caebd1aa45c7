"""The descriptor registry and the data-source resolution order used by builds and reads.

Resolution (the contract's order): an explicit ``data_source`` argument, the index's stored
data source (a Collection's ``data_source``: set by ``load(..., data_source=)`` or stored in the
Parquet metadata by a build or an export), the first non-empty value of the dataset's
``collection`` column, else none (identity band mapping, no URL signing, no extra storage
options).

Besides the built-ins and descriptors registered in the process, the registry holds the
user's registered local indexes (``register_local``), kept in a JSON file under the user's
configuration directory (``catalog.local``) and read when the registry is first consulted (and
again whenever that file's location changes).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from .builtins import BUILTINS
from .descriptor import DatasetDescriptor
from .local import (
    local_descriptor,
    local_registry_path,
    read_local_descriptors,
    write_local_descriptors,
)

__all__ = [
    "register",
    "unregister",
    "get_descriptor",
    "descriptors",
    "find_descriptor",
    "registered",
    "search",
    "register_local",
    "unregister_local",
    "resolve_data_source",
]

_lock = threading.Lock()
_registry: dict[str, DatasetDescriptor] = {d.id: d for d in BUILTINS}
_BUILTIN_IDS = frozenset(_registry)
_local_ids: set[str] = set()
_session_local_ids: set[str] = set()
_local_source: list[Path | None] = [None]


def _sync_local() -> None:
    """Hold exactly the entries of the current local registry file (call with ``_lock``)."""
    path = local_registry_path()
    if _local_source[0] == path:
        return
    entries = read_local_descriptors(path)
    for dataset_id in _local_ids:
        _registry.pop(dataset_id, None)
    _local_ids.clear()
    for descriptor in entries:
        if descriptor.id in _BUILTIN_IDS:
            continue  # a file cannot shadow a built-in (register_local refuses to write one)
        _registry[descriptor.id] = descriptor
        _local_ids.add(descriptor.id)
    _local_source[0] = path


def register(descriptor: DatasetDescriptor, *, replace: bool = False) -> DatasetDescriptor:
    """Add a user descriptor; ``replace=True`` overrides one with the same id."""
    if not isinstance(descriptor, DatasetDescriptor):
        raise TypeError(f"register() takes a DatasetDescriptor, got {type(descriptor).__name__}")
    with _lock:
        _sync_local()
        if descriptor.id in _registry and not replace and _registry[descriptor.id] != descriptor:
            raise ValueError(f"a descriptor {descriptor.id!r} is already registered; "
                             "pass replace=True to override it")
        _registry[descriptor.id] = descriptor
    return descriptor


def unregister(dataset_id: str) -> None:
    """Remove a descriptor (built-ins come back only on restart)."""
    with _lock:
        _registry.pop(dataset_id, None)


def descriptors() -> list[DatasetDescriptor]:
    """Every registered descriptor, built-ins first."""
    with _lock:
        _sync_local()
        return list(_registry.values())


def registered(dataset_id: str) -> DatasetDescriptor | None:
    """The descriptor registered as ``dataset_id``, or None (no error)."""
    with _lock:
        _sync_local()
        return _registry.get(dataset_id)


def search(keyword: str) -> list[DatasetDescriptor]:
    """Descriptors whose id, name, description, STAC collection or licence mention ``keyword``.

    Parameters
    ----------
    keyword : str
        Case-insensitive text (``"dem"``, ``"land cover"``, ``"CC-BY"``).

    Returns
    -------
    list of DatasetDescriptor
        In registration order (built-ins first).
    """
    if not isinstance(keyword, str) or not keyword.strip():
        raise ValueError(f"search() needs a non-empty keyword, got {keyword!r}")
    wanted = keyword.strip().lower()
    found = []
    for descriptor in descriptors():
        text = " ".join(str(v) for v in (descriptor.id, descriptor.name, descriptor.description,
                                         descriptor.stac_collection or "", descriptor.license))
        if wanted in text.lower():
            found.append(descriptor)
    return found


def _index_location(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        return text
    local = Path(text[len("file://"):] if text.startswith("file://") else text).expanduser()
    if not local.exists():
        raise FileNotFoundError(f"register_local: nothing at {local} (give the folder of an "
                                "index, or a (Geo)Parquet file)")
    return str(local.resolve())


def register_local(dataset_id: str, path: str | os.PathLike, *, name: str = "",
                   description: str = "", persist: bool = True,
                   replace: bool = False) -> DatasetDescriptor:
    """Register an index (a local folder or file, or a URL) under a dataset id for ``load``.

    Parameters
    ----------
    dataset_id : str
        ``"provider/name"`` (``"local/bangalore"``); not a built-in's id.
    path : str or os.PathLike
        The index: a local path (made absolute; it must exist) or an fsspec URL.
    name, description : str, optional
        Shown by ``descriptors()`` and found by ``search()``.
    persist : bool, default True
        Keep it in the user's local registry file (``catalog.local``) so later processes
        know it; False registers it in this process only.
    replace : bool, default False
        Replace an entry already registered under ``dataset_id``.

    Returns
    -------
    DatasetDescriptor
        With ``index_uri`` set: ``load(dataset_id)`` opens it.

    Raises
    ------
    ValueError
        For a built-in's id, or an id already registered (without ``replace``).
    FileNotFoundError
        When a local ``path`` does not exist.
    """
    if dataset_id in _BUILTIN_IDS:
        raise ValueError(f"{dataset_id!r} is a built-in dataset; register the index under "
                         "another id (e.g. 'local/...')")
    descriptor = local_descriptor(dataset_id, _index_location(path), name=name,
                                  description=description)
    with _lock:
        _sync_local()
        existing = _registry.get(dataset_id)
        if existing is not None and existing != descriptor and not replace:
            raise ValueError(f"a dataset {dataset_id!r} is already registered; pass "
                             "replace=True to override it")
        if persist:
            kept = [d for d in read_local_descriptors() if d.id != dataset_id]
            write_local_descriptors([*kept, descriptor])
            _local_ids.add(dataset_id)
        else:
            _session_local_ids.add(dataset_id)
        _registry[dataset_id] = descriptor
    return descriptor


def unregister_local(dataset_id: str) -> bool:
    """Forget a registered local index (in this process and in the local registry file).

    Returns
    -------
    bool
        Whether the file held it. The index itself is not touched.
    """
    with _lock:
        _sync_local()
        entries = read_local_descriptors()
        kept = [d for d in entries if d.id != dataset_id]
        if len(kept) != len(entries):
            write_local_descriptors(kept)
        if dataset_id in _local_ids | _session_local_ids:
            _registry.pop(dataset_id, None)
            _local_ids.discard(dataset_id)
            _session_local_ids.discard(dataset_id)
        return len(kept) != len(entries)


def get_descriptor(dataset_id: str | DatasetDescriptor) -> DatasetDescriptor:
    """The descriptor registered as ``dataset_id`` (a descriptor passes through)."""
    if isinstance(dataset_id, DatasetDescriptor):
        return dataset_id
    with _lock:
        _sync_local()
        found = _registry.get(dataset_id)
        known = sorted(_registry)
    if found is None:
        raise ValueError(f"unknown data source {dataset_id!r}; registered: {', '.join(known)}")
    return found


def _same_api(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.rstrip("/") == b.rstrip("/")


def find_descriptor(stac_collection: str | None, stac_api: str | None = None, *,
                    same_api: bool = False) -> DatasetDescriptor | None:
    """The descriptor for a STAC collection id: same API first, else (unless ``same_api``)
    the first registered."""
    if not stac_collection:
        return None
    with _lock:
        _sync_local()
        candidates = [d for d in _registry.values() if d.stac_collection == stac_collection]
    for descriptor in candidates:
        if _same_api(descriptor.stac_api, stac_api):
            return descriptor
    return candidates[0] if candidates and not same_api else None


def _lookup(value: str | None) -> DatasetDescriptor | None:
    if not value:
        return None
    with _lock:
        found = _registry.get(value)
    return found if found is not None else find_descriptor(value)


def _collection_column_value(dataset: ds.Dataset) -> str | None:
    if "collection" not in dataset.schema.names:
        return None
    column = ds.field("collection")
    scanner = dataset.scanner(columns=["collection"],
                              filter=column.is_valid() & (column != ""))
    head = scanner.head(1)
    return head.column(0)[0].as_py() if head.num_rows else None


def resolve_data_source(data_source: Any = None, stored: str | None = None,
                        dataset: ds.Dataset | None = None) -> DatasetDescriptor | None:
    """The descriptor that applies to a read or build, following the contract's order.

    Parameters
    ----------
    data_source : DatasetDescriptor or str, optional
        The caller's explicit choice (a descriptor or a registered id); wins when given.
    stored : str, optional
        The index's stored data source (``Collection.data_source``): a registered id or a
        STAC collection id.
    dataset : pyarrow.dataset.Dataset, optional
        The index's rows; the first non-empty value of its ``collection`` column is the
        last resort (read only when nothing before it resolves).

    Returns
    -------
    DatasetDescriptor or None
        None when nothing resolves (identity band mapping, no signing, no storage options).

    Raises
    ------
    ValueError
        When ``data_source`` names no registered descriptor.
    """
    if data_source is not None:
        return get_descriptor(data_source)
    found = _lookup(stored)
    if found is not None or dataset is None:
        return found
    return _lookup(_collection_column_value(dataset))
