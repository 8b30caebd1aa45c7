"""Shared machinery of the workflows: output stores with parameters and per-unit markers, the
run loop (a distributed client or local threads), and small grid helpers.

A workflow store is a Zarr v3 group whose attributes record the workflow, its parameters and
the layout they produced. Its ``_done/`` child is an (empty) Zarr group written once the
template is complete; each finished unit of work (an AOI tile, a batch of chips) adds an empty
group ``_done/<key>/`` *after* its region write succeeded. A rerun skips the units whose marker
exists, so deleting ``_done/<key>`` makes a rerun redo exactly that unit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import fsspec
import pyarrow.dataset as pads
import shapely
from affine import Affine

from ..plan.grid import GridSpec, Window

if TYPE_CHECKING:
    import xarray as xr
    from dask.delayed import Delayed

    from ..collection import Collection

__all__ = [
    "as_collection",
    "memory_collection",
    "WorkflowStore",
    "mark_done",
    "inset_box",
    "jsonable",
    "read_origin",
    "pad_to_window",
]

ATTR_WORKFLOW = "rasteret_workflow"
ATTR_PARAMS = "rasteret_params"
ATTR_LAYOUT = "rasteret_layout"
DONE = "_done"


def as_collection(collection_or_path: Collection | str | os.PathLike) -> Collection:
    """The collection itself, or the index at a path opened with ``load``."""
    from ..collection import Collection, load

    if isinstance(collection_or_path, Collection):
        return collection_or_path
    return load(collection_or_path)


def memory_collection(collection: Collection, table: Any) -> Collection:
    """An in-memory Collection over ``table`` (already filtered rows), same collection info."""
    from ..collection import Collection

    return Collection(pads.dataset(table), collection.info)


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples -> lists, datetimes -> ISO strings)."""
    return json.loads(json.dumps(value, default=_default, sort_keys=True))


def _default(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def inset_box(grid: GridSpec, window: Window, inset: float = 0.25) -> shapely.Polygon:
    """The window's box in the grid's CRS shrunk by ``inset`` pixel on every side: its pixel
    window (floor/ceil) and burned pixels (centres inside) are exactly ``window``."""
    t: Affine = grid.transform
    cols = (window.col_off + inset, window.col_stop - inset)
    rows = (window.row_off + inset, window.row_stop - inset)
    xs = [t.c + t.a * c + t.b * r for c in cols for r in rows]
    ys = [t.f + t.d * c + t.e * r for c in cols for r in rows]
    return shapely.box(min(xs), min(ys), max(xs), max(ys))


def read_origin(ds: Any, grid: GridSpec) -> tuple[int, int]:
    """(row, col) on ``grid`` of the first pixel of a Dataset read on that grid."""
    t = grid.transform
    col = round((float(ds["x"].values[0]) - t.c) / t.a - 0.5)
    row = round((float(ds["y"].values[0]) - t.f) / t.e - 0.5)
    return row, col


def pad_to_window(array: Any, origin: tuple[int, int], window: Window, fill: Any) -> Any:
    """Pad a dask array whose last two axes start at ``origin`` (row, col) to ``window``."""
    row, col = origin
    height, width = array.shape[-2:]
    pad = [(0, 0)] * (array.ndim - 2) + [(row - window.row_off, window.row_stop - row - height),
                                         (col - window.col_off, window.col_stop - col - width)]
    return da.pad(array, pad, mode="constant", constant_values=fill)


def _group_json(attributes: dict) -> bytes:
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attributes},
                      indent=2).encode()


def mark_done(url: str, key: str, storage_options: dict | None, info: dict, *_after: Any) -> str:
    """Write the marker of unit ``key`` (an empty Zarr group); a dask task run after the
    unit's region write (passed in ``_after``), so a marker always means a finished write."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    folder = f"{root.rstrip('/')}/{DONE}/{key}"
    fs.makedirs(folder, exist_ok=True)
    payload = {**info, "key": key, "finished": dt.datetime.now(dt.UTC).isoformat()}
    fs.pipe_file(f"{folder}/zarr.json", _group_json(payload))
    return key


class WorkflowStore:
    """One output Zarr store: its state, parameter check, template write and markers."""

    def __init__(self, url: str | os.PathLike, workflow: str, params: dict, layout: dict,
                 storage_options: dict | None = None) -> None:
        self.url = os.fspath(url)
        self.workflow = workflow
        self.params = jsonable(params)
        self.layout = jsonable(layout)
        self.storage_options = storage_options
        self.fs, root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self.root = root.rstrip("/")

    @property
    def attrs(self) -> dict[str, str]:
        """The attributes that identify the run (workflow, parameters, layout) as JSON text."""
        return {ATTR_WORKFLOW: self.workflow,
                ATTR_PARAMS: json.dumps(self.params, sort_keys=True),
                ATTR_LAYOUT: json.dumps(self.layout, sort_keys=True)}

    def _stored_attrs(self) -> dict | None:
        path = f"{self.root}/zarr.json"
        if not self.fs.exists(path):
            return None
        return json.loads(self.fs.cat_file(path)).get("attributes", {})

    def prepare(self, template: xr.Dataset, encoding: dict, *, overwrite: bool = False) -> bool:
        """Write the template unless a matching complete store exists; True when written.

        Raises ``ValueError`` when the store exists with other parameters or layout, or when
        ``url`` holds something that is not this workflow's store (unless ``overwrite``).
        """
        self.fs.invalidate_cache()
        exists = self.fs.exists(self.root)
        if exists and overwrite:
            self.fs.rm(self.root, recursive=True)
            exists = False
        stored = self._stored_attrs() if exists else None
        if exists and stored is None and self.fs.ls(self.root):
            raise ValueError(f"{self.url} exists and is not a Zarr store; choose another output "
                             "or pass overwrite=True")
        if stored is not None:
            if stored.get(ATTR_WORKFLOW) != self.workflow:
                raise ValueError(f"{self.url} is not a {self.workflow} store (attributes: "
                                 f"{sorted(stored)}); choose another output or overwrite=True")
            if self.fs.exists(f"{self.root}/{DONE}/zarr.json"):
                self._check(json.loads(stored[ATTR_PARAMS]), self.params, "parameters")
                self._check(json.loads(stored[ATTR_LAYOUT]), self.layout,
                            "layout (the records changed since)")
                return False
        template = template.assign_attrs(self.attrs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            template.to_zarr(self.url, mode="w", compute=False, encoding=encoding,
                             consolidated=True, storage_options=self.storage_options)
        self.fs.makedirs(f"{self.root}/{DONE}", exist_ok=True)
        about = {"about": "one empty group per finished unit, written after its region"}
        self.fs.pipe_file(f"{self.root}/{DONE}/zarr.json", _group_json(about))
        return True

    def _check(self, stored: dict, wanted: dict, what: str) -> None:
        keys = sorted(set(stored) | set(wanted))
        diff = [f"{k}: {stored.get(k)!r} (store) != {wanted.get(k)!r} (now)"
                for k in keys if stored.get(k) != wanted.get(k)]
        if diff:
            raise ValueError(f"{self.url} was written by {self.workflow} with different {what}: "
                             + "; ".join(diff) + ". Use another output or overwrite=True")

    def done(self) -> set[str]:
        """Keys of the finished units (those with a marker)."""
        self.fs.invalidate_cache()
        pattern = f"{self.root}/{DONE}/*/zarr.json"
        return {path.rstrip("/").split("/")[-2] for path in self.fs.glob(pattern)}

    def marker(self, key: str, info: dict, after: Delayed) -> Delayed:
        """A delayed marker write for unit ``key`` that runs after ``after`` succeeded."""
        return dask.delayed(mark_done, pure=False)(
            self.url, key, self.storage_options, jsonable(info), after)

    def region_write(self, dataset: xr.Dataset, region: dict) -> Delayed:
        """The delayed ``to_zarr(region=...)`` write of one unit's variables."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            return dataset.to_zarr(self.url, region=region, compute=False,
                                   storage_options=self.storage_options)

