"""One way to run work: task lists on a given client, the active one, or local threads.

Every entry point that computes (enrichment, STAC ingest, workflows, the command line) runs
its Dask tasks through these functions, so "which client, with which progress display" is
decided in one place (the displays themselves are in ``progress.py``):

- :func:`compute` and :func:`persist` run a list of delayed tasks on ``client``, else the
  active ``distributed`` client, else local threads;
- :func:`compute_streaming` runs a long, lazily built sequence of units with a bounded number
  in flight (the workflows' tiles);
- :func:`using_client` resolves an entry point's ``client=``/``--cluster`` target and closes the
  client afterwards only when it created it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import dask

from .cluster import active_client, resolve_client
from .progress import follow_futures, task_bar, unit_bar

__all__ = ["compute", "persist", "compute_streaming", "using_client"]


def compute(tasks: Sequence[Any], client: Any = None, *, progress: bool = False,
            description: str | None = None) -> list[Any]:
    """Compute ``tasks`` and return their results in order.

    Parameters
    ----------
    tasks : sequence of dask collections or delayed values
        What to compute (``get_xarray`` Datasets included:
        ``compute([ds], progress=True)[0]`` is ``ds.compute()`` with a progress bar).
    client : distributed.Client, optional
        Where to run; default the active ``distributed`` client, else local threads.
    progress : bool, default False
        Show progress (``rasteret_dask.progress``): ``distributed.progress`` on a cluster, a
        ``tqdm`` bar of the tasks on local threads (a widget in a notebook).
    description : str, optional
        The bar's label.

    Returns
    -------
    list
        One result per task.
    """
    client = active_client(client)
    if client is not None:
        futures = client.compute(list(tasks))
        if progress:
            follow_futures(futures, description)
        return client.gather(futures)
    if progress:
        with task_bar(description):
            return list(dask.compute(*tasks, scheduler="threads"))
    return list(dask.compute(*tasks, scheduler="threads"))


def persist(tasks: Sequence[Any], client: Any = None, *, progress: bool = False,
            description: str | None = None) -> list[Any]:
    """Persist ``tasks`` (results stay where they were computed: on the workers on a cluster).

    Parameters
    ----------
    tasks : sequence of dask collections or delayed values
        What to persist.
    client : distributed.Client, optional
        Where to run; default the active ``distributed`` client, else local threads.
    progress : bool, default False
        Show progress as :func:`compute` does (on a cluster this waits for the results).
    description : str, optional
        The bar's label.

    Returns
    -------
    list
        One persisted collection per task, to pass to later tasks.
    """
    client = active_client(client)
    if client is not None:
        persisted = list(client.persist(list(tasks)))
        if progress:
            from distributed import futures_of

            follow_futures(futures_of(persisted), description)
        return persisted
    if progress:
        with task_bar(description):
            return list(dask.persist(*tasks, scheduler="threads"))
    return list(dask.persist(*tasks, scheduler="threads"))


def compute_streaming(units: Iterable[Any], *, client: Any = None,
                      in_flight: int | None = None, progress: bool = False,
                      total: int | None = None, description: str | None = None) -> int:
    """Compute delayed units (built lazily from ``units``) and return how many finished.

    Parameters
    ----------
    units : iterable of delayed values
        Consumed lazily, so a long job never holds every unit's graph at once.
    client : distributed.Client, optional
        Where to run; default the active ``distributed`` client, else local threads.
    in_flight : int, optional
        Units submitted at once: default twice the cluster's threads (at least 2), or the
        machine's cores on local threads (batches of that many).
    progress : bool, default False
        Show a ``tqdm`` bar of finished units (a widget in a notebook).
    total : int, optional
        How many units ``units`` yields, for the bar.
    description : str, optional
        The bar's label.

    Returns
    -------
    int
        Units finished.

    Raises
    ------
    Exception
        The first unit's failure; the units not yet finished are cancelled. Units that finished
        before it stay finished (their side effects are kept).
    """
    bar = unit_bar(total, description) if progress else contextlib.nullcontext()
    with bar:
        return _stream(units, active_client(client), in_flight,
                       bar.update if progress else (lambda n: None))


def _stream(units: Iterable[Any], client: Any, in_flight: int | None,
            advance: Callable[[int], Any]) -> int:
    iterator = iter(units)
    finished = 0
    if client is None:
        size = in_flight or max(2, os.cpu_count() or 2)
        while batch := list(itertools.islice(iterator, size)):
            dask.compute(*batch, scheduler="threads")
            finished += len(batch)
            advance(len(batch))
        return finished
    from distributed import as_completed

    size = in_flight or max(2, 2 * sum(client.nthreads().values()))
    submitted = [client.compute(u) for u in itertools.islice(iterator, size)]
    pending = as_completed(submitted)
    try:
        for future in pending:
            future.result()
            finished += 1
            advance(1)
            for unit in itertools.islice(iterator, 1):
                submitted.append(client.compute(unit))
                pending.add(submitted[-1])
    except BaseException:
        for future in submitted:
            future.cancel()
        raise
    return finished


@contextlib.contextmanager
def using_client(target: Any = None) -> Iterator[Any]:
    """The client an entry point runs on; closed on exit only if this call created it.

    Parameters
    ----------
    target : distributed.Client, str, os.PathLike, mapping or None
        ``None`` yields None (local threads, or the active client where the callee looks for
        one); a Client is used as is and left open; anything else is a ``connect()`` target
        (a scheduler address, a cluster YAML file, a kind name), whose client is closed on exit.

    Yields
    ------
    distributed.Client or None
    """
    if target is None:
        yield None
        return
    client, owned = resolve_client(target)
    try:
        yield client
    finally:
        if owned:
            client.close()
