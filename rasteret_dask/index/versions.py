"""The version log of an index: one JSON manifest per committed version.

``root/_rasteret/versions/<20-digit N>.json`` lists exactly the data files of version ``N``
(relative path, partition values, rows, bytes), the dataset schema with the collection metadata
(base64 of the Arrow IPC schema), the operation, its transaction id and UTC time. Readers open
the files of the latest manifest and nothing else; a writer commits version ``N + 1`` by
creating its manifest exclusively (:func:`objectstore.put_if_absent`), so of two writers that
start from version ``N`` exactly one wins and the other learns it (:class:`VersionConflict`).

Folders whose names start with ``_`` are ignored by pyarrow's and geopandas' discovery, and
DuckDB's ``**/*.parquet`` glob sees only data files, so the log is invisible to plain readers.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from .geoparquet import CollectionInfo, read_collection_info
from .objectstore import Store, delete, list_names, put_if_absent, read_bytes

__all__ = [
    "LOG_DIR",
    "VERSIONS_DIR",
    "KEEP_VERSIONS",
    "Partition",
    "FileEntry",
    "Manifest",
    "VersionConflict",
    "partition_dir",
    "partition_label",
    "version_name",
    "list_versions",
    "read_manifest",
    "latest_manifest",
    "commit_manifest",
    "prune_versions",
    "new_txn",
]

LOG_DIR = "_rasteret"
VERSIONS_DIR = f"{LOG_DIR}/versions"
KEEP_VERSIONS = 20
"""Manifests kept by the pruning after each commit (older ones are deleted)."""
LOG_FORMAT = 1
_VERSION_FILE = re.compile(r"^(\d{20})\.json$")

Partition = tuple[tuple[str, int], ...]
"""Hive key values of a partition in path order: ``(("year", 2024), ("month", 3))``."""


def partition_dir(partition: Partition) -> str:
    """``year=2024/month=3``: the folder of a partition, relative to the root."""
    return "/".join(f"{key}={int(value)}" for key, value in partition)


def partition_label(partition: Partition) -> str:
    """How messages name a partition (its folder)."""
    return partition_dir(partition) or "(unpartitioned)"


def version_name(version: int) -> str:
    """``_rasteret/versions/00000000000000000007.json`` for version 7."""
    return f"{VERSIONS_DIR}/{version:020d}.json"


def new_txn() -> str:
    """A fresh transaction id."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class FileEntry:
    """One data file of a version."""

    path: str  # relative to the index root, POSIX separators
    partition: Partition
    rows: int
    size: int

    def to_dict(self) -> dict:
        return {"path": self.path, "partition": dict(self.partition), "rows": self.rows,
                "size": self.size}

    @classmethod
    def from_dict(cls, data: Mapping) -> FileEntry:
        partition = tuple((str(k), int(v)) for k, v in dict(data["partition"]).items())
        return cls(str(data["path"]), partition, int(data["rows"]), int(data["size"]))


def _schema_to_text(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def _schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.BufferReader(base64.b64decode(text)))


@dataclass(frozen=True)
class Manifest:
    """A committed version: its data files and the schema they are read with.

    ``schema`` is the schema of the data files (partition keys excluded, as in
    ``_common_metadata``) carrying the ``geo`` and ``rasteret_dask`` metadata;
    ``partition_by`` names the hive keys. Version 0 is never written: it stands for an index of
    the previous format (no log), read from the files it holds.
    """

    version: int
    files: tuple[FileEntry, ...]
    schema: pa.Schema
    partition_by: tuple[str, ...]
    operation: str
    txn: str
    timestamp: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    @property
    def info(self) -> CollectionInfo | None:
        """The collection metadata stored in the schema."""
        return read_collection_info(self.schema)

    @property
    def rows(self) -> int:
        return sum(entry.rows for entry in self.files)

    def dataset_schema(self) -> pa.Schema:
        """The schema readers see: the file schema plus int64 partition keys."""
        keys = [pa.field(name, pa.int64()) for name in self.partition_by
                if name not in self.schema.names]
        return pa.schema([*self.schema, *keys], metadata=self.schema.metadata)

    def partitions(self) -> dict[Partition, tuple[FileEntry, ...]]:
        """The files of each partition."""
        out: dict[Partition, list[FileEntry]] = {}
        for entry in self.files:
            out.setdefault(entry.partition, []).append(entry)
        return {key: tuple(sorted(files, key=lambda e: e.path)) for key, files in out.items()}

    def files_of(self, partition: Partition) -> tuple[FileEntry, ...]:
        return tuple(sorted((e for e in self.files if e.partition == partition),
                            key=lambda e: e.path))

    def paths(self) -> set[str]:
        return {entry.path for entry in self.files}

    def to_json(self) -> bytes:
        return json.dumps({
            "format": "rasteret-dask-version", "log_format": LOG_FORMAT,
            "version": self.version, "operation": self.operation, "txn": self.txn,
            "timestamp": self.timestamp, "partition_by": list(self.partition_by),
            "rows": self.rows, "files": [entry.to_dict() for entry in self.files],
            "schema": _schema_to_text(self.schema),
        }, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, where: str = "manifest") -> Manifest:
        try:
            data = json.loads(raw)
            if data.get("log_format", 0) > LOG_FORMAT:
                raise ValueError(f"{where} was written by a newer rasteret-dask (log format "
                                 f"{data['log_format']}); upgrade to read it")
            return cls(
                version=int(data["version"]),
                files=tuple(FileEntry.from_dict(e) for e in data["files"]),
                schema=_schema_from_text(data["schema"]),
                partition_by=tuple(data["partition_by"]),
                operation=str(data["operation"]), txn=str(data["txn"]),
                timestamp=str(data["timestamp"]),
            )
        except (KeyError, TypeError, json.JSONDecodeError, pa.ArrowInvalid) as exc:
            raise ValueError(f"{where} is not a valid version manifest: {exc}") from exc


class VersionConflict(Exception):
    """Another writer committed the version this commit wanted to create."""

    def __init__(self, store: Store, version: int) -> None:
        super().__init__(f"version {version} of the index at {store.url} was committed by "
                         "another writer first")
        self.version = version


def list_versions(store: Store) -> list[int]:
    """Committed version numbers, ascending (a fresh listing)."""
    numbers = []
    for name in list_names(store, VERSIONS_DIR):
        match = _VERSION_FILE.match(name)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def read_manifest(store: Store, version: int) -> Manifest:
    """The manifest of ``version`` (``FileNotFoundError`` when it is not (or no longer) kept)."""
    rel = version_name(version)
    manifest = Manifest.from_json(read_bytes(store, rel), where=f"{store.url}/{rel}")
    if manifest.version != version:
        raise ValueError(f"{store.url}/{rel} holds version {manifest.version}")
    return manifest


def latest_manifest(store: Store, *, attempts: int = 5) -> Manifest | None:
    """The latest committed manifest, or None when the root has no version log.

    A manifest pruned between the listing and the read (many commits meanwhile) is retried
    with a new listing.
    """
    for attempt in range(attempts):
        versions = list_versions(store)
        if not versions:
            return None
        try:
            return read_manifest(store, versions[-1])
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def commit_manifest(store: Store, manifest: Manifest) -> None:
    """Create ``manifest``'s version exclusively; :class:`VersionConflict` if it exists."""
    try:
        put_if_absent(store, version_name(manifest.version), manifest.to_json())
    except FileExistsError as exc:
        raise VersionConflict(store, manifest.version) from exc


def prune_versions(store: Store, keep: int = KEEP_VERSIONS) -> list[int]:
    """Delete all but the newest ``keep`` manifests; returns the versions deleted."""
    versions = list_versions(store)
    old = versions[:-keep] if keep > 0 else versions
    delete(store, [version_name(v) for v in old])
    return old
