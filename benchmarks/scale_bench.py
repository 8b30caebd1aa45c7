"""Scale benchmark: 1 vs 2 Dask worker processes, and the plan of a continental read.

1. Enrichment: records x (B04, B08), hrefs hard-linked to part 2's COGs, served by
   ``RangeServerProcess`` (child process, 40 ms latency), in 24 monthly partitions
   (``build_from_table(enrich_cog=False)``): ``collection.enrich(client=...,
   only_missing=False)`` timed on a ``DaskProcessCluster`` of 1 and of 2 one-thread workers.
2. Composite: Sentinel-2-like scenes x (B04, B08) (uint16, deflate + predictor 2) over three
   months, served and indexed alike: ``workflows.composite(...)`` over most of them, timed into
   a fresh Zarr store on both clusters; the two outputs must be equal. Parts 1-2 print median
   wall times, the speedup and CPU seconds of workers / scheduler / server / this / others.
3. A continental plan, never computed: 300,000 S2 records over Europe (MGRS-like tiles, UTM
   29-38N, 2024) x 4 bands with full ``{band}_metadata``, exported (time, size, files); then
   ``get_xarray`` is built in a child process for a 100 km and a 500 km AOI in EPSG:32633:
   records, shape, tasks, pickled graph (``pickle.dumps(dict(ds.__dask_graph__()))``), build
   time, client memory (RSS growth and high-water; tracemalloc peak of a second build) and
   ``explain``. A build past the time budget or RSS cap is stopped, cProfiled, the AOI halved.
Run: .venv/bin/python benchmarks/scale_bench.py [--quick]   (--quick: smoke test, < 1 minute)
"""

from __future__ import annotations

import _thread
import contextlib
import cProfile
import ctypes
import gc
import importlib
import multiprocessing
import os
import pickle
import pstats
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import namedtuple
from pathlib import Path

import dask.array  # noqa: F401  (imported here, not during the timed builds)
import numpy as np
import psutil
import pyarrow as pa
import pyproj
import shapely
import xarray as xr

import rasteret_dask as rd
import rasteret_dask.read  # noqa: F401
from rasteret_dask import schema as S
from rasteret_dask.testing.cogs import S2_TRANSFORM, write_cog
from rasteret_dask.testing.dask_cluster import DaskProcessCluster
from rasteret_dask.testing.server_process import RangeServerProcess
from rasteret_dask.testing.tables import synthetic_table
from rasteret_dask.workflows import composite

LATENCY = 0.040
EPSG = 32633
BANDS = ("B04", "B08")
S2_BANDS = ("B02", "B03", "B04", "B08")
CENTRE = (500_000.0, 5_300_000.0)  # zone 33, ~47.8 N 15 E: the AOIs of part 3 are centred here
Config = namedtuple("Config", "enrich_records enrich_months scenes scene_size blocksize "
                    "tile_size runs plan_rows plan_aois budget mem_cap_gb")  # AOIs: (label, sides)
FULL = Config(2000, 24, 6, 4096, 512, 1024, 2, 300_000,
              (("(a)", (100.0, 50.0)), ("(b)", (500.0, 250.0, 125.0))), 60.0, 8.0)
QUICK = Config(240, 12, 2, 1024, 256, 512, 1, 20_000,
               (("(a)", (20.0,)), ("(b)", (250.0, 125.0))), 4.0, 4.0)


def status_bytes(key: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(key + ":"))


def release_memory() -> int:
    """Free what can be freed (gc, malloc_trim), reset VmHWM; return the RSS."""
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    return status_bytes("VmRSS")


def timed(run, pids: dict[str, list[int]]) -> tuple[float, dict[str, float], object]:
    """(seconds, CPU s per group: ``pids``, "server" (other children), "main", "other"
    (the machine's other processes), result)."""
    def cpu_seconds() -> dict[str, float]:
        me, machine = psutil.Process(), psutil.cpu_times()
        known = {pid for group in pids.values() for pid in group}
        out = {"main": sum(me.cpu_times()[:2]), "other": sum(getattr(machine, f, 0.0) for f in (
            "user", "nice", "system", "irq", "softirq", "steal"))}
        for name, group in {**pids, "server": [p.pid for p in me.children(recursive=True)
                                               if p.pid not in known]}.items():
            out[name] = 0.0
            for pid in group:
                with contextlib.suppress(psutil.NoSuchProcess):
                    out[name] += sum(psutil.Process(pid).cpu_times()[:2])
        return out
    before, started = cpu_seconds(), time.perf_counter()
    result = run()
    seconds, after = time.perf_counter() - started, cpu_seconds()
    cpu = {k: after[k] - before.get(k, 0.0) for k in after}
    cpu["other"] = max(0.0, cpu["other"] - sum(v for k, v in cpu.items() if k != "other"))
    return seconds, cpu, result


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


def s2_tiles() -> list[tuple[int, float, float, bytes, str]]:
    """MGRS-like tiles: 109.8 km squares every 100 km in UTM zones 29-38N whose footprint meets
    the zone's 6 degree band and Europe (10 W - 45 E, 35 - 71 N): zone, x0, y0, WKB, name."""
    tiles, europe = [], shapely.box(-10, 35, 45, 71)
    for zone in range(29, 39):
        band = shapely.box(6 * zone - 186, 35, 6 * zone - 180, 71)
        to_lonlat = pyproj.Transformer.from_crs(32600 + zone, 4326, always_xy=True)
        for k, x0 in enumerate(np.arange(99_960.0, 800_000.0, 100_000.0)):
            for row in range(39, 80):
                y0 = row * 100_000 + 40.0
                box = shapely.segmentize(shapely.box(x0, y0 - 109_800, x0 + 109_800, y0), 20_000)
                lonlat = shapely.transform(box, to_lonlat.transform, interleaved=False)
                if lonlat.intersects(band) and lonlat.intersects(europe):
                    name = f"{zone}{'STUVWXYZ'[row // 10]}{'STUVWXYZ'[k]}{'ABCDEFGHJK'[row % 10]}"
                    tiles.append((zone, x0, y0, shapely.to_wkb(lonlat), name))
    return tiles


def s2_metadata(x0: np.ndarray, y0: np.ndarray, epsg: np.ndarray, rng) -> pa.StructArray:
    """Full ``{band}_metadata`` structs of 10980 x 10980 uint16 bands (1024 tiles, deflate,
    predictor 2, 4 overviews), 121 random tile sizes each, built from NumPy buffers."""
    n, tiles, header = len(x0), 121, 17_000
    counts = rng.integers(300_000, 2_400_000, size=(n, tiles), dtype=np.int64)
    zeros, ones = np.zeros(n), np.ones(n, np.int32)
    levels, block = np.tile(np.array([5490, 2745, 1373, 687], np.int32), n), np.full(4 * n, 1024)
    overviews = pa.StructArray.from_arrays([pa.array(levels), pa.array(levels), pa.array(
        block, pa.int32()), pa.array(block, pa.int32())], fields=list(S.OVERVIEW_TYPE))
    def lists(values, width: int) -> pa.ListArray:  # n lists of ``width`` items each
        items = values if isinstance(values, pa.Array) else pa.array(np.ravel(values))
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * width), items)
    arrays = [
        pa.array(ones * 10980), pa.array(ones * 10980), pa.array(ones * 1024),
        pa.array(ones * 1024), pa.array(np.full(n, "uint16", object), pa.string()),
        lists(np.column_stack([zeros + 10, zeros, x0, zeros, zeros - 10, y0]), 6),
        pa.array(ones * 2), pa.array(ones * 8),
        lists(header + np.cumsum(counts, axis=1) - counts, tiles), lists(counts, tiles),
        lists(np.tile([10.0, 10.0, 0.0], n), 3),
        lists(np.column_stack([zeros, zeros, zeros, x0, y0, zeros]), 6), pa.array(zeros),
        pa.array(ones), pa.array(ones), pa.array(ones), lists(np.zeros(0, np.int32), 0),
        pa.array(epsg.astype(np.int32)), pa.nulls(n, pa.binary()),
        pa.nulls(n, pa.list_(pa.int32())), lists(overviews, 4), pa.array(np.full(n, header)),
    ]
    return pa.StructArray.from_arrays(arrays, fields=list(S.METADATA_TYPE))


def europe_table(rows: int, tiles: list, seed: int = 0) -> pa.Table:
    """``rows`` records cycling over the tiles, each tile's visits spread evenly over 2024."""
    rng = np.random.default_rng(seed)
    tile, visit = np.arange(rows) % len(tiles), np.arange(rows) // len(tiles)
    days = np.floor((rng.uniform(0, 1, len(tiles))[tile] + visit) * 366.0 / np.bincount(tile)[tile])
    dates = (np.datetime64("2024-01-01T10:00", "us") + days.astype("timedelta64[D]")
             + rng.integers(0, 3600, rows).astype("timedelta64[s]"))
    zone, x0, y0, wkb, name = (np.array(v, dtype=object if i > 2 else None)
                               for i, v in enumerate(zip(*tiles, strict=True)))
    day = np.datetime_as_string(dates, unit="D")
    ids = [f"S2{'AB'[i % 2]}_{name[t]}_{d.replace('-', '')}_0_L2A"
           for i, (t, d) in enumerate(zip(tile, day, strict=True))]
    prefixes = [f"s3://sentinel-cogs/sentinel-s2-l2a-cogs/{zone[t]}/{name[t][2]}/{name[t][3:]}/"
                f"{d[:4]}/{int(d[5:7])}/{i}/" for t, d, i in zip(tile, day, ids, strict=True)]
    epsg = 32600 + zone[tile]
    return pa.table({
        S.ID: ids, S.DATETIME: pa.array(dates).cast(S.DATETIME_TYPE),
        S.GEOMETRY: pa.array(wkb[tile], pa.binary()),
        S.ASSETS: assets_column({b: [p + f"{b}.tif" for p in prefixes] for b in S2_BANDS}),
        S.CLOUD_COVER: rng.uniform(0, 100, rows), S.EPSG: pa.array(epsg.astype(np.int32)),
        "platform": pa.array(np.where(np.arange(rows) % 2, "sentinel-2b", "sentinel-2a")),
        "s2:mgrs_tile": pa.array(name[tile].astype(str)),
        **{S.metadata_column(b): s2_metadata(x0[tile], y0[tile], epsg, rng) for b in S2_BANDS}})


def guarded(call, budget: float, cap: float) -> tuple[object, float, str | None]:
    """(result, seconds, None) of ``call()``, else (None, s, why) if past budget s / cap bytes."""
    state: dict = {}

    def watchdog() -> None:
        while not state.get("done"):
            if time.perf_counter() - started > budget:
                state["why"] = f"stopped at the {budget:.0f} s budget"
            elif status_bytes("VmRSS") > cap:
                state["why"] = f"stopped at the {cap / 1e9:.0f} GB RSS cap"
            if "why" in state:
                return _thread.interrupt_main()
            time.sleep(0.05)
    thread, started, result = threading.Thread(target=watchdog), time.perf_counter(), None
    thread.start()
    try:
        result = call()
    except KeyboardInterrupt:
        if "why" not in state:
            raise
    finally:
        state["done"], seconds = True, time.perf_counter() - started
        thread.join()
    return result, seconds, state.get("why")


def plan_child(conn, index: str, side_km: float, budget: float, cap: float, profile: bool) -> None:
    """In a child process: build (never compute) the lazy read of a side_km AOI, measured."""
    aoi = shapely.Point(CENTRE).buffer(side_km * 500.0, cap_style="square")
    lonlat = shapely.transform(shapely.segmentize(aoi, 5000.0), pyproj.Transformer.from_crs(
        EPSG, 4326, always_xy=True).transform, interleaved=False)
    collection = rd.load(index).subset(**{S.EPSG: EPSG})
    out: dict = {"records": len(collection.subset(geometries=lonlat))}

    def build():
        return collection.get_xarray(aoi, list(S2_BANDS), geometry_crs=EPSG)
    base = release_memory()
    ds, out["seconds"], out["aborted"] = guarded(build, budget, cap)
    out["rss"], out["hwm"] = status_bytes("VmRSS") - base, status_bytes("VmHWM") - base
    if ds is None:
        release_memory()
        if profile:
            profiler = cProfile.Profile()
            _, out["profile_seconds"], _ = guarded(lambda: profiler.runcall(build), budget / 2, cap)
            rows = [(ct, tt, nc, f"{Path(file).parent.name}/{Path(file).name}:{line}({fn})", file)
                    for (file, line, fn), (_, nc, tt, ct, _)
                    in pstats.Stats(profiler).stats.items()]
            line = "      {:9.2f} {:9.2f} {:>10,}  {}"
            out["profile"] = (  # the package's functions by cumulative time, any by own time
                ["          cum s     own s      calls  (package functions by cumulative time)"]
                + [line.format(*r[:4]) for r in sorted(
                    (r for r in rows if "rasteret_dask" in r[4]), reverse=True)[:10]]
                + ["          (any function by own time)"]
                + [line.format(*r[:4]) for r in sorted(rows, key=lambda r: -r[1])[:6]])
        return conn.send(out)
    graph = dict(ds.__dask_graph__())
    out["shape"], out["tasks"], started = dict(ds.sizes), len(graph), time.perf_counter()
    out["pickled"] = len(pickle.dumps(graph, protocol=5))
    out["pickle_seconds"] = time.perf_counter() - started
    if out["seconds"] < budget / 2:  # explain plans again: only when that is cheap
        started = time.perf_counter()
        out["explain"] = collection.explain(aoi, list(S2_BANDS), geometry_crs=EPSG)[0]
        out["explain_seconds"] = time.perf_counter() - started
    del ds, graph
    release_memory()
    tracemalloc.start()
    _, _, why = guarded(build, 4 * budget, cap)
    out["tracemalloc"] = None if why else tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    conn.send(out)


def print_plan(label: str, side: float, out: dict) -> None:
    per_side = -(-int(side * 100) // 1024) + 1  # chunks along one side, at most
    print(f"  {label} {side:g} km x {side:g} km AOI (EPSG:{EPSG}, whole year, 4 bands)")
    print(f"    records matched      {out['records']:,}")
    rss, hwm = out.get("rss", 0) / 1e9, out.get("hwm", 0) / 1e9
    if out["aborted"]:
        print(f"    build                ABORTED: {out['aborted']} after {out['seconds']:.1f} s "
              f"(RSS +{rss:.2f} GB, high-water +{hwm:.2f} GB)")
        print(f"    would need           ~{out['records'] * 4 * per_side ** 2:,} decode tasks "
              f"(records x 4 bands x {per_side}^2 chunks, also where a record has no tile)")
        if "profile" in out:
            print(f"    cProfile of a 2nd attempt, stopped after {out['profile_seconds']:.1f} s:")
            print("\n".join(out["profile"]))
        return
    tasks, pickled, shape, e = out["tasks"], out["pickled"], out["shape"], out.get("explain")
    print(f"    output shape         {', '.join(f'{k} {v:,}' for k, v in shape.items())} each band")
    print(f"    dask tasks           {tasks:,}")
    print(f"    pickled graph        {pickled / 1e6:,.1f} MB, {pickled / tasks:.0f} B per task ("
          f"pickle.dumps(dict(ds.__dask_graph__())), protocol 5: {out['pickle_seconds']:.1f} s)")
    print(f"    build time           {out['seconds']:.2f} s (get_xarray)")
    traced = "n/a" if out["tracemalloc"] is None else f"{out['tracemalloc'] / 1e6:,.0f} MB"
    print(f"    client memory        tracemalloc peak {traced}; RSS +{rss:.2f} GB after the build,"
          f" high-water +{hwm:.2f} GB")
    print("    compute would fetch  " + (f"{e['tiles']:,} tiles, {e['compressed_bytes'] / 1e9:,.1f}"
          f" GB compressed, {e['fetch_groups']:,} fetch groups, {e['chunks']:,} chunks (explain:"
          f" {out['explain_seconds']:.1f} s)" if e else "(explain skipped: it plans again)"))


def part3(cfg: Config, work: Path) -> None:
    print("\n3. Plan for a continental job: a year of Sentinel-2 over Europe (never computed)")
    root, started = work / "europe-index", time.perf_counter()
    table = europe_table(cfg.plan_rows, tiles := s2_tiles())
    generated, nbytes = time.perf_counter(), table.nbytes
    collection = rd.build_collection_from_table(table, name="europe-2024")
    normalised, base = time.perf_counter(), release_memory()
    collection.export(root)
    exported, peak = time.perf_counter(), status_bytes("VmHWM") - base
    del table, collection
    release_memory()
    files = [p.stat().st_size for p in root.rglob("*") if p.is_file()]
    print(f"  index                {cfg.plan_rows:,} records x {len(S2_BANDS)} bands "
          f"({', '.join(S2_BANDS)}), full metadata structs; {len(tiles):,} MGRS-like tiles in "
          f"UTM 29-38N, ~{cfg.plan_rows / len(tiles):.0f} visits each over 2024")
    print(f"  write                generate {generated - started:.1f} s, normalise "
          f"{normalised - generated:.1f} s, export {exported - normalised:.1f} s "
          f"(table {nbytes / 1e9:.2f} GB in memory; RSS high-water +{peak / 1e9:.2f} GB in export)")
    print(f"  on disk              {sum(files) / 1e6:,.1f} MB, "
          f"{len(list(root.glob('year=*/month=*')))} partitions, {len(files)} files "
          f"({sum(files) / cfg.plan_rows / 1e3:.2f} KB per record)")
    print(f"  plans                built in a child process, budget {cfg.budget:.0f} s, RSS cap "
          f"{cfg.mem_cap_gb:.0f} GB; AOIs centred on {CENTRE} (EPSG:{EPSG}); "
          f"load {os.getloadavg()[0]:.1f}")
    context = multiprocessing.get_context("spawn")
    for label, sides in cfg.plan_aois:
        for attempt, side in enumerate(sides):
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=plan_child, args=(
                send, str(root), side, cfg.budget, cfg.mem_cap_gb * 1e9, attempt == 0))
            child.start()
            send.close()
            out = {"aborted": "the child process died or hung", "records": 0, "seconds": 0.0}
            with contextlib.suppress(EOFError):
                if receive.poll(12 * cfg.budget + 120):
                    out = receive.recv()
            child.kill()
            child.join()
            print_plan(label, side, out)
            if not out["aborted"]:
                break


def main(argv: list[str] | None = None) -> None:
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    cfg, started = QUICK if quick else FULL, time.perf_counter()
    print(f"scale_bench ({'quick' if quick else 'full'}): {os.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"load {os.getloadavg()[0]:.1f}; {LATENCY * 1000:.0f} ms "
          "latency per request; server in a child process; DaskProcessCluster, 1 thread/worker")
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        part12(cfg, Path(tmp))
        part3(cfg, Path(tmp))
    print(f"\ntotal                {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
