"""Parts 1 and 2 of ``scale_bench.py``: enrichment and the composite workflow on 1 vs 2 worker
processes (Sentinel-2-like scenes served by ``RangeServerProcess`` with 40 ms latency)."""

from __future__ import annotations

import importlib
import os
import statistics
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyproj
import shapely
import xarray as xr

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.testing.cogs import S2_TRANSFORM, write_cog
from rasteret_dask.testing.dask_cluster import DaskProcessCluster
from rasteret_dask.testing.server_process import RangeServerProcess
from rasteret_dask.testing.tables import synthetic_table
from rasteret_dask.workflows import composite

from _scale_common import LATENCY, timed  # isort: skip

EPSG = 32633
BANDS = ("B04", "B08")
Config = namedtuple("Config", "enrich_records enrich_months scenes scene_size blocksize "
                    "tile_size runs plan_rows plan_aois budget mem_cap_gb")  # AOIs: (label, sides)


def assets_column(hrefs: dict[str, list[str]]) -> pa.StructArray:
    n = len(next(iter(hrefs.values())))
    return pa.StructArray.from_arrays(
        [pa.StructArray.from_arrays([pa.array(v, pa.string()), pa.array(np.zeros(n, np.int32))],
                                    fields=list(S.ASSET_TYPE)) for v in hrefs.values()],
        names=list(hrefs))


def prepare(cfg: Config, served: Path, server, work: Path):
    """Scenes (whole-pixel shifts, two a month), their enriched index and an AOI over most of
    them (EPSG:32633); the unenriched index of part 1 (hrefs: hard links to the scenes)."""
    (served / "enrich").mkdir()
    a, _, c, _, e, f = S2_TRANSFORM
    to_lonlat = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True)
    files, footprints, size = [], [], cfg.scene_size
    for k in range(cfg.scenes):
        x0, y0 = c + a * ((37 * k) % 160), f + e * ((23 * k) % 120)
        files.append({band: write_cog(served / f"composite/scene{k}_{band}.tif", width=size,
                                      height=size, blocksize=cfg.blocksize, predictor=2, nodata=0,
                                      transform=(a, 0.0, x0, 0.0, e, y0), seed=10 * k + b)
                      for b, band in enumerate(BANDS)})
        box = shapely.segmentize(shapely.box(x0, y0 + e * size, x0 + a * size, y0), 1000.0)
        footprints.append(shapely.transform(box, to_lonlat.transform, interleaved=False))
    dates = [f"2024-{1 + k // 2:02d}-{5 + 10 * (k % 2):02d}T10:06:31" for k in range(cfg.scenes)]
    table = pa.table({
        S.ID: [f"S2_T33UUP_{k}" for k in range(cfg.scenes)],
        S.DATETIME: pa.array(np.array(dates, "datetime64[us]")).cast(S.DATETIME_TYPE),
        S.GEOMETRY: pa.array(shapely.to_wkb(footprints), pa.binary()),
        S.ASSETS: assets_column({b: [server.href(f"composite/{fs[b].name}") for fs in files]
                                 for b in BANDS})})
    scenes = rd.build_from_table(table, name="composite", workspace_dir=work, enrich_cog=False)
    assert scenes.enrich(progress=False).failed == 0
    lo, hi = 0.05 * size + 0.3, 0.95 * size + 0.6  # scene-0 pixels, not tile-aligned
    aoi = shapely.box(c + a * lo, f + e * hi, c + a * hi, f + e * lo)
    hrefs: dict[str, list[str]] = {band: [] for band in BANDS}
    for i in range(cfg.enrich_records):
        for band in BANDS:
            os.link(files[i % len(files)][band], served / f"enrich/r{i}_{band}.tif")
            hrefs[band].append(server.href(f"enrich/r{i}_{band}.tif"))
    table = synthetic_table(cfg.enrich_records, months=cfg.enrich_months, bands=BANDS, seed=1)
    table = table.set_column(table.schema.get_field_index(S.ASSETS), S.ASSETS, assets_column(hrefs))
    return rd.build_from_table(table, name="enrich", workspace_dir=work, enrich_cog=False), \
        scenes.path, aoi


def on_cluster(n: int, cfg: Config, enrich_collection, index, aoi, work: Path) -> dict:
    """Timed runs of parts 1 and 2 on a fresh DaskProcessCluster of ``n`` one-thread workers."""
    results: dict[str, list] = {"enrich": [], "composite": []}
    with DaskProcessCluster(n_workers=n, nthreads=1, memory_limit="4GiB") as cluster:
        client = rd.connect(cluster.address)
        try:
            client.run(lambda: [importlib.import_module(m) for m in (
                "imagecodecs", "zarr", "rasteret_dask.enrich", "rasteret_dask.workflows")])
            pids = {"workers": cluster.worker_pids(),
                    "scheduler": [client.run_on_scheduler(os.getpid)]}
            for _ in range(cfg.runs):
                results["enrich"].append(timed(lambda: enrich_collection.enrich(
                    client=client, only_missing=False, progress=False), pids))
            for r in range(cfg.runs):
                out = work / f"composite-{n}w-{r}.zarr"
                results["composite"].append(timed(lambda out=out: composite(
                    index, aoi=aoi, aoi_crs=EPSG, bands=list(BANDS), out=str(out),
                    tile_size=cfg.tile_size, client=client), pids) + (out,))
        finally:
            client.close()
    return results


def print_speedup(runs: dict[int, dict], part: str) -> None:
    medians = {}
    for n, result in runs.items():
        measured = result[part]
        medians[n] = statistics.median(m[0] for m in measured)
        cpu = {k: statistics.median(m[1][k] for m in measured) for k in measured[0][1]}
        print(f"  {n} worker{'s' if n > 1 else ' '}            {medians[n]:6.2f} s median (runs "
              f"{', '.join(f'{m[0]:.2f}' for m in measured)}); CPU s: workers "
              f"{cpu['workers']:.1f}, scheduler {cpu['scheduler']:.1f}, server "
              f"{cpu['server']:.1f}, main {cpu['main']:.1f}; other processes "
              f"{cpu['other']:.1f}")
    print(f"  speedup 1 -> 2       {medians[1] / medians[2]:.2f}x")


def part12(cfg: Config, work: Path) -> None:
    started = time.perf_counter()
    (work / "served" / "composite").mkdir(parents=True)
    with RangeServerProcess(work / "served", latency=LATENCY) as server:
        enrich_collection, index, aoi = prepare(cfg, work / "served", server, work)
        prepared = time.perf_counter() - started
        runs = {n: on_cluster(n, cfg, enrich_collection, index, aoi, work) for n in (1, 2)}
    print("\n1. Enrichment: collection.enrich(client=..., only_missing=False), 1 vs 2 workers")
    report = runs[2]["enrich"][-1][2]
    print(f"  records x bands      {cfg.enrich_records:,} x 2 = {cfg.enrich_records * 2:,} headers "
          f"(links to {2 * cfg.scenes} COGs), {report.partitions_total} partitions, a task each")
    print(f"  last run             {report}")
    print_speedup(runs, "enrich")
    print("\n2. Composite: rasteret_dask.workflows.composite(...), 1 vs 2 workers")
    report = runs[2]["composite"][-1][2]
    print(f"  scenes               {cfg.scenes} x {len(BANDS)} bands, {cfg.scene_size} x "
          f"{cfg.scene_size} uint16, {cfg.blocksize} px tiles, deflate + predictor 2, "
          f"{len(report.months)} month(s) (written and indexed in {prepared:.1f} s)")
    print(f"  AOI                  {report.shape[0]:,} x {report.shape[1]:,} px, tile_size "
          f"{cfg.tile_size} -> {report.tiles_total} tiles; {', '.join(report.variables)}")
    print_speedup(runs, "composite")
    one, two = (xr.open_zarr(runs[n]["composite"][0][3]) for n in (1, 2))
    differ = [v for v in one.data_vars if one[v].shape != two[v].shape
              or not np.array_equal(one[v].values, two[v].values, equal_nan=True)]
    print("  outputs 1 vs 2       " + ("DIFFER in " + ", ".join(differ) if differ else
          "identical (np.array_equal, NaNs equal): " + ", ".join(one.data_vars)
          + f", {' x '.join(map(str, one['B04'].shape))} float32 each"))

