"""The subcommands of ``rasteret-dask``: each parses nothing, runs one library call, prints.

Their parsers are in ``cli/parser.py``."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from . import args as A

__all__ = ["demo", "info", "build_stac", "build_table", "enrich", "read", "reenrich", "composite",
           "export_chips"]


@contextlib.contextmanager
def _client(target: str | None) -> Iterator[Any]:
    """The ``--cluster`` target as a distributed Client (None: local threads), closed after
    if this command created it."""
    from ..runner import using_client

    with using_client(target) as client:
        if client is not None:
            print(f"cluster: {_where_to_watch(client)}", file=sys.stderr)
        yield client


def _where_to_watch(client: Any) -> str:
    """The dashboard link when this environment can serve it (bokeh), else the scheduler."""
    address = client.scheduler.address
    if importlib.util.find_spec("bokeh") is None:
        return f"{address} (pip install 'bokeh>=3.1' for the dashboard)"
    try:
        link = client.dashboard_link
    except (KeyError, AttributeError):  # the scheduler runs no dashboard
        link = None
    return f"{address}, dashboard {link}" if link else address


def _subset_filters(args: argparse.Namespace) -> dict[str, Any]:
    """``--cloud-cover-lt`` and ``--where`` as ``Collection.subset`` arguments."""
    filters: dict[str, Any] = {}
    if args.cloud_cover_lt is not None:
        filters["cloud_cover_lt"] = args.cloud_cover_lt
    if args.where:
        filters["where"] = args.where
    return filters


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet


def demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.workspace)
    return 0


def info(args: argparse.Namespace) -> int:
    from ..collection import load

    print(json.dumps(load(args.index).describe().to_dict(), default=str, indent=2))
    return 0


def build_stac(args: argparse.Namespace) -> int:
    from ..build import build_from_stac

    A.date_range(args.date_range)
    with _client(args.cluster) as client:
        collection = build_from_stac(
            name=args.name, stac_api=args.stac_api, collection=args.collection, bbox=args.bbox,
            date_range=tuple(args.date_range), workspace_dir=args.workspace, query=args.query,
            data_source=args.data_source, band_map=args.band_map, max_items=args.max_items,
            client=client, enrich_cog=not args.no_enrich, progress=_progress(args),
            timeout=args.timeout)
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
    filters = _subset_filters(args)
    if args.date_range:
        filters["date_range"] = A.date_range(args.date_range)
    started = time.perf_counter()
    import dask

    from ..read.plan import LEND_TILES_KEY

    # streamed below: fetch groups do not borrow tiles from each other, so none is pinned by
    # its neighbour and memory stays bounded by the groups in flight
    with dask.config.set({LEND_TILES_KEY: False}):
        ds = collection.get_xarray(args.aoi, args.bands, geometry_crs=args.aoi_crs,
                                   all_touched=args.all_touched, crs=args.crs,
                                   resolution=args.resolution, resampling=args.resampling,
                                   groupby=args.groupby, rescale=args.rescale, **filters)
    if isinstance(ds, list):
        raise ValueError("read takes one AOI geometry (a FeatureCollection gave several)")
    with _client(args.cluster) as client:  # streamed: each chunk read, written, released
        target = write_dataset(ds, args.out, fmt, client=client, progress=_progress(args),
                               description="read")
    print(f"wrote {target} ({fmt}): {describe_output(ds)} in {time.perf_counter() - started:.1f} s")
    return 0


def reenrich(args: argparse.Namespace) -> int:
    from ..workflows.reenrich import reenrich as run_reenrich

    with _client(args.cluster) as client:
        report = run_reenrich(args.index, client=client, bands=args.bands, stac=not args.no_stac,
                          until=args.until, report_path=args.report, progress=_progress(args),
                          lookback=args.lookback, full=args.full, verify=args.verify,
                          verify_fraction=args.verify_fraction, prune=args.prune)
    print(report.summary())
    print(f"report: {report.report_path}")
    return report.exit_code


def _quality_mask(text: str | None) -> dict[str, Any] | None:
    """``--mask SCL:3,8,9,10`` as ``{"band": "SCL", "drop": [3, 8, 9, 10]}``."""
    if text is None:
        return None
    band, sep, values = text.partition(":")
    try:
        drop = [int(v) for v in values.split(",") if v.strip()]
    except ValueError:
        drop = None
    if not sep or not band or drop is None:
        raise ValueError(f"--mask {text!r}: give BAND:V,V,... with integer values, e.g. "
                         "SCL:3,8,9,10")
    return {"band": band, "drop": drop}


def composite(args: argparse.Namespace) -> int:
    from ..workflows import composite as run_composite
    from ..workflows.composite import default_report_path

    filters = _subset_filters(args)
    with _client(args.cluster) as client:
        report = run_composite(args.index, aoi=args.aoi, aoi_crs=args.aoi_crs, bands=args.bands,
                               out=args.out, tile_size=args.tile_size,
                               date_range=A.date_range(args.date_range), crs=args.crs,
                               resolution=args.resolution, resampling=args.resampling,
                               reducer=args.reducer, mask=_quality_mask(args.mask),
                               groupby=None if args.groupby == "none" else args.groupby,
                               rescale=args.rescale, red=args.red, nir=args.nir,
                               ndvi=not args.no_ndvi, client=client, in_flight=args.in_flight,
                               overwrite=args.overwrite, progress=_progress(args),
                               report_path=args.report or default_report_path(args.out),
                               **filters)
    print(json.dumps(report.to_dict(), default=str))
    return report.exit_code


def export_chips(args: argparse.Namespace) -> int:
    from ..workflows import export_chips as run_export_chips

    filters = _subset_filters(args)
    with _client(args.cluster) as client:
        report = run_export_chips(args.index, bands=args.bands, out=args.out,
                              chip_size=args.chip_size, geometry_column=args.geometry_column,
                              geometry_crs=args.geometry_crs, mode=args.mode,
                              split_column=args.split_column, label_column=args.label_column,
                              batch_size=args.batch_size, client=client,
                              overwrite=args.overwrite, progress=_progress(args), **filters)
    print(json.dumps(report.to_dict(), default=str))
    return 0
