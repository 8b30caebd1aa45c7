"""The ``rasteret-dask`` command line: build, enrich, inspect, read and run batch workflows.

Every command that computes takes ``--cluster TARGET`` (anything ``rasteret_dask.connect``
accepts); bad input ends with one ``rasteret-dask: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from . import args as A
from . import commands as C

__all__ = ["main", "build_parser"]

_USER_ERRORS = (ValueError, FileNotFoundError, ImportError, KeyError, OSError, RuntimeError)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the tests and the docs)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cluster", metavar="TARGET",
                        help="dask cluster: scheduler address, cluster/*.yaml, or 'local'")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    parser = argparse.ArgumentParser(prog="rasteret-dask", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("demo", help="run the end-to-end demo on generated data")
    p.add_argument("--workspace", default="demo_workspace")
    p.set_defaults(func=C.demo)

    p = commands.add_parser("info", help="summarise an index")
    p.add_argument("index")
    p.set_defaults(func=C.info)

    p = commands.add_parser("build-stac", parents=[common], help="build an index from a STAC API")
    p.add_argument("--name", required=True)
    p.add_argument("--stac-api", required=True)
    p.add_argument("--collection", required=True)
    p.add_argument("--date-range", nargs=2, metavar=("START", "END"), required=True)
    p.add_argument("--bbox", type=A.bbox)
    p.add_argument("--workspace", default="rasteret_workspace")
    p.add_argument("--data-source", help="descriptor id, e.g. earthsearch/sentinel-2-l2a")
    p.add_argument("--band-map", type=A.key_values, help="B04=red,B08=nir")
    p.add_argument("--query", type=A.json_object)
    p.add_argument("--max-items", type=int)
    p.add_argument("--no-enrich", action="store_true")
    p.set_defaults(func=C.build_stac)

    p = commands.add_parser("build-table", parents=[common],
                            help="build an index from a (stac-)GeoParquet table")
    p.add_argument("table")
    p.add_argument("--name", required=True)
    p.add_argument("--workspace", default="rasteret_workspace")
    p.add_argument("--data-source")
    p.add_argument("--band-map", type=A.key_values, help="band code=asset key, e.g. B04=red")
    p.add_argument("--href-column")
    p.add_argument("--no-enrich", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing index of that name (only its own files)")
    p.set_defaults(func=C.build_table)

    p = commands.add_parser("enrich", parents=[common], help="fill missing COG metadata")
    p.add_argument("index")
    p.add_argument("--bands", type=A.bands)
    p.add_argument("--all", action="store_true", help="re-read every header, not only missing")
    p.set_defaults(func=C.enrich)

    p = commands.add_parser("read", parents=[common],
                            help="read an AOI time series to NetCDF, Zarr or GeoTIFF")
    p.add_argument("index")
    p.add_argument("--aoi", type=A.aoi, required=True,
                   help="minx,miny,maxx,maxy, WKT, GeoJSON, or a .geojson/.wkt file")
    p.add_argument("--aoi-crs", default="EPSG:4326")
    p.add_argument("--bands", type=A.bands, required=True)
    p.add_argument("--out", required=True, help="output path: .nc, .zarr or .tif")
    p.add_argument("--format", choices=("netcdf", "zarr", "geotiff"))
    p.add_argument("--date-range", nargs=2, metavar=("START", "END"))
    p.add_argument("--cloud-cover-lt", type=float)
    p.add_argument("--all-touched", action="store_true")
    p.set_defaults(func=C.read)

    p = commands.add_parser("workflow", parents=[common],
                            help=f"run a batch workflow: {', '.join(C.WORKFLOWS)}")
    p.add_argument("name", choices=C.WORKFLOWS)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the workflow's own arguments")
    p.set_defaults(func=C.workflow)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rasteret-dask`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("rasteret-dask: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as exc:
        if args.debug:
            raise
        text = str(exc).strip() or type(exc).__name__
        message = " ".join(line.strip() for line in text.splitlines() if line.strip())
        print(f"rasteret-dask: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
