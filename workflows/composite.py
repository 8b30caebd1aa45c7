"""Runnable composite job (also importable): `python workflows/composite.py --index INDEX ...`.

The same job as ``rasteret-dask workflow composite`` (see workflows/README.md for the options);
it prints its report as JSON. Importable: ``from workflows.composite import main``.
"""

from __future__ import annotations

import sys

from rasteret_dask.cli import main as _cli

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (the workflow's options, ``--cluster TARGET`` included) and run the job."""
    return _cli(["workflow", "composite", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
