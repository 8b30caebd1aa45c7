"""Running a workflow's tiles: on a distributed client (one task per tile, a bounded number in
flight, the shared job shipped once) or on local threads, with a progress bar and counts of
tiles planned, submitted, finished and failed.

A failed tile does not stop the others: its error is counted and kept (the first
:data:`MAX_ERRORS`), and the tile stays unmarked so that a rerun does it again. A worker that
dies takes its running tiles with it; the scheduler runs them again elsewhere, and since a tile
writes only its own region and marks itself afterwards, nothing is lost or written twice
differently.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..cluster import active_client
from ..redact import redact_text

__all__ = ["TileRun", "run_tiles", "MAX_ERRORS"]

MAX_ERRORS = 50
"""Errors kept on a run (all are counted)."""


@dataclass
class TileRun:
    """Counts of a run (and the outcomes the tiles returned)."""

    planned: int
    submitted: int = 0
    finished: int = 0
    failed: int = 0
    outcomes: list[Any] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    def _failure(self, key: str, exc: BaseException) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"tile": key, "error": redact_text(f"{type(exc).__name__}: {exc}")})


class _Progress:
    """A tqdm bar over the planned tiles (or nothing), showing submitted and failed."""

    def __init__(self, total: int, enabled: bool, what: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="tile", desc=what, dynamic_ncols=True)

    def update(self, run: TileRun) -> None:
        if self.bar is not None:
            self.bar.set_postfix(submitted=run.submitted, failed=run.failed, refresh=False)
            self.bar.update(run.finished + run.failed - self.bar.n)  # redraws at tqdm's pace

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _identity(value: Any) -> Any:
    return value


def _on_client(client: Any, function: Callable, tiles: Sequence[Any], job: Any, run: TileRun,
               in_flight: int, bar: _Progress, name: str) -> None:
    from distributed import as_completed

    token = uuid.uuid4().hex[:12]
    # a task holding the job: lost with its worker, the scheduler computes it again
    shared = client.submit(_identity, job, key=f"{name}-job-{token}", pure=False)
    pending = iter(tiles)
    futures: dict[Any, Any] = {}

    def submit(batch: Iterable[Any]) -> None:
        for tile in batch:
            future = client.submit(function, tile, shared, key=f"{name}-{tile.key}-{token}",
                                   pure=False)
            futures[future] = tile
            run.submitted += 1

    submit(itertools.islice(pending, in_flight))
    bar.update(run)
    done = as_completed(list(futures), loop=client.loop)
    try:
        for future in done:
            tile = futures.pop(future)
            if future.status == "finished":
                run.outcomes.append(future.result())
                run.finished += 1
            else:
                run._failure(tile.key, future.exception())
            before = len(futures)
            submit(itertools.islice(pending, 1))
            for new in list(futures)[before:]:
                done.add(new)
            bar.update(run)
    except BaseException:
        client.cancel(list(futures) + [shared])
        raise
    client.cancel([shared])


def _on_threads(function: Callable, tiles: Sequence[Any], job: Any, run: TileRun,
                in_flight: int, bar: _Progress) -> None:
    pending = iter(tiles)
    with cf.ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="tile") as pool:
        futures: dict[cf.Future, Any] = {}

        def submit(count: int) -> None:
            for tile in itertools.islice(pending, count):
                futures[pool.submit(function, tile, job)] = tile
                run.submitted += 1

        submit(in_flight)
        bar.update(run)
        try:
            while futures:
                finished, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    tile = futures.pop(future)
                    exc = future.exception()
                    if exc is None:
                        run.outcomes.append(future.result())
                        run.finished += 1
                    else:
                        run._failure(tile.key, exc)
                submit(len(finished))
                bar.update(run)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def run_tiles(function: Callable[[Any, Any], Any], tiles: Sequence[Any], job: Any, *,
              client: Any = None, in_flight: int | None = None, progress: bool = False,
              name: str = "tile") -> TileRun:
    """Run ``function(tile, job)`` for every tile and count what happened.

    Parameters
    ----------
    function
        The unit of work of one tile (it writes its own output and marker).
    tiles
        Values with a ``key`` attribute (one small value per tile).
    job
        The value every tile shares; on a client it is one task, sent to each worker once.
    client : distributed.Client, optional
        Where to run; default the active client, else local threads.
    in_flight : int, optional
        Tiles submitted at once: default twice the cluster's threads, or the machine's cores
        on local threads.
    progress : bool, default False
        Show a tqdm bar (finished / planned, with submitted and failed).
    name : str, default "tile"
        Prefix of the task keys and the bar's label.

    Returns
    -------
    TileRun
        Planned, submitted, finished and failed counts, the outcomes and the first errors.
    """
    run = TileRun(planned=len(tiles))
    client = active_client(client)
    bar = _Progress(len(tiles), progress, name)
    try:
        if not tiles:
            return run
        if client is None:
            _on_threads(function, tiles, job, run, in_flight or max(1, os.cpu_count() or 1), bar)
        else:
            size = in_flight or max(2, 2 * sum(client.nthreads().values()))
            _on_client(client, function, tiles, job, run, size, bar, name)
    finally:
        bar.close()
    return run
