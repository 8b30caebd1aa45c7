"""The ``rasteret-dask`` command line: build, enrich, inspect, read and run batch workflows.

Every command that computes takes ``--cluster TARGET`` (anything ``rasteret_dask.connect``
accepts); bad input ends with one ``rasteret-dask: error: ...`` line and exit status 2. The
parsers are in ``parser.py``, the commands in ``commands.py``.
"""

from __future__ import annotations

import os
import sys

from .parser import build_parser

__all__ = ["main", "build_parser"]

_USER_ERRORS = (ValueError, FileNotFoundError, ImportError, KeyError, OSError, RuntimeError)


def _quiet_broken_pipe() -> int:
    """stdout's reader went away (``rasteret-dask info INDEX | head -1``): end quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rasteret-dask`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print("rasteret-dask: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except _USER_ERRORS as exc:
        if args.debug:
            raise
        text = str(exc).strip() or type(exc).__name__
        message = " ".join(line.strip() for line in text.splitlines() if line.strip())
        print(f"rasteret-dask: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
