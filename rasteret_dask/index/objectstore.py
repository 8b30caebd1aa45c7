"""The few storage primitives an index needs, on any fsspec filesystem (local disk, S3, ...).

Every index read and write goes through a :class:`Store` (a filesystem and a root folder), so
no other module branches on the protocol. What each primitive promises:

- :func:`put_if_absent` creates an object only if it does not exist, atomically: on local disk a
  fsynced temporary file is hard-linked to its name (``os.link`` fails if the name exists); on
  S3 (s3fs) one conditional PUT (``If-None-Match: *``). On any other protocol it checks then
  writes, which is not safe against a concurrent writer (documented limit).
- :func:`put_atomic` replaces an object whole: a temporary file and ``os.replace`` on local
  disk, one PUT on object stores.
- :func:`new_file` streams a new object that appears under its name only when complete (a
  hidden temporary file renamed on local disk; a single or multipart upload on object stores,
  which is invisible until it completes).
- Listings never come from fsspec's listing caches (a store's filesystem has them turned
  off), so a reader sees what was committed and opens files other processes wrote.

A ``Store`` pickles as its URL and storage options: a Dask worker resolves its own filesystem
(credentials from explicit options or the ``rasteret_dask.storage_options`` config).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import posixpath
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from ..io.options import href_protocol, storage_options_for
from ..io.state import resolve

__all__ = [
    "Store",
    "StoredFile",
    "open_store",
    "put_if_absent",
    "put_atomic",
    "put_atomic_url",
    "new_file",
    "read_bytes",
    "exists",
    "list_names",
    "walk",
    "delete",
    "arrow_filesystem",
    "is_safe_for_concurrent_writers",
]


@dataclass(frozen=True, eq=False)
class Store:
    """An index root: a filesystem and a folder on it (``root`` has no protocol or end slash)."""

    url: str
    root: str
    fs: AbstractFileSystem
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    @property
    def is_s3(self) -> bool:
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        return "s3" in protocols and hasattr(self.fs, "_pipe_file")

    def path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` (a POSIX path relative to the root)."""
        return posixpath.join(self.root, rel) if rel else self.root

    def rel(self, path: str) -> str:
        """The inverse of :meth:`path`."""
        return posixpath.relpath(path, self.root)

    def child(self, rel: str) -> Store:
        """A store rooted at a sub-folder of this one."""
        url = self.url.rstrip("/") + "/" + rel
        return Store(url, self.path(rel), self.fs, self.storage_options)

    def __reduce__(self):
        # a local root travels absolute: a worker's working directory may differ
        return open_store, (self.root if self.is_local else self.url, dict(self.storage_options))

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


@dataclass(frozen=True)
class StoredFile:
    """One object under a root, as a fresh listing saw it."""

    rel: str
    size: int
    modified: float  # seconds since the epoch (UTC)


def open_store(url: str | os.PathLike, storage_options: Mapping[str, Any] | None = None) -> Store:
    """The store of ``url`` (a local path, ``file://``, ``s3://bucket/prefix``, any fsspec URL).

    ``storage_options`` (flat, or keyed by protocol) merge over the dask config
    ``rasteret_dask.storage_options`` for the URL's protocol.
    """
    text = os.fspath(url)
    if "://" not in text:
        text = os.path.abspath(os.path.expanduser(text))
    options = storage_options_for(text, storage_options)
    if href_protocol(text) not in ("file", "local"):
        # a listing cached by fsspec would hide other writers' files (and make reads of them
        # fail): every listing and every open asks the store
        options["use_listings_cache"] = False
    fs, path = resolve(text, options)
    return Store(os.fspath(url), path.rstrip("/") or path, fs, dict(storage_options or {}))


def _temp_name(path: str) -> str:
    head, name = posixpath.split(path)
    return posixpath.join(head, f".{name}.{uuid.uuid4().hex}.tmp")


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_local_temp(path: str) -> tuple[str, BinaryIO]:
    """A new hidden temporary file beside ``path``, its folder made if needed.

    A concurrent writer's cleanup may remove the folder between ``makedirs`` and ``open`` (it
    removes folders it left empty), hence the retries.
    """
    tmp = _temp_name(path)
    for attempt in range(10):
        os.makedirs(posixpath.dirname(path), exist_ok=True)
        try:
            return tmp, open(tmp, "wb")  # noqa: SIM115 - closed by the callers
        except FileNotFoundError:
            if attempt == 9:
                raise
    raise AssertionError("unreachable")


def _write_local_temp(path: str, data: bytes) -> str:
    tmp, f = _open_local_temp(path)
    with f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def put_if_absent(store: Store, rel: str, data: bytes) -> None:
    """Create ``rel`` with ``data`` unless it exists; raises ``FileExistsError`` if it does."""
    path = store.path(rel)
    if store.is_local:
        tmp = _write_local_temp(path, data)
        try:
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
        _fsync_dir(posixpath.dirname(path))
    elif store.is_s3:
        store.fs.pipe_file(path, data, mode="create")
    else:
        if store.fs.exists(path):
            raise FileExistsError(path)
        store.fs.pipe_file(path, data)


def put_atomic(store: Store, rel: str, data: bytes) -> None:
    """Write ``rel`` whole: readers see the old object or the new one, never a part."""
    path = store.path(rel)
    if store.is_local:
        tmp = _write_local_temp(path, data)
        os.replace(tmp, path)
        _fsync_dir(posixpath.dirname(path))
    else:
        store.fs.pipe_file(path, data)


def put_atomic_url(url: str | os.PathLike, data: bytes,
                   storage_options: Mapping[str, Any] | None = None) -> None:
    """:func:`put_atomic` of one object given by its own URL (reports, outputs)."""
    text = os.fspath(url)
    head, name = posixpath.split(text.rstrip("/"))
    put_atomic(open_store(head, storage_options), name, data)


@contextlib.contextmanager
def new_file(store: Store, rel: str) -> Iterator[BinaryIO]:
    """A writable file that appears as ``rel`` only once the block ends without an error."""
    path = store.path(rel)
    if store.is_local:
        tmp, handle = _open_local_temp(path)
        try:
            with handle as sink:
                yield sink
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return
    with store.fs.open(path, "wb") as sink:
        yield sink


def read_bytes(store: Store, rel: str) -> bytes:
    """The whole object ``rel`` (``FileNotFoundError`` when absent)."""
    return store.fs.cat_file(store.path(rel))


def exists(store: Store, rel: str = "") -> bool:
    """Whether ``rel`` exists now (no listing cache)."""
    path = store.path(rel)
    store.fs.invalidate_cache(path)
    return store.fs.exists(path)


def list_names(store: Store, rel: str) -> list[str]:
    """Names of the objects directly in folder ``rel``, freshly listed; ``[]`` when absent."""
    path = store.path(rel)
    store.fs.invalidate_cache(path)
    try:
        entries = store.fs.ls(path, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = [posixpath.basename(str(e).rstrip("/")) for e in entries]
    return [n for n in names if n and n != posixpath.basename(path)]


def _modified(info: Mapping[str, Any]) -> float:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
        if isinstance(value, int | float):
            return float(value)
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return float("inf")  # unknown age: never old enough to be removed as an orphan


def walk(store: Store) -> list[StoredFile]:
    """Every object under the root (hidden ones included), freshly listed."""
    store.fs.invalidate_cache()
    try:
        found = store.fs.find(store.root, detail=True, withdirs=False)
    except FileNotFoundError:
        return []
    files = []
    for path, info in found.items():
        if info.get("type") == "directory":
            continue
        rel = store.rel(str(path).rstrip("/"))
        if rel.startswith(".."):
            continue
        files.append(StoredFile(rel, int(info.get("size") or 0), _modified(info)))
    return files


def delete(store: Store, rels: Iterable[str]) -> None:
    """Remove objects (missing ones are fine); on local disk, folders left empty go too."""
    rels = sorted(set(rels))
    for rel in rels:
        with contextlib.suppress(FileNotFoundError):
            store.fs.rm_file(store.path(rel))
    if not store.is_local:
        return
    folders = sorted({posixpath.dirname(rel) for rel in rels if posixpath.dirname(rel)},
                     key=lambda p: -p.count("/"))
    for folder in folders:
        while folder:
            with contextlib.suppress(OSError):
                os.rmdir(store.path(folder))  # fails (kept) unless empty
            folder = posixpath.dirname(folder)


def arrow_filesystem(store: Store) -> Any:
    """The filesystem handed to ``pyarrow.dataset``: Arrow's own on local disk, else fsspec's
    (wrapped, so it pickles as its options and a worker opens its own)."""
    import pyarrow.fs as pafs

    if store.is_local:
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(store.fs))


def is_safe_for_concurrent_writers(store: Store) -> bool:
    """Whether :func:`put_if_absent` is atomic on this store (local disk and S3)."""
    return store.is_local or store.is_s3
