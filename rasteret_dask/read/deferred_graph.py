"""The dask graph of a deferred (large) warped read: loader tasks and self-planning chunks.

Per band, one loader task per index partition (year, month) reads the metadata of the read's
records in it, on a worker; each chunk task takes its records from the loaders of their
partitions, plans its windows and tiles (:func:`rasteret_dask.read.warp_sources.chunk_work`),
fetches and resamples them (:func:`rasteret_dask.read.warp.read_warped_chunk`). The
collection and the read's shared values are one graph key each, not one copy per task.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import dask.array as da
import numpy as np
import pyproj
from affine import Affine
from dask.highlevelgraph import HighLevelGraph

from ..io import RangeReader
from ..plan.reproject import chunk_bounds_in, chunk_windows
from .deferred import DeferredBand, DeferredPlan, load_partition, loader_ids
from .failures import TileFailures
from .pending import PendingPayloads
from .warp import block_task, fill_chunk, read_warped_chunk, time_blocks
from .warp_sources import WarpParams, chunk_work, record_crs, record_level

__all__ = ["deferred_band_array", "deferred_chunk"]


@lru_cache(maxsize=16)
def _crs(wkt: str) -> pyproj.CRS:
    return pyproj.CRS.from_wkt(wkt)


def deferred_chunk(loaded: Sequence[dict[str, Any]], ids: tuple[str, ...],
                   edges: tuple[int, int, int, int], transform: tuple[float, ...],
                   resolution: tuple[float, float], dtype: str, fill: float, limit: int,
                   params: WarpParams, reader: RangeReader,
                   failures: TileFailures | None = None) -> np.ndarray:
    """Task: plan, fetch, decode, resample and fuse one chunk from its records (``ids`` in
    fusion order, found in the ``loaded`` partitions)."""
    a, b, c, d = edges
    out_transform = Affine(*transform)
    crs = _crs(params.crs)
    bounds: dict[int, np.ndarray] = {}
    members = []
    for rid in ids:
        part = next(p for p in loaded if rid in p["records"])
        record = part["records"][rid]
        rl = record_level(record, crs, out_transform, resolution, params.resampling,
                          part["scaling"].get(rid, (None, None)))
        window = None
        if rl.offset is None:
            epsg = int(record.metadata.crs_epsg)
            if epsg not in bounds:
                bounds[epsg] = chunk_bounds_in(out_transform, ((a, b),), ((c, d),), crs,
                                               record_crs(record.metadata))
            md = rl.metadata
            window = chunk_windows(bounds[epsg], md.transform,
                                   (md.image_height, md.image_width), rl.margin)[0, 0]
        members.append((rl, window))
    chunk = chunk_work(members, edges, out_transform, np.dtype(dtype), fill, limit)
    if chunk is None:
        return fill_chunk((b - a, d - c), dtype, fill)
    labels = [""] * len(chunk.ranges)
    for source in chunk.sources:
        for tile in source.tiles:
            labels[tile.payload] = labels[tile.payload] or source.label
    payloads = None
    if chunk.ranges:
        payloads = PendingPayloads(reader.submit(chunk.ranges), tuple(labels),
                                   sum(r.end - r.start for r in chunk.ranges))
    return read_warped_chunk(payloads, chunk, tuple(range(len(chunk.ranges))), params,
                             failures)


def deferred_band_array(plan: DeferredPlan, band: DeferredBand, reader: RangeReader,
                        failures: TileFailures | None = None) -> da.Array:
    """A lazy (time group, y, x) dask array of one band of a deferred read."""
    token = uuid.uuid4().hex[:12]
    name, loader = f"warp-{band.band}-{token}", f"warp-load-{band.band}-{token}"
    collection, params = f"warp-index-{token}", f"warp-params-{token}"
    layer: dict = {(collection,): plan.collection, (params,): plan.params}
    loaders = {}
    for partition, ids in loader_ids(band).items():
        key = (loader, *partition)
        loaders[key] = (load_partition, (collection,), band.band, partition, ids,
                        plan.scaling)
    transform = tuple(plan.grid.geobox.transform)[:6]
    grid = plan.grid
    blocks = time_blocks(len(plan.groups), grid.time_chunk)
    for k, steps in enumerate(blocks):
        for i, (a, b) in enumerate(grid.row_edges):
            for j, (c, d) in enumerate(grid.col_edges):
                tasks: list[tuple | None] = []
                for g in steps:
                    ids = band.chunks.get((g, i, j))
                    if not ids:
                        tasks.append(None)
                        continue
                    keys = sorted({(loader, *band.partitions[rid]) for rid in ids})
                    tasks.append((deferred_chunk, keys, ids, (a, b, c, d), transform,
                                  plan.resolution, band.dtype.str, band.fill,
                                  plan.max_tile_bytes, (params,), reader, failures))
                layer[(name, k, i, j)] = block_task(tasks, (b - a, d - c), band.dtype.str,
                                                    band.fill)
    layer.update(loaders)
    graph = HighLevelGraph({name: layer}, {name: set()})
    chunks = (tuple(len(steps) for steps in blocks), grid.row_chunks, grid.col_chunks)
    return da.Array(graph, name, chunks, dtype=band.dtype)
