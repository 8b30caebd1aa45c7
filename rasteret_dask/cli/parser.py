"""Every parser of the ``rasteret-dask`` command, in one place (workflows included).

``build_parser()`` is the whole command tree: ``rasteret-dask [--debug] [--quiet] [--verbose]
COMMAND ...`` and ``rasteret-dask workflow NAME ...``. The options every command shares
(``--debug``, ``--quiet``, ``--verbose``, and ``--cluster`` where a command computes) are
accepted before or after the subcommand; each option has a help line; help texts are plain
text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from ..plan.output_grid import RESAMPLING
from ..read.grouping import GROUPBY
from . import args as A
from . import commands as C

__all__ = ["build_parser", "WORKFLOWS"]

WORKFLOWS = ("reenrich", "composite", "export-chips")

_DESCRIPTION = ("Build a GeoParquet index of Cloud-Optimized GeoTIFFs, enrich it with their "
                "headers, read pixels lazily with Dask, and run batch workflows.")


def _version() -> str:
    try:
        return version("rasteret-dask")
    except PackageNotFoundError:  # a source tree that is not installed
        from .. import __version__

        return __version__


def _flags(computes: bool, top: bool) -> argparse.ArgumentParser:
    """The shared options; below the top level they default to SUPPRESS so they never reset
    a value given before the subcommand."""
    parent = argparse.ArgumentParser(add_help=False)
    default = {} if top else {"default": argparse.SUPPRESS}
    parent.add_argument("--debug", action="store_true", help="show tracebacks on errors",
                        **default)
    parent.add_argument("--quiet", action="store_true", help="no progress bars", **default)
    parent.add_argument("--verbose", action="store_true",
                        help="log what happens: retries, grids chosen, partitions written",
                        **default)
    if computes:
        parent.add_argument("--cluster", metavar="TARGET", default=argparse.SUPPRESS,
                            help="dask cluster: a scheduler address, a cluster/*.yaml file, "
                                 "or 'local' (default: local threads)")
    return parent


def _command(commands, name: str, func: Callable, help: str, *, computes: bool = True
             ) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, parents=[_flags(computes, top=False)], help=help,
                                 description=help[:1].upper() + help[1:] + ".")
    parser.set_defaults(func=func)
    return parser


def _index(parser: argparse.ArgumentParser, *, flag: bool = False) -> None:
    if flag:
        parser.add_argument("--index", required=True, help="the index: a folder or URL")
    else:
        parser.add_argument("index", help="the index: a folder or URL")


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date-range", nargs=2, metavar=("START", "END"),
                        help="only records in this date range (ISO dates, both included)")
    parser.add_argument("--cloud-cover-lt", type=float, metavar="PERCENT",
                        help="only records with eo:cloud_cover below this")
    _where(parser)


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--where", metavar="CONDITION",
                        help="only records matching a SQL condition on index columns, e.g. "
                             "\"eo:cloud_cover < 20 AND platform = 'sentinel-2a'\"")


def _aoi(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--aoi", type=A.aoi, required=True,
                        help="minx,miny,maxx,maxy, WKT, GeoJSON, or a .geojson/.wkt file")
    parser.add_argument("--aoi-crs", default="EPSG:4326",
                        help="CRS of the AOI's coordinates (default: EPSG:4326)")


def _build_commands(commands) -> None:
    p = _command(commands, "build-stac", C.build_stac, "build an index from a STAC API")
    p.add_argument("--name", required=True, help="collection name (the index folder's name)")
    p.add_argument("--stac-api", required=True, help="URL of the STAC API")
    p.add_argument("--collection", required=True, help="STAC collection id")
    p.add_argument("--date-range", nargs=2, metavar=("START", "END"), required=True,
                   help="search window (ISO dates, both included)")
    p.add_argument("--bbox", type=A.bbox, help="minx,miny,maxx,maxy in degrees")
    p.add_argument("--workspace", default="rasteret_workspace",
                   help="folder the index is written into (default: rasteret_workspace)")
    p.add_argument("--data-source", help="descriptor id, e.g. earthsearch/sentinel-2-l2a")
    p.add_argument("--band-map", type=A.key_values,
                   help="band code=asset key pairs, e.g. B04=red,B08=nir")
    p.add_argument("--query", type=A.json_object,
                   help='STAC query as JSON, e.g. \'{"eo:cloud_cover": {"lt": 20}}\'')
    p.add_argument("--max-items", type=int, help="keep at most this many (earliest) items")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="seconds a STAC request may wait for an answer (default: 60)")
    p.add_argument("--no-enrich", action="store_true", help="do not fetch COG headers")

    p = _command(commands, "build-table", C.build_table,
                 "build an index from a (stac-)GeoParquet table")
    p.add_argument("table", help="a Parquet/GeoParquet file or folder")
    p.add_argument("--name", required=True, help="collection name (the index folder's name)")
    p.add_argument("--workspace", default="rasteret_workspace",
                   help="folder the index is written into (default: rasteret_workspace)")
    p.add_argument("--data-source", help="descriptor id, e.g. earthsearch/sentinel-2-l2a")
    p.add_argument("--band-map", type=A.key_values,
                   help="band code=asset key pairs, e.g. B04=red")
    p.add_argument("--href-column", help="a column of hrefs to use as the band's asset")
    p.add_argument("--no-enrich", action="store_true", help="do not fetch COG headers")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing index of that name (only its own files)")

    p = _command(commands, "enrich", C.enrich, "fill missing COG metadata")
    _index(p)
    p.add_argument("--bands", type=A.bands, help="bands to enrich, e.g. B04,B08 (default: all)")
    p.add_argument("--all", action="store_true", help="re-read every header, not only missing")


def _read_commands(commands) -> None:
    p = _command(commands, "info", C.info, "summarise an index", computes=False)
    _index(p)

    p = _command(commands, "read", C.read, "read an AOI time series to NetCDF, Zarr or GeoTIFF")
    _index(p)
    _aoi(p)
    p.add_argument("--bands", type=A.bands, required=True, help="bands to read, e.g. B04,B08")
    p.add_argument("--out", required=True, help="output path: .nc, .zarr or .tif")
    p.add_argument("--format", choices=("netcdf", "zarr", "geotiff"),
                   help="output format (default: from the --out suffix)")
    _filters(p)
    p.add_argument("--all-touched", action="store_true",
                   help="keep every pixel the AOI touches, not only those whose centre it holds")
    _output_grid(p)


def _output_grid(p) -> None:
    """The output-grid options of a read (see ``get_xarray``)."""
    p.add_argument("--crs", help="output CRS, e.g. EPSG:3035 (default: the records' CRS, or "
                                 "the CRS of most records)")
    p.add_argument("--epsg", dest="crs", type=A.epsg, metavar="CODE",
                   help="output CRS as an EPSG code (the same as --crs EPSG:CODE)")
    p.add_argument("--resolution", type=A.resolution, metavar="RES[,RES_Y]",
                   help="output pixel size in CRS units (default: the finest native one)")
    p.add_argument("--resampling", default="nearest", choices=RESAMPLING,
                   help="resampling kernel onto the output grid (default: nearest)")
    p.add_argument("--groupby", choices=GROUPBY,
                   help="one time step per group, fused first-valid (e.g. solar_day: one "
                        "mosaic per satellite pass; default: one per record)")
    p.add_argument("--rescale", action="store_true",
                   help="float32 physical values from the STAC raster:bands scale and offset")


def _workflow_commands(commands) -> None:
    workflow = commands.add_parser(
        "workflow", help=f"run a batch workflow: {', '.join(WORKFLOWS)}",
        description="Run a batch workflow on an index.")
    jobs = workflow.add_subparsers(dest="workflow", required=True, metavar="NAME")

    p = _command(jobs, "reenrich", C.reenrich,
                 "add new STAC items, fill missing or failed metadata; JSON report")
    _index(p, flag=True)
    p.add_argument("--bands", type=A.bands, help="bands to enrich (default: all)")
    p.add_argument("--until", help="search STAC up to this date (default: now)")
    p.add_argument("--no-stac", action="store_true", help="only enrich, do not search STAC")
    p.add_argument("--lookback", type=int, default=3, metavar="MONTHS",
                   help="months before the last searched month to search again for items "
                        "published late (default: 3)")
    p.add_argument("--full", action="store_true",
                   help="search the whole recorded date range again")
    p.add_argument("--prune", action="store_true",
                   help="remove items the STAC search no longer returns (reported either way)")
    p.add_argument("--verify", action="store_true",
                   help="check every enriched asset's ETag/size/Last-Modified (one HEAD each) "
                        "and re-enrich the objects replaced since enrichment")
    p.add_argument("--verify-fraction", type=float, default=1.0, metavar="F",
                   help="with --verify, check this fraction of the objects (default: 1)")
    p.add_argument("--report", help="report path (default: INDEX/_reports/reenrich-*.json)")

    p = _command(jobs, "composite", C.composite,
                 "monthly composite (median, mean, min, max, count, percentile; NDVI) over "
                 "an AOI on any grid into Zarr")
    _index(p, flag=True)
    _aoi(p)
    p.add_argument("--bands", type=A.bands, required=True, help="bands to composite")
    p.add_argument("--out", required=True, help="Zarr store to write (path or URL)")
    p.add_argument("--tile-size", type=int, default=512,
                   help="output pixels per tile side, also the Zarr chunks (default: 512)")
    _filters(p)
    _composite_grid(p)
    p.add_argument("--reducer", default="median",
                   help="median (default), mean, min, max, count (valid observations), or a "
                        "percentile pQ, e.g. p90")
    p.add_argument("--mask", metavar="BAND:V,V,...",
                   help="drop pixels whose quality band holds these values before reducing, "
                        "e.g. SCL:3,8,9,10 (cloud shadow, clouds, cirrus)")
    p.add_argument("--red", default="B04", help="red band for NDVI (default: B04)")
    p.add_argument("--nir", default="B08", help="near-infrared band for NDVI (default: B08)")
    p.add_argument("--no-ndvi", action="store_true", help="do not write the ndvi variable")
    p.add_argument("--in-flight", type=int, metavar="N",
                   help="tiles submitted at once (default: twice the cluster's threads)")
    p.add_argument("--report", help="JSON report path (default: OUT.composite-<time>.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")

    p = _command(jobs, "export-chips", C.export_chips,
                 "training chips by split and label into per-split Zarr stores")
    _index(p, flag=True)
    p.add_argument("--bands", type=A.bands, required=True, help="bands to export")
    p.add_argument("--out", required=True, help="folder or URL of the per-split stores")
    p.add_argument("--chip-size", type=int, default=256, help="pixels per chip side")
    p.add_argument("--geometry-column", type=A.optional, default="aoi",
                   help="WKB column of AOIs to centre chips on ('none': the image centre)")
    p.add_argument("--geometry-crs", default="EPSG:4326",
                   help="CRS of the geometry column (default: EPSG:4326)")
    p.add_argument("--mode", choices=("center", "grid"), default="center",
                   help="one chip at each AOI's centre, or a grid of chips over it")
    p.add_argument("--split-column", default="split", help="column naming each record's split")
    p.add_argument("--label-column", type=A.optional, default="label",
                   help="column of labels ('none': no labels)")
    p.add_argument("--batch-size", type=int, default=32, help="chips per region and shard")
    p.add_argument("--cloud-cover-lt", type=float, metavar="PERCENT",
                   help="only records with eo:cloud_cover below this")
    _where(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing split stores")


def _composite_grid(p) -> None:
    """The output grid and observation options of ``workflow composite``."""
    p.add_argument("--crs", help="output CRS, e.g. EPSG:3035 (default: the CRS of most records)")
    p.add_argument("--resolution", type=A.resolution, metavar="RES[,RES_Y]",
                   help="output pixel size in CRS units (default: the finest native one)")
    p.add_argument("--resampling", default="nearest", choices=RESAMPLING,
                   help="resampling kernel onto the output grid (default: nearest)")
    p.add_argument("--groupby", choices=(*GROUPBY, "none"), default="solar_day",
                   help="one observation per satellite pass (solar_day, default), per equal "
                        "time, per id, or per record (none)")
    p.add_argument("--rescale", action="store_true",
                   help="reduce physical values from the STAC raster:bands scale and offset")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``rasteret-dask`` argument parser (also used by the tests and the docs)."""
    parser = argparse.ArgumentParser(prog="rasteret-dask", description=_DESCRIPTION,
                                     parents=[_flags(computes=False, top=True)])
    parser.add_argument("--version", action="version", version=f"rasteret-dask {_version()}")
    parser.set_defaults(cluster=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = _command(commands, "demo", C.demo, "run the end-to-end demo on generated data",
                 computes=False)
    p.add_argument("--workspace", default="demo_workspace",
                   help="folder the demo writes into (default: demo_workspace)")
    _build_commands(commands)
    _read_commands(commands)
    _workflow_commands(commands)
    return parser
