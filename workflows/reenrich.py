"""Runnable scheduled re-enrichment (also importable): ``python workflows/reenrich.py --index ws/s2``.

The same job as ``rasteret-dask workflow reenrich``; exits 1 when records stay failed.
"""

from __future__ import annotations

import sys

from rasteret_dask.cli import main as _cli

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (``--index``, ``--until``, ``--cluster``, ...) and run the job."""
    return _cli(["workflow", "reenrich", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
