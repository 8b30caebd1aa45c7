"""``composite``: monthly median composites (and NDVI) over an AOI grid, written to Zarr tile by
tile through dask, resumable.

The AOI is cut into square tiles of ``tile_size`` pixels on the records' own pixel grid. The
store's template (metadata, coordinates, CRS) is written first; then each tile is read through
``Collection.get_xarray``, reduced to per-month nan-medians, written with
``to_zarr(region=...)`` and marked finished, as its own unit of work. A rerun with the same
arguments skips finished tiles; other arguments raise.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import pyproj
import shapely
import xarray as xr

from .. import schema as S
from ..plan.grid import GridSpec, Window, crs_name
from ..plan.mask import geometry_mask
from ..read import query_geometries, select, spatial_ref
from ..runner import compute_streaming
from ._common import WorkflowStore, as_collection, memory_collection
from ._tiles import NAN, CompositeSetup, nan_tile, ndvi_block, tile_arrays

if TYPE_CHECKING:
    from dask.delayed import Delayed

    from ..collection import Collection

__all__ = ["composite", "CompositeReport"]


@dataclass(frozen=True)
class CompositeReport:
    """What a composite run did: tiles total / written / skipped (already finished)."""

    out: str
    tiles_total: int
    tiles_written: int
    tiles_skipped: int
    tiles_empty: int
    months: tuple[str, ...]
    variables: tuple[str, ...]
    shape: tuple[int, int]
    crs_epsg: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the report."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


def _setup(collection: Collection, aoi: Any, aoi_crs: Any, bands: list[str],
           date_range: Sequence[Any] | None, all_touched: bool, storage_options: dict | None,
           filters: dict) -> tuple[CompositeSetup, shapely.Geometry, pyproj.CRS]:
    """Select the records, union their grids and snap the AOI to them (no COG is read)."""
    shapes, src = query_geometries(aoi, aoi_crs)
    shape = shapely.union_all(shapes)
    if date_range is not None:
        filters = {"date_range": date_range, **filters}
    (selection,) = select(collection, shape, bands, geometry_crs=src, whole_rows=True,
                          **filters)
    if selection.is_empty:
        raise ValueError("no enriched record intersects the AOI (after the date range and filters)")
    stored = selection.source.bands  # requested band -> band as the index names it
    records = selection.records
    crs = selection.crs_epsg
    if crs is None:
        raise ValueError(f"the composite writes a grid of an EPSG CRS; the records are in a "
                         f"custom CRS ({crs_name(selection.crs)}, e.g. {records[0].label})")
    rotated = next((r for r in records if not r.metadata.is_axis_aligned), None)
    if rotated is not None:
        raise ValueError(f"{rotated.label}: its transform {tuple(rotated.metadata.transform)[:6]}"
                         " is rotated or sheared; the composite writes an axis-aligned grid")
    union, offsets = selection.union()
    native = selection.geometry_in(crs)
    window = union.window_for_geometry(native, all_touched=all_touched, clip=False)
    if window is None:
        raise ValueError("the AOI covers no pixel of the records' grid")
    windows = {}
    for band in bands:
        for r in selection.records_by_band[stored[band]]:
            row, col = offsets[(stored[band], r.id)]
            windows[(band, r.id)] = Window(row - window.row_off, col - window.col_off,
                                           *r.metadata.shape)
    months = sorted({r.datetime.astype("datetime64[M]") for r in records})
    ids = {r.id for r in records}
    table = selection.table
    footprints = shapely.from_wkb(table[S.GEOMETRY].to_numpy(zero_copy_only=False))
    footprint_of = {rid: g for rid, g in zip(table[S.ID].to_pylist(), footprints, strict=True)
                    if rid in ids}
    setup = CompositeSetup(
        collection=memory_collection(collection, table), bands=tuple(bands), epsg=crs,
        grid=union.sub(window), aoi=native, months=tuple(months),
        month_of={r.id: months.index(r.datetime.astype("datetime64[M]")) for r in records},
        windows=windows, footprints=footprint_of, all_touched=all_touched,
        storage_options=storage_options)
    return setup, shape, src


def _template(setup: CompositeSetup, variables: list[str], tile_size: int
              ) -> tuple[xr.Dataset, dict]:
    grid, n = setup.grid, len(setup.months)
    x, y = grid.coords()
    chunks = (1, min(tile_size, grid.height), min(tile_size, grid.width))
    data = {}
    for name in variables:
        what = "NDVI of the monthly medians" if name == "ndvi" else f"monthly median of {name}"
        data[name] = xr.DataArray(
            da.full((n, grid.height, grid.width), NAN, dtype=np.float32, chunks=chunks),
            dims=("month", "y", "x"), attrs={"grid_mapping": "spatial_ref", "long_name": what})
    months = np.array(setup.months, dtype="datetime64[M]").astype("datetime64[ns]")
    coords = {"month": ("month", months), "y": ("y", y), "x": ("x", x),
              "spatial_ref": spatial_ref(setup.epsg, grid.transform)}
    encoding = {name: {"chunks": chunks, "_FillValue": NAN} for name in variables}
    return xr.Dataset(data, coords=coords), encoding


def _tiles(grid: GridSpec, tile_size: int) -> dict[str, Window]:
    tiles = {}
    for i in range(math.ceil(grid.height / tile_size)):
        for j in range(math.ceil(grid.width / tile_size)):
            r, c = i * tile_size, j * tile_size
            tiles[f"tile-{i:04d}-{j:04d}"] = Window(
                r, c, min(tile_size, grid.height - r), min(tile_size, grid.width - c))
    return tiles


def composite(
    collection_or_path: Collection | str | os.PathLike,
    *,
    aoi: Any,
    bands: Sequence[str],
    out: str | os.PathLike,
    tile_size: int = 512,
    aoi_crs: Any = 4326,
    date_range: Sequence[Any] | None = None,
    red: str | None = "B04",
    nir: str | None = "B08",
    ndvi: bool = True,
    all_touched: bool = False,
    client: Any = None,
    storage_options: dict | None = None,
    out_storage_options: dict | None = None,
    in_flight: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    **filters: Any,
) -> CompositeReport:
    """Monthly nan-median composite of ``bands`` (+ ``ndvi``) over ``aoi`` into Zarr ``out``.

    The AOI's pixel window on the records' grid is cut into ``tile_size`` tiles; each tile is
    one unit of work (read, median per calendar month, write its Zarr region, mark it done), so
    a rerun with the same arguments skips finished tiles and a killed worker loses nothing.

    Parameters
    ----------
    collection_or_path : Collection, str or os.PathLike
        The index, or its path/URL (opened with ``load``).
    aoi : geometry
        Anything ``get_xarray`` accepts as one geometry (shapely, WKT, GeoJSON, bbox tuple).
    bands : sequence of str
        Bands to composite (enriched, one CRS among the records).
    out : str or os.PathLike
        The Zarr store to write (a path or an fsspec URL).
    tile_size : int, default 512
        Pixels per side of a unit of work (and of the Zarr chunks).
    aoi_crs : CRS-like, default 4326
        CRS of ``aoi``'s coordinates (anything pyproj accepts).
    date_range : (start, end), optional
        Only records in this range (ISO dates or datetimes, both included).
    red, nir : str or None, default "B04", "B08"
        Bands for the ``ndvi`` variable.
    ndvi : bool, default True
        Write ``ndvi`` when both ``red`` and ``nir`` are among ``bands``.
    all_touched : bool, default False
        Keep every pixel the AOI touches, not only those whose centre it holds.
    client : distributed.Client, optional
        Where to run; default the active client, else local threads.
    storage_options : dict, optional
        fsspec options for reading the COGs.
    out_storage_options : dict, optional
        fsspec options for writing ``out``.
    in_flight : int, optional
        Tiles computed at once (default: twice the cluster's threads).
    overwrite : bool, default False
        Replace an existing store; without it a store written with other arguments raises.
    progress : bool, default False
        Show a progress bar of the units written (``tqdm``; a widget in a notebook).
    **filters
        Passed to ``Collection.subset`` (e.g. ``cloud_cover_lt=30``).

    Returns
    -------
    CompositeReport
        Tiles total, written, skipped and empty, months, variables, shape, CRS and time.

    Raises
    ------
    ValueError
        For a ``tile_size`` below 1, unknown or unenriched bands, records in several CRSs, an
        AOI that meets no record, or an existing store written with other arguments.
    """
    started = time.perf_counter()
    bands = [bands] if isinstance(bands, str) else list(bands)
    if tile_size < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    collection = as_collection(collection_or_path)
    setup, shape, src = _setup(collection, aoi, aoi_crs, bands, date_range, all_touched,
                               storage_options, filters)
    with_ndvi = bool(ndvi and red in bands and nir in bands)
    variables = bands + (["ndvi"] if with_ndvi else [])
    params = {
        "bands": bands, "aoi": shapely.to_wkt(shape, rounding_precision=-1),
        "aoi_crs": src.to_string(), "tile_size": tile_size,
        "date_range": None if date_range is None else [str(v) for v in date_range],
        "red": red, "nir": nir, "ndvi": with_ndvi, "all_touched": all_touched,
        "filters": filters,
    }
    grid = setup.grid
    months = [str(m) for m in setup.months]
    layout = {"crs_epsg": setup.epsg, "transform": list(grid.transform)[:6],
              "width": grid.width, "height": grid.height, "months": months,
              "variables": variables}
    store = WorkflowStore(out, "composite", params, layout, out_storage_options)
    template, encoding = _template(setup, variables, tile_size)
    store.prepare(template, encoding, overwrite=overwrite)
    tiles = _tiles(grid, tile_size)
    finished = store.done() & set(tiles)
    empty = [0]

    def unit(key: str) -> Delayed:
        tile = tiles[key]
        outside = geometry_mask([setup.aoi], tile.shape, grid.window_transform(tile),
                                all_touched=all_touched)
        arrays = None if outside.all() else tile_arrays(setup, tile, outside)
        if arrays is None:
            empty[0] += 1
            arrays = {band: nan_tile(len(months), tile) for band in bands}
        if with_ndvi:
            arrays["ndvi"] = da.map_blocks(ndvi_block, arrays[red], arrays[nir],
                                           dtype=np.float32)
        dataset = xr.Dataset({k: (("month", "y", "x"), v) for k, v in arrays.items()})
        region = {"y": slice(tile.row_off, tile.row_stop), "x": slice(tile.col_off, tile.col_stop)}
        write = store.region_write(dataset, region)
        return store.marker(key, {"window": [tile.row_off, tile.col_off, tile.height,
                                             tile.width]}, write)

    def pending() -> Iterator[Delayed]:
        for key in tiles:
            if key not in finished:
                yield unit(key)

    written = compute_streaming(pending(), client=client, in_flight=in_flight,
                                progress=progress, total=len(tiles) - len(finished), description="composite tiles")
    return CompositeReport(
        out=os.fspath(out), tiles_total=len(tiles), tiles_written=written,
        tiles_skipped=len(finished), tiles_empty=empty[0], months=tuple(months),
        variables=tuple(variables), shape=(grid.height, grid.width), crs_epsg=setup.epsg,
        seconds=round(time.perf_counter() - started, 3))
