"""The user's registered local indexes: a JSON file under the user's configuration directory.

The file is ``<config dir>/datasets.local.json``, where the configuration directory is
``$RASTERET_DASK_CONFIG_DIR`` when set, else ``$XDG_CONFIG_HOME/rasteret_dask``, else
``~/.config/rasteret_dask``. It holds a JSON list of entries ``{"id", "index_uri", "name",
"description"}`` and never storage options or credentials: an index's credentials come from
the ``rasteret_dask.storage_options`` dask config or the call. Writes replace the file
atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .descriptor import DatasetDescriptor

__all__ = ["CONFIG_DIR_ENV", "LOCAL_FILE", "config_dir", "local_registry_path",
           "read_local_descriptors", "write_local_descriptors", "local_descriptor"]

CONFIG_DIR_ENV = "RASTERET_DASK_CONFIG_DIR"
LOCAL_FILE = "datasets.local.json"
_FIELDS = ("id", "index_uri", "name", "description")


def config_dir() -> Path:
    """The user's configuration directory for this package (not created here)."""
    explicit = os.environ.get(CONFIG_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "rasteret_dask"


def local_registry_path() -> Path:
    """Where registered local indexes are kept."""
    return config_dir() / LOCAL_FILE


def local_descriptor(dataset_id: str, index_uri: str, *, name: str = "",
                     description: str = "") -> DatasetDescriptor:
    """The descriptor of a registered local index (its ``index_uri`` is what ``load`` opens)."""
    return DatasetDescriptor(id=dataset_id, index_uri=index_uri, name=name,
                             description=description)


def read_local_descriptors(path: Path | None = None) -> list[DatasetDescriptor]:
    """The descriptors in the local registry file (none when it does not exist).

    Raises
    ------
    ValueError
        When the file is not a JSON list of entries with an ``id`` and an ``index_uri``
        (the message names the file and the entry).
    """
    path = path or local_registry_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the local dataset registry {path} is not valid JSON: {exc}; fix or "
                         "remove it") from exc
    if not isinstance(entries, list):
        raise ValueError(f"the local dataset registry {path} must hold a JSON list of "
                         "entries")
    out = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"id", "index_uri"} <= set(entry):
            raise ValueError(f"entry {number} of the local dataset registry {path} needs an "
                             f"'id' and an 'index_uri', got {entry!r}")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise ValueError(f"entry {entry['id']!r} of the local dataset registry {path} has "
                             f"unknown fields {unknown} (known: {list(_FIELDS)})")
        try:
            out.append(local_descriptor(entry["id"], entry["index_uri"],
                                        name=entry.get("name", ""),
                                        description=entry.get("description", "")))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"entry {entry['id']!r} of the local dataset registry {path}: "
                             f"{exc}") from exc
    return out


def write_local_descriptors(descriptors: Sequence[DatasetDescriptor],
                            path: Path | None = None) -> Path:
    """Replace the local registry file with ``descriptors`` (sorted by id), atomically."""
    path = path or local_registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{name: getattr(d, name) for name in _FIELDS}
               for d in sorted(descriptors, key=lambda d: d.id)]
    handle, temporary = tempfile.mkstemp(prefix=".datasets-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(entries, out, indent=2)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
