"""The dask graph of a deferred (large) warped read: loader tasks and self-planning chunks.

Per band, one loader task per index partition (year, month) reads the metadata of the read's
records in it, on a worker; each chunk task takes its records from the loaders of their
partitions, plans its windows and tiles (:func:`rasteret_dask.read.warp_sources.chunk_work`),
fetches and resamples them (:func:`rasteret_dask.read.warp_steps.read_warped_steps`: every
step as :func:`rasteret_dask.read.warp.read_warped_chunk` reads it alone). The collection
and the read's shared values are one graph key each, not one copy per task.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import dask.array as da
import numpy as np
import pyproj
from affine import Affine
from dask.highlevelgraph import HighLevelGraph

from ..io import RangeReader
from ..plan.reproject import chunk_bounds_in
from .deferred import DeferredBand, DeferredPlan, load_partition, loader_ids
from .failures import TileFailures
from .pending import PendingPayloads
from .warp import fill_chunk, time_blocks
from .warp_sources import (
    WarpChunk,
    WarpParams,
    chunk_work,
    crs_key,
    record_crs,
    record_level,
    record_windows,
)
from .warp_steps import read_warped_steps

__all__ = ["deferred_band_array", "deferred_block", "BandSpec"]

logger = logging.getLogger("rasteret_dask.read")


@lru_cache(maxsize=16)
def _crs(wkt: str) -> pyproj.CRS:
    return pyproj.CRS.from_wkt(wkt)


@dataclass(frozen=True, slots=True)
class BandSpec:
    """What every chunk task of one band of a deferred read shares (one object per band)."""

    transform: tuple[float, ...]
    resolution: tuple[float, float]
    source_dtype: str
    dtype: str
    fill: float
    limit: int


def _plan_step(loaded: Sequence[dict[str, Any]], ids: tuple[str, ...],
               edges: tuple[int, int, int, int], spec: BandSpec, params: WarpParams
               ) -> WarpChunk | None:
    """One time step of a chunk planned from its records (``ids`` in fusion order, found in
    the ``loaded`` partitions; a record without metadata for the band is left out and
    logged, one of another dtype than the band's raises)."""
    a, b, c, d = edges
    out_transform = Affine(*spec.transform)
    crs = _crs(params.crs)
    bounds: dict[str, np.ndarray] = {}
    members = []
    expected = np.dtype(spec.source_dtype)
    for rid in ids:
        part = next((p for p in loaded if rid in p["records"]), None)
        if part is None:
            logger.warning("record %r has no metadata for the band read: left out", rid)
            continue
        record = part["records"][rid]
        if record.metadata.native_dtype != expected:
            raise ValueError(f"{record.label}: dtype {record.metadata.dtype}, the read's "
                             f"other records {expected}; read bands of one dtype")
        rl = record_level(record, crs, out_transform, spec.resolution, params.resampling,
                          part["scaling"].get(rid, (None, None)))
        window = None
        if rl.offset is None:
            epsg = crs_key(record.metadata)
            if epsg not in bounds:
                bounds[epsg] = chunk_bounds_in(out_transform, ((a, b),), ((c, d),), crs,
                                               record_crs(record.metadata))
            window = record_windows(rl, bounds[epsg])[0, 0]
        members.append((rl, window))
    return chunk_work(members, edges, out_transform, np.dtype(spec.dtype), spec.fill,
                      spec.limit)


def deferred_block(steps: Sequence[tuple[Sequence[dict[str, Any]], tuple[str, ...]] | None],
                   edges: tuple[int, int, int, int], spec: BandSpec, params: WarpParams,
                   reader: RangeReader, failures: TileFailures | None = None) -> np.ndarray:
    """Task: the (steps, h, w) chunk of several time steps. Every step is planned first and
    all their byte ranges requested at once; each step then decodes, resamples and fuses as
    its own bytes arrive (one round trip per block, not per step)."""
    a, b, c, d = edges
    shape = (b - a, d - c)
    chunks = [None if step is None else _plan_step(step[0], step[1], edges, spec, params)
              for step in steps]
    ranges, labels, offsets = [], [], []
    for chunk in chunks:
        offsets.append(len(ranges))
        if chunk is None:
            continue
        ranges.extend(chunk.ranges)
        labels.extend(chunk.range_labels())
    payloads = None
    if ranges:
        payloads = PendingPayloads(reader.submit(ranges), tuple(labels),
                                   sum(r.end - r.start for r in ranges))
    indexes = [() if chunk is None else tuple(range(start, start + len(chunk.ranges)))
               for chunk, start in zip(chunks, offsets, strict=True)]
    return read_warped_steps([payloads] * len(chunks), chunks, indexes, params, shape,
                             np.dtype(spec.dtype).str, spec.fill, failures)


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
    size = grid.time_chunk
    blocks = time_blocks(len(plan.groups), size)
    keys_of = [[(loader, *p) for p in parts] for parts in plan.group_parts]
    busy: dict[tuple[int, int, int], dict[int, tuple[str, ...]]] = defaultdict(dict)
    for (g, i, j), ids in band.chunks.items():
        busy[(g // size, i, j)][g] = ids
    dtype, fill = band.dtype.str, band.fill
    spec = BandSpec(transform, plan.resolution, band.source_dtype, dtype, fill,
                    plan.max_tile_bytes)
    edges = {(i, j): (a, b, c, d) for i, (a, b) in enumerate(grid.row_edges)
             for j, (c, d) in enumerate(grid.col_edges)}
    shapes = {key: (b - a, d - c) for key, (a, b, c, d) in edges.items()}
    param_key = (params,)
    for k, steps in enumerate(blocks):
        for key, edge in edges.items():
            work = busy.get((k, *key))
            if work is None:
                layer[(name, k, *key)] = (fill_chunk, shapes[key], dtype, fill, len(steps))
                continue
            layer[(name, k, *key)] = (deferred_block, [
                [keys_of[g], work[g]] if g in work else None for g in steps], edge, spec,
                param_key, reader, failures)
    layer.update(loaders)
    graph = HighLevelGraph({name: layer}, {name: set()})
    chunks = (tuple(len(steps) for steps in blocks), grid.row_chunks, grid.col_chunks)
    return da.Array(graph, name, chunks, dtype=band.dtype)
