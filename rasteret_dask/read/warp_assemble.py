"""A warped read plan as a lazy xarray Dataset: one task per (band, group, chunk)."""

from __future__ import annotations

import uuid

import dask.array as da
import numpy as np
import xarray as xr
from dask.highlevelgraph import HighLevelGraph

from ..io import ByteRange, RangeReader
from .assemble import axis_attrs, spatial_ref
from .deferred import DeferredPlan
from .deferred_graph import deferred_band_array
from .failures import TileFailures, check_errors, new_read_errors
from .plan import DEFAULT_GROUP_TILES
from .prefetch import WARP_FETCH_PREFIX
from .warp import block_task, fetch_warp_group, read_warped_chunk, time_blocks
from .warp_plan import WarpBandPlan, WarpPlan
from .warp_sources import WarpChunk
from .warp_steps import read_warped_steps

__all__ = ["warped_dataset", "warped_band_array"]


class _FetchGroups:
    """Warped chunks' byte ranges batched into fetch groups (at most ``max_tiles`` ranges),
    each range of a group once however many chunks read it."""

    def __init__(self, max_tiles: int) -> None:
        self.max_tiles = max_tiles
        self.groups: list[tuple[tuple[ByteRange, ...], tuple[str, ...]]] = []
        self._ranges: list[ByteRange] = []
        self._labels: list[str] = []
        self._index: dict[tuple[str, int, int], int] = {}

    def add(self, chunk: WarpChunk) -> tuple[int, tuple[int, ...]]:
        """The fetch group of ``chunk`` and where its ranges are in it."""
        if self._ranges and len(self._ranges) + len(chunk.ranges) > self.max_tiles:
            self.close()
        labels = chunk.range_labels()
        index = []
        for r, label in zip(chunk.ranges, labels, strict=True):
            key = (r.href, r.start, r.end)
            k = self._index.get(key)
            if k is None:
                k = self._index[key] = len(self._ranges)
                self._ranges.append(r)
                self._labels.append(label)
            index.append(k)
        return len(self.groups), tuple(index)

    def close(self) -> None:
        if self._ranges:
            self.groups.append((tuple(self._ranges), tuple(self._labels)))
        self._ranges, self._labels, self._index = [], [], {}


def warped_band_array(plan: WarpPlan, band: WarpBandPlan, reader: RangeReader,
                      failures: TileFailures | None = None) -> da.Array:
    """A lazy (time group, y, x) dask array of one band, regular chunks from the grid origin.

    Fetch-group tasks start the byte ranges of many chunks at once (as the native path's
    do), so requests are in flight while earlier chunks decode and resample."""
    token = uuid.uuid4().hex[:12]
    name, fetch_name = f"warp-{band.band}-{token}", f"{WARP_FETCH_PREFIX}{band.band}-{token}"
    params = f"warp-params-{token}"
    layer: dict = {(params,): plan.params}
    fetch = _FetchGroups(DEFAULT_GROUP_TILES)
    grid = plan.grid
    blocks = time_blocks(len(plan.groups), grid.time_chunk)
    for b, steps in enumerate(blocks):
        for i, rows in enumerate(grid.row_chunks):
            for j, cols in enumerate(grid.col_chunks):
                chunks = [band.chunks[(g, i, j)] for g in steps]
                sources: list = []
                indexes: list[tuple[int, ...]] = []
                for chunk in chunks:
                    if chunk is None or not chunk.ranges:
                        sources.append(None)
                        indexes.append(())
                    else:
                        group, index = fetch.add(chunk)
                        sources.append((fetch_name, group))
                        indexes.append(index)
                if len(steps) > 1 and sum(c is not None for c in chunks) > 1:
                    # the block's steps in one task: records on a shared grid warped together
                    layer[(name, b, i, j)] = (read_warped_steps, sources, chunks, indexes,
                                              (params,), (rows, cols), band.dtype.str,
                                              band.fill, failures)
                    continue
                tasks = [None if chunk is None else
                         (read_warped_chunk, source, chunk, index, (params,), failures)
                         for chunk, source, index in zip(chunks, sources, indexes,
                                                         strict=True)]
                layer[(name, b, i, j)] = block_task(tasks, (rows, cols), band.dtype.str,
                                                    band.fill)
    fetch.close()
    fetch_layer = {(fetch_name, k): (fetch_warp_group, reader, ranges, labels)
                   for k, (ranges, labels) in enumerate(fetch.groups)}
    graph = HighLevelGraph({fetch_name: fetch_layer, name: layer},
                           {fetch_name: set(), name: {fetch_name}})
    chunks = (tuple(len(steps) for steps in blocks), grid.row_chunks, grid.col_chunks)
    return da.Array(graph, name, chunks, dtype=band.dtype)


def warped_dataset(plan: WarpPlan | DeferredPlan, reader: RangeReader, *,
                   errors: str = "raise") -> xr.Dataset:
    """One (time, y, x) variable per band on the plan's output grid, lazily; pixels outside
    the query geometry are nodata. ``id`` names each time step's records (comma-separated,
    in fusion order)."""
    import odc.geo.xr  # noqa: F401  (registers ``.odc``: ``ds.odc.geobox`` is the output grid)

    check_errors(errors)
    read_errors, failures = new_read_errors() if errors == "nodata" else ([], None)
    geobox = plan.grid.geobox
    crs = plan.grid.crs
    transform = geobox.transform
    y, x = (c.values for c in geobox.coordinates.values())  # odc-geo's pixel centres
    cf = axis_attrs(crs)
    coords = {
        "time": ("time", np.array(plan.times, dtype="datetime64[ns]"),
                 {"standard_name": "time", "long_name": "acquisition time"}),
        "y": ("y", y, cf.get("y", {})),
        "x": ("x", x, cf.get("x", {})),
        "id": ("time", np.array([",".join(ids) for ids in plan.ids], dtype=object)),
        "spatial_ref": spatial_ref(crs, transform),
    }
    variables = {}
    for band in plan.bands:
        data = (deferred_band_array(plan, band, reader, failures)
                if isinstance(plan, DeferredPlan)
                else warped_band_array(plan, band, reader, failures))
        attrs = {"grid_mapping": "spatial_ref", "resampling": plan.grid.resampling}
        array = xr.DataArray(data, dims=("time", "y", "x"), attrs=attrs)
        if band.nodata is not None:
            array.attrs["nodata"] = np.array(band.nodata).astype(band.dtype).item()
            array.encoding["_FillValue"] = array.attrs["nodata"]
        variables[band.band] = array
    attrs = {"skipped_records": [str(r) for r in plan.skipped], "read_errors": read_errors}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
