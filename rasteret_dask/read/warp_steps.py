"""Several time steps of one warped chunk in one task, the records on a shared grid warped
together.

A coarse read (kilometre pixels from overviews) warps many small windows: one GDAL call costs
a millisecond or two of set-up whatever its size, more than its pixels. The revisits of a tile
within a block of time steps read the same window of the same grid (same CRS, transform,
level, nodata) onto the same region of the chunk, so they are warped in one call, one band
per record, for the kernels whose multi-band result is each band's own (nearest and average,
with ``UNIFIED_SRC_NODATA=NO``: GDAL then weighs each band's nodata by itself). Every step is
then fused first-valid in its records' order exactly as :func:`.warp.read_warped_chunk` does
alone; records that are large, masked, GCP-georeferenced, copied or pasted go its way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from .failures import TileFailures
from .pending import PendingPayloads
from .warp import GroupView, decode_window, read_warped_chunk, source_region, warp_window
from .warp_sources import SourceRead, WarpChunk, WarpParams

__all__ = ["BATCH_RESAMPLING", "BATCH_WINDOW_BYTES", "BATCH_BLOCK_BYTES", "read_warped_steps",
           "batch_groups"]

BATCH_RESAMPLING = frozenset({"nearest", "average"})
"""Kernels whose multi-band warp gives every band its single-band values (tested)."""
BATCH_WINDOW_BYTES = 1 << 20
"""Windows (and their regions of the chunk) up to this size are warped together: past it the
pixels cost more than the call."""
BATCH_BLOCK_BYTES = 64 << 20
"""At most this many bytes of warped layers are held per task before the steps are fused."""


def _batchable(source: SourceRead, chunk: WarpChunk, params: WarpParams
               ) -> tuple[int, int, int, int] | None:
    """The chunk region (rows, cols) a record's window is warped onto when it can be warped
    with others on its grid; None when it goes the single-record way."""
    if (params.resampling not in BATCH_RESAMPLING or source.placement is not None
            or source.mask is not None or source.gcps is not None):
        return None
    (rows, cols), info = source_region(source, chunk, params)
    if rows.stop <= rows.start or cols.stop <= cols.start:
        return None
    if info is not None and info.paste_ok and info.read_shrink == 1 and source.level == 0:
        return None  # pasted, not warped
    itemsize = np.dtype(source.spec.dtype).itemsize
    region = (rows.stop - rows.start) * (cols.stop - cols.start)
    if max(source.shape[0] * source.shape[1], region) * itemsize > BATCH_WINDOW_BYTES:
        return None
    return rows.start, rows.stop, cols.start, cols.stop


def batch_groups(chunks: Sequence[WarpChunk | None], params: WarpParams
                 ) -> list[list[tuple[int, int]]]:
    """The (step, source) pairs warped together: records of several steps on the same grid,
    window and chunk region (groups of one are left out)."""
    groups: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for s, chunk in enumerate(chunks):
        if chunk is None or chunk.error is not None:
            continue
        for k, source in enumerate(chunk.sources):
            region = _batchable(source, chunk, params)
            if region is None:
                continue
            key = (source.crs, source.transform, source.shape, source.nodata,
                   source.spec.dtype, region)
            groups[key].append((s, k))
    return [members for members in groups.values() if len(members) > 1]


def read_warped_steps(payloads: Sequence[PendingPayloads | None],
                      chunks: Sequence[WarpChunk | None], indexes: Sequence[tuple[int, ...]],
                      params: WarpParams, shape: tuple[int, int], dtype: str, fill: float,
                      failures: TileFailures | None = None) -> np.ndarray:
    """Task: the (steps, h, w) array of one warped chunk over several time steps (a step
    without a chunk is ``fill``); step ``s`` reads ``chunks[s]`` from ``payloads[s]`` (its
    range ``i`` is that group's ``indexes[s][i]``).

    Values are :func:`.warp.read_warped_chunk`'s step by step; records on a shared grid are
    warped together first (at most :data:`BATCH_BLOCK_BYTES` of them). Errors as there.
    """
    out = np.empty((len(chunks), *shape), np.dtype(dtype))
    layers: list[dict[int, np.ndarray]] = [{} for _ in chunks]
    held = 0
    for members in batch_groups(chunks, params):
        if held > BATCH_BLOCK_BYTES:
            break
        windows = []
        for s, k in members:
            view = GroupView(payloads[s], indexes[s])
            window, source_fill, _ = decode_window(view, chunks[s].sources[k], failures)
            windows.append(window)
        s, k = members[0]
        chunk = chunks[s]
        roi = source_region(chunk.sources[k], chunk, params)[0]
        warped = warp_window(np.stack(windows), chunk.sources[k], source_fill, chunk, params,
                             roi)
        held += warped.nbytes
        for (s, k), layer in zip(members, warped, strict=True):
            layers[s][k] = layer
    for s, chunk in enumerate(chunks):  # every chunk is of the block's dtype (the band's)
        if chunk is None:
            out[s] = fill
        else:
            read_warped_chunk(payloads[s] if chunk.ranges else None, chunk, indexes[s],
                              params, failures, layers[s], out=out[s])
    return out
