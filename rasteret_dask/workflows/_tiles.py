"""Per-tile graph pieces of the composite: block functions (monthly nan-median, NDVI) and the
lazy (month, y, x) arrays of one AOI tile, read through ``Collection.get_xarray``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import shapely

from ..plan.geometry import reproject_geometries
from ..plan.grid import GridSpec, Window
from ._common import inset_box, pad_to_window, read_origin

__all__ = ["CompositeSetup", "monthly_median", "ndvi_block", "tile_arrays", "nan_tile"]

NAN = np.float32(np.nan)


@dataclass(frozen=True)
class CompositeSetup:
    """Everything planned once for the whole AOI (driver side, never shipped to workers)."""

    collection: Any  # in-memory Collection of the filtered records
    bands: tuple[str, ...]
    epsg: int
    grid: GridSpec  # the AOI grid (output), snapped to the records' pixel grid
    aoi: shapely.Geometry  # in the records' CRS
    months: tuple[np.datetime64, ...]
    month_of: dict[str, int]  # record id -> month index
    windows: dict[tuple[str, str], Window]  # (band, record id) -> image window in grid pixels
    footprints: dict[str, shapely.Geometry]  # record id -> footprint (EPSG:4326)
    all_touched: bool
    storage_options: dict | None


def monthly_median(block: np.ndarray, *, month_of: np.ndarray, cover: np.ndarray,
                   nodata: Any, n_months: int, block_info: dict | None = None) -> np.ndarray:
    """(time, y, x) native pixels -> (month, y, x) float32 nan-medians; pixels outside a
    record's image (``cover`` rows/cols per time) and nodata pixels are ignored."""
    (y0, y1), (x0, x1) = block_info[0]["array-location"][1:]
    rows, cols = np.arange(y0, y1), np.arange(x0, x1)
    in_rows = (rows[None, :] >= cover[:, 0, None]) & (rows[None, :] < cover[:, 1, None])
    in_cols = (cols[None, :] >= cover[:, 2, None]) & (cols[None, :] < cover[:, 3, None])
    valid = in_rows[:, :, None] & in_cols[:, None, :]
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        valid &= block != np.array(nodata).astype(block.dtype)
    values = block.astype(np.float32)
    valid &= ~np.isnan(values)
    values[~valid] = np.nan
    out = np.full((n_months, y1 - y0, x1 - x0), np.nan, dtype=np.float32)
    for month in np.unique(month_of):
        stack = values[month_of == month]
        seen = valid[month_of == month].any(axis=0)  # nanmedian of no value warns: skip those
        if seen.all():
            out[month] = np.nanmedian(stack, axis=0)
        elif seen.any():
            out[month][seen] = np.nanmedian(stack[:, seen], axis=0)
    return out


def ndvi_block(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """(nir - red) / (nir + red) in float32 (NaN where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((nir - red) / (nir + red)).astype(np.float32)


def nan_tile(n_months: int, tile: Window) -> da.Array:
    """An all-NaN (month, y, x) tile in one chunk per month."""
    return da.full((n_months, tile.height, tile.width), NAN, dtype=np.float32,
                   chunks=(1, tile.height, tile.width))


def _candidates(setup: CompositeSetup, read: Window, box: shapely.Geometry) -> list[str]:
    """Records whose image meets the read window and whose footprint meets the box (as the
    read path selects them), so that planning the read cannot fail for lack of records."""
    lonlat = reproject_geometries([box], setup.epsg, 4326)[0]
    first = setup.bands[0]
    ids = []
    for rid, footprint in setup.footprints.items():
        image = setup.windows[(first, rid)]
        if not image.intersection(read).is_empty and shapely.intersects(footprint, lonlat):
            ids.append(rid)
    return ids


def tile_arrays(setup: CompositeSetup, tile: Window, outside: np.ndarray
                ) -> dict[str, da.Array] | None:
    """Lazy (month, y, x) float32 medians per band for one tile; None when no record
    covers the tile's AOI pixels. ``outside`` (tile shape) is True outside the AOI."""
    inside = ~outside
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    read = Window(tile.row_off + int(rows[0]), tile.col_off + int(cols[0]),
                  int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    box = inset_box(setup.grid, read)
    ids = _candidates(setup, read, box)
    if not ids:
        return None
    subset = setup.collection.where(pads.field("id").isin(pa.array(ids, pa.string())))
    ds = subset.get_xarray(box, list(setup.bands), geometry_crs=setup.epsg,
                           storage_options=setup.storage_options)
    row, col = read_origin(ds, setup.grid)
    record_ids = [str(v) for v in ds["id"].values]
    month_of = np.array([setup.month_of[rid] for rid in record_ids], dtype=np.int64)
    arrays = {}
    for band in setup.bands:
        windows = [setup.windows[(band, rid)] for rid in record_ids]
        cover = np.array([[w.row_off - row, w.row_stop - row, w.col_off - col, w.col_stop - col]
                          for w in windows], dtype=np.int64).reshape(-1, 4)
        data = ds[band].data.rechunk({0: -1})
        median = da.map_blocks(
            monthly_median, data, month_of=month_of, cover=cover,
            nodata=ds[band].attrs.get("nodata"), n_months=len(setup.months),
            chunks=((len(setup.months),),) + data.chunks[1:], dtype=np.float32,
            meta=np.array((), dtype=np.float32))
        median = pad_to_window(median, (row, col), tile, NAN)
        if outside.any():
            median = da.where(outside[np.newaxis], NAN, median)
        arrays[band] = median.astype(np.float32).rechunk((1, tile.height, tile.width))
    return arrays
