"""The descriptor registry and the data-source resolution order used by builds and reads.

Resolution (the contract's order): an explicit ``data_source`` argument, the index's stored
data source (a Collection's ``data_source``: set by ``load(..., data_source=)`` or stored in the
Parquet metadata by a build or an export), the first non-empty value of the dataset's
``collection`` column, else none (identity band mapping, no URL signing, no extra storage
options).
"""

from __future__ import annotations

import threading
from typing import Any

import pyarrow.dataset as ds

from .builtins import BUILTINS
from .descriptor import DatasetDescriptor

__all__ = [
    "register",
    "unregister",
    "get_descriptor",
    "descriptors",
    "find_descriptor",
    "resolve_data_source",
]

_lock = threading.Lock()
_registry: dict[str, DatasetDescriptor] = {d.id: d for d in BUILTINS}


def register(descriptor: DatasetDescriptor, *, replace: bool = False) -> DatasetDescriptor:
    """Add a user descriptor; ``replace=True`` overrides one with the same id."""
    if not isinstance(descriptor, DatasetDescriptor):
        raise TypeError(f"register() takes a DatasetDescriptor, got {type(descriptor).__name__}")
    with _lock:
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
        return list(_registry.values())


def get_descriptor(dataset_id: str | DatasetDescriptor) -> DatasetDescriptor:
    """The descriptor registered as ``dataset_id`` (a descriptor passes through)."""
    if isinstance(dataset_id, DatasetDescriptor):
        return dataset_id
    with _lock:
        found = _registry.get(dataset_id)
        known = sorted(_registry)
    if found is None:
        raise ValueError(f"unknown data source {dataset_id!r}; registered: {', '.join(known)}")
    return found


def _same_api(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.rstrip("/") == b.rstrip("/")


def find_descriptor(stac_collection: str | None, stac_api: str | None = None
                    ) -> DatasetDescriptor | None:
    """The descriptor for a STAC collection id: same API first, else the first registered."""
    if not stac_collection:
        return None
    with _lock:
        candidates = [d for d in _registry.values() if d.stac_collection == stac_collection]
    for descriptor in candidates:
        if _same_api(descriptor.stac_api, stac_api):
            return descriptor
    return candidates[0] if candidates else None


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
