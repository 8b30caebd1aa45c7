"""The descriptor registry and the data-source resolution order used by builds and reads.

Resolution (the contract's order): an explicit ``data_source`` argument, the Collection's
``data_source`` (set by ``load(..., data_source=)`` or stored in the Parquet metadata by a
build or an export), the first non-empty value of the ``collection`` column, else none
(identity band mapping, no URL signing, no extra storage options).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pyarrow.dataset as ds

from .builtins import BUILTINS
from .descriptor import DatasetDescriptor

if TYPE_CHECKING:
    from ..collection import Collection

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


def resolve_data_source(data_source: Any = None, collection: Collection | None = None
                        ) -> DatasetDescriptor | None:
    """The descriptor that applies to a read or build, following the contract's order."""
    if data_source is not None:
        return get_descriptor(data_source)
    if collection is None:
        return None
    found = _lookup(collection.data_source)
    if found is not None:
        return found
    return _lookup(_collection_column_value(collection.dataset))
