"""``export_chips``: training chips by the ``split`` and ``label`` columns into per-split Zarr
stores, written through dask one sharded region per batch of chips, resumable.

Each row with a split gives one chip centred on its AOI geometry (``geometry_column``, e.g. the
``aoi`` column of the enriched-Parquet walkthrough) or on its image, or, with ``mode="grid"``,
the chips tiling that window. Chips are read through ``Collection.get_xarray`` and stored as
``out/<split>.zarr`` with ``images`` (n, band, y, x) in the native dtype (one Zarr chunk per chip,
one shard per batch), ``labels``, ``ids``, ``times``, ``transforms``, ``windows`` and ``crs_epsg``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import dask.array as da
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
import xarray as xr

from .. import schema as S
from ..plan.geometry import reproject_geometries
from ..plan.grid import GridSpec, Window, pixel_coordinates
from ..read import band_records, read_bands
from ..runner import compute_streaming
from ._common import (
    WorkflowStore,
    as_collection,
    inset_box,
    memory_collection,
    pad_to_window,
    read_origin,
)

if TYPE_CHECKING:
    from dask.delayed import Delayed

    from ..collection import Collection

__all__ = ["export_chips", "ChipsReport"]


@dataclass(frozen=True)
class ChipsReport:
    """What an export did: chips per split, batches written / skipped, rows left out."""

    out: str
    splits: dict[str, int]
    chips_total: int
    batches_total: int
    batches_written: int
    batches_skipped: int
    rows_null_split: int
    rows_skipped: int
    chips_outside: int
    geometry_source: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the report."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Chip:
    row: int  # row of the filtered table
    id: str
    time: np.datetime64
    label: Any
    grid: GridSpec  # the record's grid (first band)
    window: Window  # chip window in the record's grid (may reach outside the image)


def _labels(table: pa.Table, column: str | None) -> tuple[list[Any], Any]:
    """Label values with nulls filled (-1, NaN or ""), and the fill used."""
    if column is None:
        return [None] * table.num_rows, None
    values = table[column].combine_chunks()
    kind = values.type
    fill: Any = -1 if pa.types.is_integer(kind) else (
        math.nan if pa.types.is_floating(kind) else "")
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        values = values.cast(pa.string())
    return values.fill_null(fill).to_pylist(), fill


def _windows(grid: GridSpec, shape: shapely.Geometry | None, chip: int, mode: str) -> list[Window]:
    """Chip windows of one record: centred on the geometry (or image), or tiling its window."""
    if mode == "center":
        if shape is None:
            return [Window((grid.height - chip) // 2, (grid.width - chip) // 2, chip, chip)]
        centre = shapely.centroid(shape)
        col, row = pixel_coordinates(np.array(centre.x), np.array(centre.y), grid.transform)
        # the pixel holding the centroid (a centroid on a pixel edge after reprojection noise
        # counts as on the edge)
        r, c = math.floor(float(row) + 1e-6), math.floor(float(col) + 1e-6)
        return [Window(r - chip // 2, c - chip // 2, chip, chip)]
    area = grid.full_window if shape is None else grid.window_for_geometry(shape, clip=False)
    if area is None:
        return []
    return [Window(area.row_off + i * chip, area.col_off + j * chip, chip, chip)
            for i in range(math.ceil(area.height / chip))
            for j in range(math.ceil(area.width / chip))]


def _readable(table: pa.Table, bands: list[str]) -> np.ndarray:
    """Rows with an href and metadata with an EPSG code for every band (the others are
    skipped)."""
    ok = np.ones(table.num_rows, dtype=bool)
    assets = table[S.ASSETS].combine_chunks()
    for band in bands:
        column = table[S.metadata_column(band)]
        for valid in (column, pc.struct_field(column, "crs_epsg"),
                      assets.field(band).field("href")):
            ok &= pc.is_valid(valid).to_numpy(zero_copy_only=False)
    return ok


def _plan(table: pa.Table, band: str, chip: int, mode: str, geometry_column: str | None,
          geometry_crs: Any, label_column: str | None, split_column: str
          ) -> tuple[dict[str, list[_Chip]], int]:
    """Chips per split (sorted by time, id) of rows readable in every band, placed on the grid
    of ``band`` (the first, as the index names it), and the chips outside their images."""
    labels, _ = _labels(table, label_column)
    splits = table[split_column].to_pylist()
    footprints = shapely.from_wkb(table[S.GEOMETRY].to_numpy(zero_copy_only=False))
    shapes = (shapely.from_wkb(table[geometry_column].to_numpy(zero_copy_only=False))
              if geometry_column else [None] * table.num_rows)
    chips: dict[str, list[_Chip]] = {}
    outside = 0
    for k, record in enumerate(band_records(table, band)):  # every row is readable
        grid = GridSpec.from_metadata(record.metadata)
        shape = shapes[k]
        if shape is not None:
            shape = reproject_geometries([shape], geometry_crs, grid.crs_epsg)[0]
        for window in _windows(grid, shape, chip, mode):
            inner = window.intersection(grid.full_window)
            lonlat = None if inner.is_empty else reproject_geometries(
                [inset_box(grid, inner)], grid.crs_epsg, 4326)[0]
            if lonlat is None or not shapely.intersects(footprints[k], lonlat):
                outside += 1
                continue
            split = str(splits[k])
            chips.setdefault(split, []).append(_Chip(
                k, record.id, record.datetime, labels[k], grid, window))
    for items in chips.values():
        items.sort(key=lambda c: (c.time, c.id, c.window.row_off, c.window.col_off))
    return chips, outside


def _template(chips: list[_Chip], bands: list[str], chip: int, batch: int, dtype: np.dtype,
              fill: Any, label_fill: Any) -> tuple[xr.Dataset, dict]:
    n, nb = len(chips), len(bands)
    images = da.zeros((n, nb, chip, chip), dtype=dtype, chunks=(batch, nb, chip, chip))
    data = {
        "images": xr.DataArray(images, dims=("n", "band", "y", "x"),
                               attrs={"nodata": fill, "chip_size": chip}),
        "ids": ("n", np.array([c.id for c in chips], dtype=object)),
        "times": ("n", np.array([c.time for c in chips], dtype="datetime64[ns]")),
        "transforms": (("n", "affine"), np.array(
            [list(c.grid.window_transform(c.window))[:6] for c in chips], dtype=np.float64
        ).reshape(n, 6)),
        "windows": (("n", "window"), np.array(
            [[c.window.row_off, c.window.col_off, c.window.height, c.window.width]
             for c in chips], dtype=np.int64).reshape(n, 4)),
        "crs_epsg": ("n", np.array([c.grid.crs_epsg for c in chips], dtype=np.int32)),
    }
    if label_fill is not None:
        values = [c.label for c in chips]
        data["labels"] = xr.DataArray(np.array(values, dtype=object if isinstance(
            label_fill, str) else None), dims="n", attrs={"null_fill": label_fill})
    coords = {"band": ("band", np.array(bands, dtype=object))}
    encoding = {"images": {"chunks": (1, nb, chip, chip), "shards": (batch, nb, chip, chip)}}
    return xr.Dataset(data, coords=coords), encoding


def _read_chip(collection: Collection, table: pa.Table, c: _Chip, bands: list[str],
               dtype: np.dtype, fill: Any, storage_options: dict | None) -> da.Array:
    """A lazy (1, band, chip, chip) array: the chip's pixels inside the image, ``fill`` outside."""
    inner = c.window.intersection(c.grid.full_window)
    one = memory_collection(collection, table.slice(c.row, 1))
    ds = one.get_xarray(inset_box(c.grid, inner), bands, geometry_crs=c.grid.crs_epsg,
                        storage_options=storage_options)
    stack = da.stack([ds[b].data[0].astype(dtype) for b in bands])
    return pad_to_window(stack, read_origin(ds, c.grid), c.window, fill)[np.newaxis]


def _safe_split(name: str) -> str:
    if not name or name.startswith(".") or any(ch in name for ch in "/\\:"):
        raise ValueError(f"split {name!r} cannot name a store (out/<split>.zarr)")
    return name


def export_chips(
    collection_or_path: Collection | str | os.PathLike,
    *,
    bands: Sequence[str],
    out: str | os.PathLike,
    chip_size: int = 256,
    geometry_column: str | None = "aoi",
    geometry_crs: Any = 4326,
    mode: Literal["center", "grid"] = "center",
    split_column: str = "split",
    label_column: str | None = "label",
    batch_size: int = 32,
    client: Any = None,
    storage_options: dict | None = None,
    out_storage_options: dict | None = None,
    in_flight: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    **filters: Any,
) -> ChipsReport:
    """Export ``chip_size`` chips of ``bands`` into one Zarr store per split, ``out/<split>.zarr``.

    Each record gives one chip centred on its AOI (``mode="center"``) or a grid of chips over it
    (``"grid"``); chips are written in batches, each batch one unit of work marked done when
    written, so a rerun skips finished batches.

    Parameters
    ----------
    collection_or_path : Collection, str or os.PathLike
        The index, or its path/URL (opened with ``load``).
    bands : sequence of str
        Bands to export (enriched).
    out : str or os.PathLike
        Folder or fsspec URL that receives ``<split>.zarr`` stores.
    chip_size : int, default 256
        Pixels per chip side.
    geometry_column : str or None, default "aoi"
        WKB column of AOIs to place chips on; None uses each image's centre.
    geometry_crs : CRS-like, default 4326
        CRS of ``geometry_column``.
    mode : {"center", "grid"}, default "center"
        One chip per AOI centre, or every chip of a grid over the AOI.
    split_column : str, default "split"
        Column naming each record's split; rows with a null split are skipped.
    label_column : str or None, default "label"
        Column of labels stored with the chips; None for none.
    batch_size : int, default 32
        Chips per unit of work and Zarr shard.
    client : distributed.Client, optional
        Where to run; default the active client, else local threads.
    storage_options, out_storage_options : dict, optional
        fsspec options for reading the COGs and for writing ``out``.
    in_flight : int, optional
        Batches computed at once (default: twice the cluster's threads).
    overwrite : bool, default False
        Replace existing split stores written with other arguments.
    progress : bool, default False
        Show a progress bar of the units written (``tqdm``; a widget in a notebook).
    **filters
        Passed to ``Collection.subset``.

    Returns
    -------
    ChipsReport
        Chips per split, batches written and skipped, rows left out and why, time.

    Raises
    ------
    ValueError
        For an unknown ``mode``, a ``chip_size`` or ``batch_size`` below 1, unknown or
        unenriched bands, missing split/label/geometry columns, or stores written with other
        arguments.
    """
    started = time.perf_counter()
    bands = [bands] if isinstance(bands, str) else list(bands)
    if mode not in ("center", "grid"):
        raise ValueError(f"mode must be 'center' or 'grid', not {mode!r}")
    if chip_size < 1 or batch_size < 1:
        raise ValueError("chip_size and batch_size must be >= 1")
    collection = as_collection(collection_or_path)
    names = collection.schema.names
    stored = read_bands(collection, bands).stored_bands  # as the index names them
    for column in (split_column, label_column):
        if column is not None and column not in names:
            raise ValueError(f"column {column!r} not in the collection ({names})")
    source = geometry_column if geometry_column in names else None
    table = (collection.subset(**filters) if filters else collection).to_table()
    null_split = int(table[split_column].null_count)
    table = table.filter(pc.is_valid(table[split_column]))
    readable = _readable(table, stored)
    unreadable = int((~readable).sum())
    table = table.filter(pa.array(readable))
    plan, outside = _plan(table, stored[0], chip_size, mode, source, geometry_crs, label_column,
                          split_column)
    firsts = [records[0].metadata for records in (band_records(table.slice(0, 1), b)
                                                  for b in stored) if records]
    dtype = np.result_type(*[md.dtype for md in firsts] or [np.uint8])
    nodata = firsts[0].nodata if firsts else None
    fill = 0 if nodata is None else np.array(nodata).astype(dtype).item()
    _, label_fill = _labels(table.slice(0, 0), label_column)
    params = {"bands": bands, "chip_size": chip_size, "mode": mode, "geometry_column": source,
              "geometry_crs": str(geometry_crs), "split_column": split_column,
              "label_column": label_column, "batch_size": batch_size, "filters": filters}
    root = os.fspath(out).rstrip("/")
    stores, jobs, skipped = {}, [], 0
    for split, chips in sorted(plan.items()):
        key = json.dumps([[c.id, c.window.row_off, c.window.col_off] for c in chips])
        layout = {"split": split, "n": len(chips), "dtype": dtype.name, "fill": repr(fill),
                  "digest": hashlib.sha256(key.encode()).hexdigest()}
        store = WorkflowStore(f"{root}/{_safe_split(split)}.zarr", "export_chips", params,
                              layout, out_storage_options)
        template, encoding = _template(chips, bands, chip_size, batch_size, dtype, fill,
                                       label_fill)
        store.prepare(template, encoding, overwrite=overwrite)
        stores[split] = store
        done = store.done()
        for b in range(math.ceil(len(chips) / batch_size)):
            name = f"batch-{b:05d}"
            if name in done:
                skipped += 1
            else:
                jobs.append((split, name, b * batch_size, min((b + 1) * batch_size, len(chips))))

    def unit(split: str, name: str, start: int, stop: int) -> Delayed:
        parts = [_read_chip(collection, table, c, bands, dtype, fill, storage_options)
                 for c in plan[split][start:stop]]
        images = da.concatenate(parts).rechunk((stop - start, len(bands), chip_size, chip_size))
        dataset = xr.Dataset({"images": (("n", "band", "y", "x"), images)})
        write = stores[split].region_write(dataset, {"n": slice(start, stop)})
        return stores[split].marker(name, {"chips": [start, stop]}, write)

    def pending() -> Iterator[Delayed]:
        for job in jobs:
            yield unit(*job)

    written = compute_streaming(pending(), client=client, in_flight=in_flight,
                                progress=progress, total=len(jobs), description="chip batches")
    return ChipsReport(
        out=root, splits={s: len(c) for s, c in sorted(plan.items())},
        chips_total=sum(len(c) for c in plan.values()), batches_total=len(jobs) + skipped,
        batches_written=written, batches_skipped=skipped, rows_null_split=null_split,
        rows_skipped=unreadable, chips_outside=outside, geometry_source=source or "footprint",
        seconds=round(time.perf_counter() - started, 3))
