"""Progress displays for the work ``runner.py`` runs: one place decides what a user sees.

- On local threads, a dask computation shows a tqdm bar of its tasks (``tqdm.dask``'s
  callback, ``tqdm.auto``: a text bar on stderr in a terminal, a widget in a notebook).
- On a ``distributed`` cluster, futures show ``distributed.progress`` in a terminal (written to
  stderr, so a command's output stays clean on stdout); in a notebook, whose widgets from
  ``distributed`` only update once the cell has finished, a ``tqdm.auto`` widget advanced as
  futures complete.
- Long streams of units (the workflows' tiles) show one ``tqdm.auto`` bar of units.

Every display is off unless the caller asks (``progress=True``); the command line asks unless
``--quiet``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["in_notebook", "task_bar", "follow_futures", "unit_bar"]


def in_notebook() -> bool:
    """Whether this process is an IPython kernel (Jupyter, VS Code notebooks)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = shell.get_ipython() if hasattr(shell, "get_ipython") else None
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


@contextlib.contextmanager
def task_bar(description: str | None = None) -> Iterator[None]:
    """A tqdm bar of the tasks of every dask computation on local threads in this block."""
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=description, leave=True):
        yield


def follow_futures(futures: Sequence[Any], description: str | None = None) -> None:
    """Show the futures' progress until they have all finished (or failed).

    ``distributed.progress`` in a terminal (on stderr), a ``tqdm.auto`` bar advanced as
    futures complete in a notebook. Failures are left for the caller's ``gather`` to raise.
    """
    if not futures:
        return
    if in_notebook():
        from distributed import as_completed
        from tqdm.auto import tqdm

        with tqdm(total=len(futures), desc=description) as bar:
            for _ in as_completed(futures):
                bar.update()
        return
    from distributed import progress

    if description:
        print(description, file=sys.stderr)
    with contextlib.redirect_stdout(sys.stderr):
        progress(futures, notebook=False)
        print(file=sys.stderr)


def unit_bar(total: int | None, description: str | None = None) -> Any:
    """A ``tqdm.auto`` bar of ``total`` units (None: a count without a total); a context
    manager whose ``update(n)`` advances it."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="unit")
