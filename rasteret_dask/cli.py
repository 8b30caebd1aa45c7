"""The ``rasteret-dask`` command line."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.workspace)
    return 0


def _info(args: argparse.Namespace) -> int:
    from .collection import load

    print(json.dumps(load(args.index).describe(), default=str, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rasteret-dask`` console script."""
    parser = argparse.ArgumentParser(prog="rasteret-dask")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the end-to-end demo on generated data")
    demo.add_argument("--workspace", default="demo_workspace")
    demo.set_defaults(func=_demo)
    info = commands.add_parser("info", help="summarise an index")
    info.add_argument("index")
    info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"rasteret-dask: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
