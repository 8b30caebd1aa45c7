"""The ``rasteret-dask`` command line: build, enrich, inspect, read and run batch workflows.

Every command that computes takes ``--cluster TARGET`` (anything ``rasteret_dask.connect``
accepts). Long work shows progress bars on stderr (``--quiet`` hides them). Warnings and the
``rasteret_dask.*`` log records go to stderr as one ``rasteret-dask: warning: ...`` line each
(``--verbose`` adds the INFO records: retries, grids chosen, partitions written; ``--debug``
everything). Bad input ends with one ``rasteret-dask: error: ...`` line and exit status 2;
an unexpected failure with one line and status 1 (``--debug`` shows the traceback). The
parsers are in ``parser.py``, the commands in ``commands.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

from .parser import build_parser

__all__ = ["main", "build_parser"]

_USER_ERRORS = (ValueError, FileNotFoundError, ImportError, KeyError, OSError, RuntimeError)
_PROGRAM = "rasteret-dask"


def _quiet_broken_pipe() -> int:
    """stdout's reader went away (``rasteret-dask info INDEX | head -1``): end quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


class _OneLine(logging.Formatter):
    """``rasteret-dask: warning: message`` on one line (a traceback only with --debug)."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        message = " ".join(record.getMessage().split())
        text = f"{_PROGRAM}: {record.levelname.lower()}: {message}"
        if self.tracebacks and record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


@contextlib.contextmanager
def _reporting(debug: bool, verbose: bool) -> Iterator[None]:
    """Send ``rasteret_dask.*`` records and Python warnings to stderr, one line each, for the
    length of one command; the logger and warnings hooks are restored afterwards."""
    logger = logging.getLogger("rasteret_dask")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine(debug))
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler.setLevel(level)
    saved_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, saved_level) if saved_level else level)
    shown = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        print(f"{_PROGRAM}: warning: {text}", file=sys.stderr)

    warnings.showwarning = one_line
    try:
        yield
    finally:
        warnings.showwarning = shown
        logger.removeHandler(handler)
        logger.setLevel(saved_level)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rasteret-dask`` console script."""
    args = build_parser().parse_args(argv)
    try:
        with _reporting(args.debug, args.verbose):
            code = args.func(args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print(f"{_PROGRAM}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except _USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"{_PROGRAM}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            raise
        print(f"{_PROGRAM}: error: {type(exc).__name__}: {_one_line(exc)} (an unexpected "
              "failure: rerun with --debug for the traceback, and report it if the input was "
              "right)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
