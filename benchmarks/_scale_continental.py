"""Parts (a), (b) and (d) of ``scale_bench.py`` over the synthetic continental archive
(``rasteret_dask.testing.continental``) served by ``RangeServerProcess`` with per-record URLs:

(a) a monthly median composite of the whole archive in EPSG:3035 at a coarse resolution (read
    from overviews) on a cluster of 2 worker processes: client peak RSS, time to first task,
    wall time, requests;
(b) the same composite at 10 m over a square region across UTM zones 32 and 33 (centred on
    12 E, 48 N) on 1 and 2 worker processes: speedup, decoded MB/s per worker core, CPU seconds
    of workers, scheduler, server and client;
(d) the region composited by odc-stac (``odc.stac.load(..., chunks=...)``, nodata masked,
    ``groupby("time.month").median()``) on the 2-worker cluster: time against ours, and the
    outputs compared where both are defined (nearest resampling).

Every measured job runs in a spawned client process (``_scale_common.run_client``).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
from collections import namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely
from distributed import WorkerPlugin

from rasteret_dask.testing.continental import ContinentalArchive
from rasteret_dask.testing.dask_cluster import DaskProcessCluster

from _scale_common import run_client  # isort: skip

Continental = namedtuple("Continental", "spec a_resolution a_tile a_budget region_km days "
                         "b_tile c_side_km budget cap_gb")
BANDS = ("B04", "B08")
_PLUGIN = "scale-bench-first-task"
_WARM = ("imagecodecs", "zarr", "rasterio", "odc.geo", "rasteret_dask.read",
         "rasteret_dask.workflows")


class FirstTask(WorkerPlugin):
    """When this worker started executing its first task (``time.time()``)."""

    def __init__(self) -> None:
        self.first: float | None = None

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing" and self.first is None:
            self.first = time.time()


def _first_task(dask_worker: Any) -> float | None:
    plugin = dask_worker.plugins.get(_PLUGIN)
    return None if plugin is None else plugin.first


def _warm() -> None:
    import importlib

    for name in _WARM:
        importlib.import_module(name)


def _connect(address: str):
    import cloudpickle
    from distributed import Client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack this module
    client = Client(address, set_as_default=True)
    client.run(_warm)
    client.register_plugin(FirstTask(), name=_PLUGIN)
    return client


def composite_job(address: str, index: str, out: str, kwargs: dict) -> Any:
    """Client child: ``workflows.composite(index, out=out, client=..., **kwargs)``."""
    from rasteret_dask.workflows import composite

    client = _connect(address)

    def run() -> dict:
        report = composite(index, out=out, client=client, **kwargs)
        summary = report.to_dict() if hasattr(report, "to_dict") else {}
        return {"report": {k: v for k, v in summary.items()
                           if isinstance(v, (int, float, str, list))}}
    return run


def odc_job(address: str, index: str, out: str, region_wkb: bytes, days: tuple[str, str],
            bands: tuple[str, ...], chunk: int) -> Any:
    """Client child: odc-stac's monthly median of the region (items built before the run)."""
    import odc.stac
    from odc.geo.geom import Geometry

    import rasteret_dask as rd
    from rasteret_dask import schema as S
    from rasteret_dask.testing.continental_items import record_items

    from _common import GDAL_ENV  # isort: skip

    client = _connect(address)
    odc.stac.configure_rio(cloud_defaults=True, client=client, **GDAL_ENV)
    region = shapely.from_wkb(region_wkb)
    columns = [S.ID, S.DATETIME, S.GEOMETRY, S.ASSETS, S.EPSG, S.CLOUD_COVER, "platform",
               "s2:mgrs_tile", *(S.metadata_column(b) for b in bands)]
    table = rd.load(index).subset(geometries=_lonlat(region), date_range=list(days)).to_table(
        columns=columns)
    items = record_items(table, bands)

    def run() -> dict:
        ds = odc.stac.load(items, bands=list(bands), crs="EPSG:3035", resolution=10,
                           geopolygon=Geometry(region, "EPSG:3035"), groupby="solar_day",
                           resampling="nearest", chunks={"x": chunk, "y": chunk})
        valid = ds.where(ds != 0).astype("float32").chunk({"time": -1})
        monthly = valid.groupby("time.month").median()
        monthly.to_zarr(out, compute=True)
        return {"items": len(items)}
    return run


def _lonlat(region: shapely.Polygon) -> shapely.Polygon:
    to = pyproj.Transformer.from_crs(3035, 4326, always_xy=True)
    return shapely.transform(shapely.segmentize(region, 2000.0), to.transform, interleaved=False)


def region_3035(side_km: float) -> shapely.Polygon:
    """A square of ``side_km`` in EPSG:3035 centred on 12 E 48 N (UTM zones 32 | 33)."""
    x, y = pyproj.Transformer.from_crs(4326, 3035, always_xy=True).transform(12.0, 48.0)
    half = side_km * 500.0
    return shapely.box(round(x - half, -1), round(y - half, -1), round(x + half, -1),
                       round(y + half, -1))


def decoded_bytes(archive: ContinentalArchive, region: shapely.Polygon,
                  days: tuple[str, str], bands: tuple[str, ...]) -> tuple[int, int]:
    """(records, bytes decoded at full resolution) of a read of ``region`` (EPSG:3035): every
    tile of every record's band that meets the region in the record's CRS."""
    from rasteret_dask import schema as S

    table = archive.load().subset(geometries=_lonlat(region), date_range=list(days)).to_table(
        columns=[S.EPSG, *(S.metadata_column(b) for b in bands)])
    total, shapes = 0, {}
    for epsg in set(table[S.EPSG].to_pylist()):
        to = pyproj.Transformer.from_crs(3035, epsg, always_xy=True)
        shapes[epsg] = shapely.transform(shapely.segmentize(region, 1000.0), to.transform,
                                         interleaved=False)
    for row in table.to_pylist():
        for band in bands:
            md = row[S.metadata_column(band)]
            a, _, c, _, e, f = md["transform"]
            tw, th = md["tile_width"], md["tile_height"]
            cols = np.arange(-(-md["image_width"] // tw))
            rows = np.arange(-(-md["image_height"] // th))
            x0, y0 = np.meshgrid(c + a * tw * cols, f + e * th * rows)
            boxes = shapely.box(x0, y0 + e * th, x0 + a * tw, y0)
            hits = int(shapely.intersects(boxes, shapes[row[S.EPSG]]).sum())
            total += hits * tw * th * np.dtype(md["dtype"]).itemsize
    return table.num_rows, total


def _cpu(cpu: dict) -> str:
    return ", ".join(f"{k} {cpu.get(k, 0.0):.1f}" for k in ("workers", "scheduler", "server",
                                                              "client", "other"))


def _bound(one: dict, cores: int) -> str:
    """How fast the 2-worker run can be at best on this machine: the CPU seconds every process
    spent in the 1-worker run (server, scheduler and client share the cores with the workers)
    spread over all cores, and the speedup that allows."""
    parts = ("workers", "server", "scheduler", "client")
    cpu = {k: one["cpu"].get(k, 0.0) for k in parts}
    total = sum(cpu.values())
    floor = total / cores
    terms = " + ".join(f"{k} {v:.1f}" for k, v in cpu.items())
    return (f"the 1-worker run's CPU s of every process ({terms} = {total:.1f}) on {cores} "
            f"cores: a 2-worker run takes >= {floor:.1f} s, at most "
            f"{one['seconds'] / floor:.2f}x")


def _probe(cluster: DaskProcessCluster, out: Path) -> Any:
    """After a run: when its first task started (s after ``went``), tiles marked done in the
    store ``out`` (the composite's ``_done`` markers; None without them)."""
    def probe(went: float) -> dict:
        import cloudpickle
        from distributed import Client

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        with Client(cluster.address, set_as_default=False) as client:
            firsts = [t for t in client.run(_first_task).values() if t is not None]
        markers = out / "_done"
        done = len(list(markers.glob("tile-*"))) if markers.is_dir() else None
        return {"first_task": min(firsts) - went if firsts else None, "tiles_done": done}
    return probe


def _run(job, kwargs: dict, cluster: DaskProcessCluster, server, budget: float) -> dict:
    from distributed import Client

    with Client(cluster.address, set_as_default=False) as probe:
        scheduler = probe.run_on_scheduler(os.getpid)
    servers = [p.pid for p in multiprocessing.active_children() if p.name == "RangeServerProcess"]
    pids = {"workers": cluster.worker_pids(), "scheduler": [scheduler], "server": servers}
    requests, sent = server.count(), server.bytes_sent
    out = run_client(job, kwargs, pids, budget, _probe(cluster, Path(kwargs["out"])))
    out["requests"], out["bytes"] = server.count() - requests, server.bytes_sent - sent
    return out


def _ok(out: dict, *, stopped_ok: bool = False) -> bool:
    """Whether a run gave figures; prints why not."""
    if out.get("error"):
        print(f"  unavailable: {out['error']}")
        return False
    if out.get("stopped") and not stopped_ok:
        print(f"  unavailable: {out['stopped']}")
        return False
    return True


def _a_grid(archive: ContinentalArchive, resolution: float):
    """Part (a)'s output grid: the archive's bbox in EPSG:3035, anchored at ``resolution``."""
    from rasteret_dask.plan.output_grid import anchored_geobox

    west, south, east, north = archive.spec.bbox
    to = pyproj.Transformer.from_crs(4326, 3035, always_xy=True)
    shape = shapely.transform(shapely.segmentize(shapely.box(west, south, east, north), 0.25),
                              to.transform, interleaved=False)
    return anchored_geobox(tuple(shape.bounds), pyproj.CRS.from_epsg(3035),
                           (resolution, resolution))


def part_a(cfg: Continental, archive: ContinentalArchive, server, work: Path) -> None:
    from _scale_floor import overview_floor  # isort: skip

    west, south, east, north = archive.spec.bbox
    print(f"\na. Monthly median composite of the whole archive ({west:g}..{east:g} E, "
          f"{south:g}..{north:g} N, {archive.records:,} records, {archive.spec.months} months) "
          f"in EPSG:3035 at {cfg.a_resolution:g} m, resampling 'average' (overviews), tiles "
          f"{cfg.a_tile}, bands {', '.join(BANDS)}; 2 worker processes x 1 thread")
    floor = overview_floor(archive, _a_grid(archive, cfg.a_resolution), cfg.a_tile, BANDS)
    print(f"  read                 {floor.describe()} (COGs with "
          f"{archive.spec.overview_count or 'AUTO'} overview levels); {floor.reads:,} reads "
          f"(record x band x output tile, one request each) over {floor.output_tiles} output "
          f"tiles, {floor.compressed / 1e9:,.1f} GB")
    kwargs = {"aoi": shapely.box(west, south, east, north), "aoi_crs": 4326,
              "bands": list(BANDS), "crs": "EPSG:3035", "resolution": cfg.a_resolution,
              "resampling": "average", "tile_size": cfg.a_tile, "reducer": "median"}
    with DaskProcessCluster(n_workers=2, nthreads=1, memory_limit="4GiB") as cluster:
        out = _run(composite_job, {"address": cluster.address, "index": str(archive.index_path),
                                   "out": str(work / "a.zarr"), "kwargs": kwargs},
                   cluster, server, cfg.a_budget)
    if not _ok(out, stopped_ok=True):
        return
    first = out.get("first_task")
    if out.get("report"):
        print(f"  report               {out['report']}")
    print(f"  client peak RSS      {out['peak_rss'] / 1e6:,.0f} MB (issue: <= 1 GB: "
          f"{'met' if out['peak_rss'] <= 1e9 else 'NOT met'})")
    print("  time to first task   " + ("n/a" if first is None else
          f"{first:.1f} s (issue: <= 30 s: {'met' if first <= 30 else 'NOT met'})"))
    wall = f"{out['seconds']:.1f} s"
    if out.get("stopped"):
        grid = _grid_tiles(work / "a.zarr", cfg.a_tile)
        done = out.get("tiles_done")
        wall = f"{out['stopped']}: {done} of {grid} grid tiles finished"
        if out["requests"]:
            rate = out["requests"] / out["seconds"]
            wall += (f"; {rate:,.0f} reads/s, all {floor.reads:,} at this rate: "
                     f"~{floor.reads / rate / 60:,.0f} min")
    print(f"  wall time            {wall}; requests {out['requests']:,}, "
          f"{out['bytes'] / 1e9:,.2f} GB served")
    print(f"  CPU s                {_cpu(out['cpu'])}")
    server_cpu = out["cpu"].get("server", 0.0) / out["requests"] if out["requests"] else None
    print(f"  floor                {floor.floor(server_cpu):,.0f} s on {floor.cores} cores: "
          f"{floor.reads:,} tiles inflated and the level's rows un-predicted by imagecodecs "
          f"{floor.rows_seconds:,.0f} s (whole tiles: {floor.decode_seconds:,.0f} s)"
          + ("" if server_cpu is None else
             f" + the server's {server_cpu * 1000:.2f} ms CPU per request "
             f"{server_cpu * floor.reads / floor.cores:,.0f} s"))
    shutil.rmtree(work / "a.zarr", ignore_errors=True)


def _grid_tiles(store: Path, tile: int) -> int | None:
    """Tiles of a composite store's grid (the tiles outside the AOI included)."""
    import xarray as xr

    try:
        height, width = xr.open_zarr(store)[BANDS[0]].shape[-2:]
    except (OSError, KeyError, ValueError):
        return None
    return -(-height // tile) * -(-width // tile)


def part_bd(cfg: Continental, archive: ContinentalArchive, server, work: Path) -> None:
    from _scale_compare import compare_stores  # isort: skip

    region = region_3035(cfg.region_km)
    records, decoded = decoded_bytes(archive, region, cfg.days, BANDS)
    print(f"\nb. The composite at 10 m (EPSG:3035, nearest) over a {cfg.region_km:g} km x "
          f"{cfg.region_km:g} km region centred on 12 E 48 N (UTM 32 | 33), {cfg.days[0]} to "
          f"{cfg.days[1]}: {records:,} records x {len(BANDS)} bands, {decoded / 1e9:,.1f} GB "
          f"decoded at full resolution; tiles {cfg.b_tile}")
    kwargs = {"aoi": region, "aoi_crs": 3035, "bands": list(BANDS), "crs": "EPSG:3035",
              "resolution": 10, "resampling": "nearest", "tile_size": cfg.b_tile,
              "reducer": "median", "date_range": list(cfg.days), "ndvi": False}
    ours: dict[int, dict] = {}
    odc: dict = {}
    copies = archive.locate(_lonlat(region), BANDS)  # for (d); ours reads the same bytes
    for n in (1, 2):
        with DaskProcessCluster(n_workers=n, nthreads=1, memory_limit="4GiB") as cluster:
            ours[n] = _run(composite_job, {
                "address": cluster.address, "index": str(archive.index_path),
                "out": str(work / f"b{n}.zarr"), "kwargs": kwargs}, cluster, server, 4 * 3600)
            if n == 2:
                odc = _run(odc_job, {
                    "address": cluster.address, "index": str(archive.index_path),
                    "out": str(work / "d.zarr"), "region_wkb": shapely.to_wkb(region),
                    "days": cfg.days, "bands": BANDS, "chunk": cfg.b_tile},
                    cluster, server, 4 * 3600)
    if all(_ok(ours[n]) for n in (1, 2)):
        for n in (1, 2):
            out = ours[n]
            print(f"  {n} worker{'s' if n > 1 else ' '}            {out['seconds']:7.1f} s; "
                  f"{decoded / 1e6 / out['seconds'] / n:,.0f} MB/s decoded per worker core; "
                  f"requests {out['requests']:,}; CPU s: {_cpu(out['cpu'])}")
        speedup = ours[1]["seconds"] / ours[2]["seconds"]
        print(f"  speedup 1 -> 2       {speedup:.2f}x (issue: >= 1.8x: "
              f"{'met' if speedup >= 1.8 else 'NOT met'})")
        print("  machine bound        " + _bound(ours[1], cores=2))
        if speedup < 1.8:
            for n in (1, 2):
                busy = ours[n]["cpu"]["workers"] / (ours[n]["seconds"] * n)
                print(f"  bound ({n} worker{'s' if n > 1 else ''})     workers busy "
                      f"{100 * busy:.0f}% of their cores; CPU s {_cpu(ours[n]['cpu'])}; "
                      f"machine load from other processes {ours[n]['cpu']['other']:.1f} s")
        print("  outputs 1 vs 2       " + compare_stores(work / "b1.zarr", work / "b2.zarr",
                                                         BANDS, odc=False))
    print(f"\nd. odc-stac over the same region and dates on the 2-worker cluster: "
          f"odc.stac.load(items, crs=3035, resolution=10, groupby='solar_day', chunks="
          f"{cfg.b_tile}), nodata masked, .groupby('time.month').median(), to_zarr; "
          f"{len(copies)} located COG copies ({sum(p.stat().st_size for p in copies) / 1e9:.1f}"
          f" GB) give GDAL each record's georeferencing")
    if _ok(odc):
        print(f"  odc-stac             {odc['seconds']:7.1f} s ({odc['items']:,} items); "
              f"requests {odc['requests']:,}; CPU s: {_cpu(odc['cpu'])}")
        if _ok(ours[2]):
            ratio = odc["seconds"] / ours[2]["seconds"]
            print(f"  ours vs odc-stac     {ratio:.2f}x faster (issue: >= 2x: "
                  f"{'met' if ratio >= 2 else 'NOT met'})")
            print("  outputs              " + compare_stores(work / "b2.zarr", work / "d.zarr",
                                                           BANDS, odc=True))
    for name in ("b1.zarr", "b2.zarr", "d.zarr"):
        shutil.rmtree(work / name, ignore_errors=True)
