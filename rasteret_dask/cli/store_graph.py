"""A delayed write whose memory is a few chunks per thread and a bounded number of fetches.

xarray's delayed writes (``to_zarr``/``to_netcdf(compute=False)``) store each chunk in a task
that also takes small constant inputs (the CF encoding's ``notnull`` mask of an integer
variable: ``~full_like(x, False)``), shared between variables; and dask's static order starts
the fetches of most of a band (each a group of up to 48 tiles, whose compressed bytes stay in
memory until its last chunk is decoded) before their chunks are written. Measured on a 2 GB
write, that held a third of the output. :func:`bounded_write` rewrites the write's graph:

- each store task is fused with the chunk task it stores (when nothing else uses that chunk)
  and with its constant inputs, so a chunk is decoded, written and dropped in one task;
- the source roots (fetch groups) are put in dask's order, and the root at position ``p``
  waits until every store whose last root is at position ``p - in_flight`` has run (a chunk
  may also read tiles of an earlier group): about ``in_flight`` fetch groups are in memory at
  once, whatever the area; before a gated fetch starts, the finished groups' reference cycles
  are collected so their bytes are returned at once.

The graph stays one graph (each fetch runs once, the scheduler keeps every thread busy), so
progress displays and clusters work as for any computation.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator
from typing import Any

import dask.array as da
from dask.core import flatten

__all__ = ["bounded_write", "in_flight_for", "older_objects_frozen"]


@contextlib.contextmanager
def older_objects_frozen() -> Iterator[None]:
    """Objects that exist before the block are left out of the cyclic collector's scans
    (``gc.freeze``) during it, so the collections before each gated fetch scan only what the
    write created: milliseconds instead of a pass over every module, graph and test object."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _first(value: Any, *after: Any) -> Any:
    """``value``, computed once ``after`` (the gate) is: a root of the source (a fetch group)
    whose turn has come. The finished groups' objects hold reference cycles (their range
    futures' callbacks), which only the cyclic collector frees: collecting here returns their
    bytes before the new group's arrive."""
    gc.collect()
    return value


def _done(*stored: Any) -> None:
    """The stores of a position have all run."""


def bounded_write(write: Any, sources: Iterable[da.Array], in_flight: int) -> Any:
    """``write`` (a ``dask.delayed`` write of ``sources``) with each store fused with its chunk
    and about ``in_flight`` source roots (fetch groups) in memory at once.

    Parameters
    ----------
    write : dask.delayed.Delayed
        The delayed write (``Dataset.to_zarr(..., compute=False)``, ``to_netcdf``, or a
        ``dask.delayed`` call on ``dask.array.store(..., compute=False)``).
    sources : iterable of dask.array.Array
        The arrays being written (their chunk keys are what the store tasks consume).
    in_flight : int
        Source roots (fetch groups) started before the stores of the earliest unfinished one
        have all run; at least 1.

    Returns
    -------
    dask.delayed.Delayed
        The same write: same result, the same work, one fetch per group.
    """
    from dask._task_spec import GraphNode, Task, TaskRef, convert_legacy_graph
    from dask.delayed import Delayed
    from dask.order import order

    chunks: set = set()
    inside: dict = {}  # the sources' own tasks (fetches included)
    for array in sources:
        chunks.update(flatten(array.__dask_keys__()))
        inside.update(array.__dask_graph__())
    graph = convert_legacy_graph(dict(write.__dask_graph__()))
    users: dict = {}
    for node in graph.values():
        for dep in node.dependencies:
            users[dep] = users.get(dep, 0) + 1
    fused = dict(graph)
    stores = []
    for key, node in graph.items():
        deps = node.dependencies
        if not any(dep in chunks for dep in deps):
            continue
        stores.append(key)
        parts = [graph[dep] for dep in deps if dep in graph and (
            (dep in chunks and users[dep] == 1)
            or (dep not in inside and not graph[dep].dependencies))]
        if parts:
            fused[key] = GraphNode.fuse(*parts, node, key=key)
            for part in parts:
                if part.key in chunks:
                    del fused[part.key]
    still_used = {dep for node in fused.values() for dep in node.dependencies}
    outputs = set(flatten(write.__dask_keys__()))
    fused = {k: v for k, v in fused.items() if k in still_used or k in outputs}

    roots_of: dict = {}

    def roots(key: Any) -> frozenset:
        if key not in roots_of:
            deps = [d for d in fused[key].dependencies if d in inside and d in fused]
            roots_of[key] = (frozenset([key]) if not deps and key in inside
                             else frozenset().union(*(roots(d) for d in deps)))
        return roots_of[key]

    priority = order(fused)
    needed = {key: roots(key) for key in stores}
    sequence = sorted(frozenset().union(*needed.values()), key=priority.__getitem__)
    position = {root: p for p, root in enumerate(sequence)}
    last: dict[int, list] = {}  # position -> the stores whose last root is there
    for key, needs in needed.items():
        if needs:
            last.setdefault(max(position[r] for r in needs), []).append(key)
    gate = max(1, in_flight)
    for p, root in enumerate(sequence):
        if p in last:
            done = ("bounded-write-done", write.key, p)
            fused[done] = Task(done, _done, *(TaskRef(k) for k in last[p]))
        earlier = p - gate
        while earlier >= 0 and earlier not in last:
            earlier -= 1
        if earlier < 0:
            continue
        before = ("bounded-write-done", write.key, earlier)
        inner = fused[root].substitute({}, key=("bounded-write-root", root))
        outer = Task(root, _first, TaskRef(inner.key), TaskRef(before))
        fused[root] = GraphNode.fuse(inner, outer, key=root)
    return Delayed(write.key, fused)


def in_flight_for(client: Any) -> int:
    """Fetch groups in flight for a write: one per thread (the cluster's, or this machine's
    cores) and one more, so a thread finishing a group finds the next one's bytes arriving."""
    import os

    threads = sum(client.nthreads().values()) if client is not None else os.cpu_count()
    return max(1, threads or 1) + 1
