"""Runnable export chips job (also importable): `python workflows/export_chips.py --index INDEX ...`.

The same job as ``rasteret-dask workflow export-chips`` (see workflows/README.md for the options);
it prints its report as JSON. Importable: ``from workflows.export_chips import main``.
"""

from __future__ import annotations

import sys

from rasteret_dask.cli import main as _cli

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (the workflow's options, ``--cluster TARGET`` included) and run the job."""
    return _cli(["workflow", "export-chips", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
