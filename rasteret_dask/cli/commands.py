"""The subcommands of ``rasteret-dask``: each parses nothing, runs one library call, prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from . import args as A

__all__ = ["demo", "info", "build_stac", "build_table", "enrich", "read", "workflow",
           "WORKFLOWS"]


@contextlib.contextmanager
def _client(target: str | None) -> Iterator[Any]:
    """The ``--cluster`` target as a distributed Client (None: local threads), closed after."""
    if target is None:
        yield None
        return
    from ..cluster import resolve_client

    client, owned = resolve_client(target)
    print(f"cluster: {client.dashboard_link or client.scheduler.address}", file=sys.stderr)
    try:
        yield client
    finally:
        if owned:
            client.close()


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet


def demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.workspace)
    return 0


def info(args: argparse.Namespace) -> int:
    from ..collection import load

    print(json.dumps(load(args.index).describe(), default=str, indent=2))
    return 0


def build_stac(args: argparse.Namespace) -> int:
    from ..build import build_from_stac

    A.date_range(args.date_range)
    with _client(args.cluster) as client:
        collection = build_from_stac(
            name=args.name, stac_api=args.stac_api, collection=args.collection, bbox=args.bbox,
            date_range=tuple(args.date_range), workspace_dir=args.workspace, query=args.query,
            data_source=args.data_source, band_map=args.band_map, max_items=args.max_items,
            client=client, enrich_cog=not args.no_enrich, progress=_progress(args))
    print(f"built {collection.path}: {len(collection)} records, bands {collection.bands}")
    return 0


def build_table(args: argparse.Namespace) -> int:
    from ..build import build_from_table

    with _client(args.cluster) as client:
        collection = build_from_table(
            args.table, name=args.name, workspace_dir=args.workspace,
            data_source=args.data_source, band_codes=args.band_map,
            href_column=args.href_column, client=client, enrich_cog=not args.no_enrich,
            progress=_progress(args), overwrite=args.overwrite)
    print(f"built {collection.path}: {len(collection)} records, bands {collection.bands}")
    return 0


def enrich(args: argparse.Namespace) -> int:
    from ..collection import load

    collection = load(args.index)
    with _client(args.cluster) as client:
        report = collection.enrich(args.bands, client=client, only_missing=not args.all,
                                   progress=_progress(args))
    print(report)
    return 1 if report.failed else 0


def read(args: argparse.Namespace) -> int:
    from ..collection import load
    from .output import describe_output, output_format, write_dataset

    fmt = output_format(args.out, args.format)
    collection = load(args.index)
    filters: dict[str, Any] = {}
    if args.date_range:
        filters["date_range"] = A.date_range(args.date_range)
    if args.cloud_cover_lt is not None:
        filters["cloud_cover_lt"] = args.cloud_cover_lt
    started = time.perf_counter()
    ds = collection.get_xarray(args.aoi, args.bands, geometry_crs=args.aoi_crs,
                               all_touched=args.all_touched, **filters)
    if isinstance(ds, list):
        raise ValueError("read takes one AOI geometry (a FeatureCollection gave several)")
    with _client(args.cluster) as client:
        if client is None and _progress(args):
            from dask.diagnostics import ProgressBar

            with ProgressBar(minimum=1.0):
                ds = ds.compute(scheduler="threads")
        elif client is not None:
            ds = client.compute(ds).result()
        target = write_dataset(ds, args.out, fmt)
    print(f"wrote {target} ({fmt}): {describe_output(ds)} in {time.perf_counter() - started:.1f} s")
    return 0


def _reenrich(args: argparse.Namespace) -> int:
    from ..workflows.reenrich import reenrich

    with _client(args.cluster) as client:
        report = reenrich(args.index, client=client, bands=args.bands, stac=not args.no_stac,
                          until=args.until, report_path=args.report, progress=_progress(args))
    print(report.summary())
    print(f"report: {report.report_path}")
    return report.exit_code


def _composite(args: argparse.Namespace) -> int:
    from ..workflows import composite

    filters = {"cloud_cover_lt": args.cloud_cover_lt} if args.cloud_cover_lt is not None else {}
    with _client(args.cluster) as client:
        report = composite(args.index, aoi=args.aoi, aoi_crs=args.aoi_crs, bands=args.bands,
                           out=args.out, tile_size=args.tile_size,
                           date_range=A.date_range(args.date_range), red=args.red,
                           nir=args.nir, ndvi=not args.no_ndvi, client=client,
                           overwrite=args.overwrite, **filters)
    print(json.dumps(report.to_dict(), default=str))
    return 0


def _export_chips(args: argparse.Namespace) -> int:
    from ..workflows import export_chips

    filters = {"cloud_cover_lt": args.cloud_cover_lt} if args.cloud_cover_lt is not None else {}
    with _client(args.cluster) as client:
        report = export_chips(args.index, bands=args.bands, out=args.out,
                              chip_size=args.chip_size, geometry_column=args.geometry_column,
                              geometry_crs=args.geometry_crs, mode=args.mode,
                              split_column=args.split_column, label_column=args.label_column,
                              batch_size=args.batch_size, client=client,
                              overwrite=args.overwrite, **filters)
    print(json.dumps(report.to_dict(), default=str))
    return 0


def _workflow_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("reenrich", parents=[common],
                            help="new STAC items + missing/failed metadata; JSON report")
    p.add_argument("--index", required=True)
    p.add_argument("--bands", type=A.bands)
    p.add_argument("--until", help="search STAC up to this date (default: now)")
    p.add_argument("--no-stac", action="store_true", help="only enrich, do not search STAC")
    p.add_argument("--report", help="report path (default: INDEX/_reports/reenrich-*.json)")
    p.set_defaults(run=_reenrich)

    p = commands.add_parser("composite", parents=[common],
                            help="monthly median composite (+NDVI) over an AOI into Zarr")
    p.add_argument("--index", required=True)
    p.add_argument("--aoi", type=A.aoi, required=True)
    p.add_argument("--aoi-crs", default="EPSG:4326")
    p.add_argument("--bands", type=A.bands, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tile-size", type=int, default=512)
    p.add_argument("--date-range", nargs=2, metavar=("START", "END"))
    p.add_argument("--cloud-cover-lt", type=float)
    p.add_argument("--red", default="B04")
    p.add_argument("--nir", default="B08")
    p.add_argument("--no-ndvi", action="store_true", help="do not write the ndvi variable")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.set_defaults(run=_composite)

    p = commands.add_parser("export-chips", parents=[common],
                            help="training chips by split/label into per-split Zarr")
    p.add_argument("--index", required=True)
    p.add_argument("--bands", type=A.bands, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--chip-size", type=int, default=256)
    p.add_argument("--geometry-column", type=A.optional, default="aoi",
                   help="WKB column of AOIs to centre chips on ('none': the image centre)")
    p.add_argument("--geometry-crs", default="EPSG:4326")
    p.add_argument("--mode", choices=("center", "grid"), default="center")
    p.add_argument("--split-column", default="split")
    p.add_argument("--label-column", type=A.optional, default="label")
    p.add_argument("--batch-size", type=int, default=32, help="chips per region and shard")
    p.add_argument("--cloud-cover-lt", type=float)
    p.add_argument("--overwrite", action="store_true", help="replace existing split stores")
    p.set_defaults(run=_export_chips)


WORKFLOWS = ("reenrich", "composite", "export-chips")


def workflow(args: argparse.Namespace) -> int:
    """``workflow NAME ...``: parse the workflow's own arguments and run it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cluster", help="connect() target: address or cluster YAML")
    common.add_argument("--quiet", action="store_true")
    parser = argparse.ArgumentParser(prog=f"rasteret-dask workflow {args.name}")
    commands = parser.add_subparsers(dest="name", required=True)
    _workflow_parsers(commands, common)
    options = parser.parse_args([args.name, *args.rest])
    if options.cluster is None and args.cluster is not None:
        options.cluster = args.cluster
    return options.run(options)
