"""Part 3 of ``scale_bench.py`` (the plan of a continental read of today's native path over a
300,000-record index with synthetic metadata) and part (c) (``get_xarray`` of a 500 km AOI
over the synthetic continental archive, grouped by solar day, 2048-pixel chunks); both built,
never computed, in a child process with a time budget and an RSS cap."""

from __future__ import annotations

import contextlib
import cProfile
import math
import multiprocessing
import os
import pickle
import pstats
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyproj
import shapely

import rasteret_dask as rd
import rasteret_dask.read  # noqa: F401
from rasteret_dask import schema as S

from _scale_common import guarded, release_memory, status_bytes  # isort: skip
from _scale_parts12 import EPSG, Config, assets_column  # isort: skip

S2_BANDS = ("B02", "B03", "B04", "B08")
CENTRE = (500_000.0, 5_300_000.0)  # zone 33, ~47.8 N 15 E: the AOIs of part 3 are centred here


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
    no_tables = pa.nulls(4 * n, pa.list_(pa.int64()))  # levels without cached tile tables
    overviews = pa.StructArray.from_arrays([pa.array(levels), pa.array(levels), pa.array(
        block, pa.int32()), pa.array(block, pa.int32()), no_tables, no_tables],
        fields=list(S.OVERVIEW_TYPE))
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
        *(pa.nulls(n, f.type) for f in list(S.METADATA_TYPE)[22:]),  # no object identity
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


def plan_child(conn, index: str, aoi_wkb: bytes, aoi_crs: int, subset: dict, read: dict,
               budget: float, cap: float, profile: bool) -> None:
    """In a child process: build (never compute) the lazy read ``get_xarray(aoi, **read)`` of
    the records of ``rd.load(index).subset(**subset)``, measured."""
    aoi = shapely.from_wkb(aoi_wkb)
    lonlat = shapely.transform(shapely.segmentize(aoi, 5000.0), pyproj.Transformer.from_crs(
        aoi_crs, 4326, always_xy=True).transform, interleaved=False)
    collection = rd.load(index).subset(**subset)
    out: dict = {"records": len(collection.subset(geometries=lonlat))}

    def build():
        return collection.get_xarray(aoi, geometry_crs=aoi_crs, **read)
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
        out["explain"] = collection.explain(aoi, geometry_crs=aoi_crs, **read)[0]
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
    if e and e.get("tiles") is not None:
        print(f"    compute would fetch  {e['tiles']:,} tiles, {e['compressed_bytes'] / 1e9:,.1f} GB"
              f" compressed, {e['fetch_groups']:,} fetch groups, {e['chunks']:,} chunks (explain:"
              f" {out['explain_seconds']:.1f} s)")
    else:
        print("    compute would fetch  " + ("(explain counts no tiles: planned on the workers)"
                                            if e else "(explain skipped: it plans again)"))


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
    for label, sides in cfg.plan_aois:
        for attempt, side in enumerate(sides):
            aoi = shapely.Point(CENTRE).buffer(side * 500.0, cap_style="square")
            out = plan_in_child(root, aoi, EPSG, {S.EPSG: EPSG}, {"bands": list(S2_BANDS)},
                                cfg.budget, cfg.mem_cap_gb * 1e9, attempt == 0)
            print_plan(label, side, out)
            if not out["aborted"]:
                break


def plan_in_child(index: Path, aoi, aoi_crs: int, subset: dict, read: dict, budget: float,
                  cap: float, profile: bool) -> dict:
    """:func:`plan_child` in a spawned process (a fresh client: its memory is the plan's)."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=plan_child, args=(
        send, str(index), shapely.to_wkb(aoi), aoi_crs, subset, read, budget, cap, profile))
    child.start()
    send.close()
    out = {"aborted": "the child process died or hung", "records": 0, "seconds": 0.0}
    with contextlib.suppress(EOFError):
        if receive.poll(12 * budget + 120):
            out = receive.recv()
    child.kill()
    child.join()
    return out


def _verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else "NOT met"


def part_c(index: Path, side_km: float, budget: float, cap_gb: float) -> None:
    """(c): ``get_xarray`` of a ``side_km`` AOI over the whole archive, by solar day."""
    centre = pyproj.Transformer.from_crs(4326, 3035, always_xy=True).transform(12.0, 48.0)
    aoi = shapely.Point(centre).buffer(side_km * 500.0, cap_style="square")
    read = {"bands": list(S2_BANDS), "crs": 3035, "resolution": 10, "groupby": "solar_day",
            "chunks": {"x": 2048, "y": 2048}}
    print(f"\nc. get_xarray of a {side_km:g} km x {side_km:g} km AOI (EPSG:3035 at 10 m, centred "
          f"on 12 E 48 N: UTM 32 and 33) over the archive, groupby='solar_day', 2048-pixel "
          f"chunks, {len(S2_BANDS)} bands; built in a child process (budget {budget:.0f} s, RSS "
          f"cap {cap_gb:.0f} GB), never computed")
    out = plan_in_child(index, aoi, 3035, {}, read, budget, cap_gb * 1e9, True)
    print(f"  records matched      {out['records']:,}")
    hwm = out.get("hwm", 0)
    if out["aborted"]:
        side = math.ceil(side_km * 100 / 2048)
        print(f"  build                ABORTED: {out['aborted']} after {out['seconds']:.1f} s "
              f"(client high-water +{hwm / 1e6:,.0f} MB); {side}^2 chunks per group and band")
        if "profile" in out:
            print(f"  cProfile of a 2nd attempt, stopped after {out['profile_seconds']:.1f} s:")
            print("\n".join(out["profile"]))
        return
    shape, tasks = out["shape"], out["tasks"]
    chunks = math.ceil(shape["y"] / 2048) * math.ceil(shape["x"] / 2048)
    print(f"  output               {', '.join(f'{k} {v:,}' for k, v in shape.items())} per band; "
          f"{chunks} chunks x {shape['time']} solar days x {len(S2_BANDS)} bands = "
          f"{chunks * shape['time'] * len(S2_BANDS):,} blocks")
    print(f"  tasks                {tasks:,} (issue: <= 200,000: {_verdict(tasks, 200_000)}); "
          f"pickled graph {out['pickled'] / 1e6:,.1f} MB")
    print(f"  planning             {out['seconds']:.2f} s (issue: <= 10 s: "
          f"{_verdict(out['seconds'], 10.0)})")
    traced = "n/a" if out["tracemalloc"] is None else f"{out['tracemalloc'] / 1e6:,.0f} MB"
    print(f"  client memory        high-water +{hwm / 1e6:,.0f} MB (issue: <= 500 MB: "
          f"{_verdict(hwm, 500e6)}); RSS +{out['rss'] / 1e6:,.0f} MB after the build; "
          f"tracemalloc peak {traced}")
    e = out.get("explain")
    if e and e.get("tiles") is not None:
        print(f"  compute would fetch  {e['tiles']:,} tiles, "
              f"{(e.get('compressed_bytes') or 0) / 1e9:,.1f} GB compressed (explain: "
              f"{out['explain_seconds']:.1f} s)")
    elif e:
        print(f"  explain              {e.get('records', 0):,} records, {e.get('groups', 0):,} "
              f"groups, records per chunk {e.get('records_per_chunk')} "
              f"({out['explain_seconds']:.1f} s)")
