"""A delayed write whose store tasks each read, write and release one chunk.

xarray's delayed writes (``to_zarr``/``to_netcdf(compute=False)``) store each chunk in a task
that also takes small constant inputs (the CF encoding's ``notnull`` mask of an integer
variable: ``~full_like(x, False)``), shared between variables. Dask's static order then runs
every decode task of a fetch group, and of the next groups, before the stores that release
their chunks: a write held most of the area in memory. :func:`fused_stores` fuses each store
task with the chunk it stores (when nothing else uses that chunk) and with its constant inputs,
so a chunk is decoded, written and dropped in one task, and memory stays at a few chunks (and
the fetch groups in flight) per thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dask.array as da
from dask.core import flatten

__all__ = ["fused_stores"]


def fused_stores(write: Any, sources: Iterable[da.Array]) -> Any:
    """``write`` (a ``dask.delayed`` write of ``sources``) with each task that consumes a
    chunk of ``sources`` fused with that chunk's task and with its constant inputs.

    Parameters
    ----------
    write : dask.delayed.Delayed
        The delayed write (``Dataset.to_zarr(..., compute=False)``, ``to_netcdf``,
        ``dask.array.store(..., compute=False)``).
    sources : iterable of dask.array.Array
        The arrays being written (their chunk keys are what the store tasks consume).

    Returns
    -------
    dask.delayed.Delayed
        The same write on the fused graph: same result, same tasks' work.
    """
    from dask._task_spec import GraphNode, convert_legacy_graph
    from dask.delayed import Delayed

    chunks: set = set()
    inside: set = set()  # every key the sources' graphs compute (fetches included)
    for array in sources:
        chunks.update(flatten(array.__dask_keys__()))
        inside.update(array.__dask_graph__().keys())
    graph = convert_legacy_graph(dict(write.__dask_graph__()))
    users: dict = {}
    for node in graph.values():
        for dep in node.dependencies:
            users[dep] = users.get(dep, 0) + 1
    fused = dict(graph)
    for key, node in graph.items():
        deps = node.dependencies
        if not any(dep in chunks for dep in deps):
            continue
        parts = [graph[dep] for dep in deps if dep in graph and (
            (dep in chunks and users[dep] == 1)
            or (dep not in inside and not graph[dep].dependencies))]
        if not parts:
            continue
        fused[key] = GraphNode.fuse(*parts, node, key=key)
        for part in parts:
            if part.key in chunks:
                del fused[part.key]
    still_used = {dep for node in fused.values() for dep in node.dependencies}
    keys = set(flatten(write.__dask_keys__()))
    fused = {k: v for k, v in fused.items()
             if k in still_used or k in keys or k in inside}
    return Delayed(write.key, fused)
