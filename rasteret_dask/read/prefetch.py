"""Start a computation's byte ranges before it runs, without computing anything ahead.

A read's fetch-group tasks (:func:`.graph.fetch_group`, :func:`.warp.fetch_warp_group`) only
submit their requests and return a :class:`~.pending.PendingPayloads` at once. A caller that
computes a sequence of pieces one after another on one thread (a composite tile's time blocks)
runs the next piece's fetch tasks with :func:`start_fetches`, computes the current piece, and
then computes the next one with :func:`prefetched_scheduler`, which hands the started fetches
to the graph in place of its fetch tasks: the next piece's bytes arrive while this one decodes,
and no second thread competes for the core a Dask worker gave the task.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import dask
import dask.local
import dask.threaded
from dask.core import flatten
from dask.optimization import cull

__all__ = ["NATIVE_FETCH_PREFIX", "WARP_FETCH_PREFIX", "start_fetches", "prefetched_scheduler",
           "is_fetch_key"]

NATIVE_FETCH_PREFIX = "fetch-"
"""Name prefix of the native read's fetch-group layer (``fetch-{band}-{token}``)."""
WARP_FETCH_PREFIX = "warp-fetch-"
"""Name prefix of the warped read's fetch-group layer (``warp-fetch-{band}-{token}``)."""


def is_fetch_key(key: Hashable) -> bool:
    """Whether ``key`` is a fetch-group task of a read (its task only starts requests)."""
    name = key[0] if isinstance(key, tuple) and key else key
    return isinstance(name, str) and name.startswith((NATIVE_FETCH_PREFIX, WARP_FETCH_PREFIX))


def start_fetches(*collections: Any, started: Mapping[Hashable, Any] | None = None
                  ) -> dict[Hashable, Any]:
    """Run the fetch-group tasks that computing ``collections`` needs: their requests start and
    nothing waits for them.

    Parameters
    ----------
    *collections : dask collections or None
        What will be computed (dask arrays, xarray objects backed by them); None is skipped.
    started : mapping, optional
        Fetches started earlier (by an earlier call): those the collections share are reused,
        not requested again.

    Returns
    -------
    dict
        Fetch-task key -> its result, for :func:`prefetched_scheduler`.
    """
    wanted = [c for c in collections if c is not None]
    if not wanted:
        return {}
    graph: dict[Hashable, Any] = {}
    for collection in wanted:
        graph.update(collection.__dask_graph__() or {})  # None: nothing lazy in it
    keys = list(flatten([c.__dask_keys__() for c in wanted]))
    needed, _ = cull(graph, keys)
    fetches = [k for k in needed if is_fetch_key(k)]
    reused = {k: started[k] for k in fetches if started is not None and k in started}
    todo = [k for k in fetches if k not in reused]
    if not todo:
        return reused
    only, _ = cull(needed, todo)
    values = dask.get(only, todo)
    return {**reused, **dict(zip(todo, values, strict=True))}


def prefetched_scheduler(started: Mapping[Hashable, Any], num_workers: int = 1
                         ) -> Callable[..., Any]:
    """A ``scheduler=`` for ``dask.compute`` that uses the ``started`` fetches in place of the
    graph's fetch tasks of the same keys, then runs the graph on this thread (``num_workers``
    1) or on dask's thread pool.

    Parameters
    ----------
    started : mapping
        :func:`start_fetches`' result.
    num_workers : int, default 1
        1: the synchronous scheduler; more: the threaded one with that many threads.

    Returns
    -------
    callable
        ``get(dsk, keys, **kwargs)``.
    """
    def get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        graph = dict(dsk if isinstance(dsk, Mapping) else dsk.__dask_graph__())
        graph.update({k: v for k, v in started.items() if k in graph})
        if num_workers <= 1:
            return dask.local.get_sync(graph, keys, **kwargs)
        return dask.threaded.get(graph, keys, num_workers=num_workers, **kwargs)
    return get
