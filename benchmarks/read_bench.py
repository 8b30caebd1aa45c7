"""Read benchmark: an AOI time series from 6 Sentinel-2-like scenes x 2 bands, against rasterio.

Serves 6 scenes x 2 bands of generated Sentinel-2-like COGs (10980 x 10980 uint16, 1024 x 1024
tiles, deflate + predictor 2) from the local object-store stand-in (aiohttp + sendfile, Range)
adding 40 ms latency, run in a child process so that its event loop does not share the readers'
GIL (both tools read from the same server), indexes and enriches them, then reads a 2 km x 2 km
and a 20 km x 20 km box (EPSG:32633, pixel-aligned but not tile-aligned) from every scene and
band with
(a) rasteret_dask: ``collection.get_xarray(...)`` then ``.compute()`` (threaded scheduler) and
(b) rasterio over /vsicurl/ with 8 threads (one open + window read per scene-band, GDAL's
/vsicurl/ cache cleared before every run so each run pays its opens).

For each AOI and tool it prints the wall time (median of the timed runs after an untimed
warm-up, every run listed) and process CPU time, HTTP requests and MB sent by the server per
run, output MB, peak memory (resident-set high-water mark above the pre-run RSS, from
/proc/self/status VmHWM after resetting it; for rasteret_dask also the tracemalloc peak of one
separate, untimed run), the speed ratio rasterio / rasteret_dask, and OK/FAIL for identical
arrays from both tools. It also prints a floor no reader can beat here: one first-byte latency
plus decoding the AOI's tiles, already in memory, on every core with imagecodecs' fastest path
(the ratio rasterio would have against it), and the compressed tiles' size against the output.
Targets on a 2-core machine: rasteret_dask >= 3x faster than rasterio at 2 km and >= 2.5x at
20 km; rasteret_dask peak memory <= 2x the output size.

Last, the first read of a fresh process: a child process imports rasteret_dask, loads the
exported index, then times its first 2 km read (``get_xarray`` + ``compute``) and a second,
warm one, three times over; target: the first within 50 ms of the warm one.
Run: .venv/bin/python benchmarks/read_bench.py [--cache-dir DIR] [--runs N] [--aoi '2 km']
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyproj
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.testing.cogs import S2_SIZE, S2_TRANSFORM, write_s2_like_cog
from rasteret_dask.testing.server_process import RangeServerProcess

from _common import (  # isort: skip  (the scripts' folder, first on sys.path)
    GDAL_ENV,
    LATENCY,
    Measure,
    cached_file,
    decode_tile,
    gdal_clear_cache,
    mb,
    measured,
    spread,
    tile_bytes,
)

SCENES = 6
BANDS = ("B04", "B08")
EPSG = 32633
RASTERIO_THREADS = 8
# AOIs as pixel windows of the scene grid (row_off, col_off, size): pixel-aligned, not
# tile-aligned. 2 km lies inside one 1024 x 1024 tile; 20 km touches 2 x 3 tiles.
AOIS = {
    "2 km": (6250, 4300, 200),
    "20 km": (2060, 3000, 2000),
}
TILE = 1024


# --- data -------------------------------------------------------------------------------------

def scene_files(cache_dir: Path) -> list[dict[str, Path]]:
    """The scenes' band files, written once into ``cache_dir`` (about 4 s per file)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    scenes = []
    for i in range(SCENES):
        files = {}
        for b, band in enumerate(BANDS):
            files[band] = cached_file(cache_dir / f"scene{i}_{band}.tif",
                                      partial(write_s2_like_cog, band_seed=len(BANDS) * i + b))
        scenes.append(files)
    return scenes


def scene_footprint() -> shapely.Geometry:
    """The scene's footprint in EPSG:4326 (edges densified before reprojection)."""
    a, _, c, _, e, f = S2_TRANSFORM
    box = shapely.box(c, f + e * S2_SIZE, c + a * S2_SIZE, f)
    to_lonlat = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True)
    return shapely.transform(shapely.segmentize(box, 1000.0), lambda x, y: to_lonlat.transform(x, y),
                             interleaved=False)


def collection_table(server: RangeServerProcess, scenes: list[dict[str, Path]]) -> pa.Table:
    """One record per scene: id, datetime (6 different days), footprint WKB, B04/B08 hrefs."""
    n = len(scenes)
    footprint = shapely.to_wkb(scene_footprint())
    dates = np.datetime64("2024-06-03T10:06:31", "us") + np.arange(n) * np.timedelta64(5, "D")
    assets = pa.StructArray.from_arrays(
        [pa.StructArray.from_arrays(
            [pa.array([server.href(s[band].name) for s in scenes], pa.string()),
             pa.array([0] * n, pa.int32())], fields=list(S.ASSET_TYPE)) for band in BANDS],
        names=list(BANDS))
    return pa.table({
        S.ID: pa.array([f"S2_T33UUP_{i}" for i in range(n)]),
        S.DATETIME: pa.array(dates, pa.timestamp("us")).cast(S.DATETIME_TYPE),
        S.GEOMETRY: pa.array([footprint] * n, pa.binary()),
        S.ASSETS: assets,
    })


def aoi_box(row_off: int, col_off: int, size: int) -> shapely.Geometry:
    """The EPSG:32633 box covering ``size`` x ``size`` pixels from (row_off, col_off)."""
    a, _, c, _, e, f = S2_TRANSFORM
    x0, y0 = c + a * col_off, f + e * row_off
    return shapely.box(x0, y0 + e * size, x0 + a * size, y0)


def tiles_touched(row_off: int, col_off: int, size: int) -> int:
    rows = (row_off + size - 1) // TILE - row_off // TILE + 1
    cols = (col_off + size - 1) // TILE - col_off // TILE + 1
    return rows * cols


# --- the two readers --------------------------------------------------------------------------

def read_rasteret(collection, aoi: shapely.Geometry, timing: list[float]) -> dict[str, np.ndarray]:
    """rasteret_dask: lazy Dataset, then one compute on the default threaded scheduler."""
    started = time.perf_counter()
    ds = collection.get_xarray(aoi, list(BANDS), geometry_crs=EPSG)
    timing.append(time.perf_counter() - started)
    computed = ds.compute()
    return {band: computed[band].values for band in BANDS}


def read_rasterio(urls: list[dict[str, str]], window: tuple[int, int, int],
                  clear_cache: Callable[[], None]) -> dict[str, np.ndarray]:
    """rasterio: one open + window read per scene-band on 8 threads, into (time, y, x) arrays."""
    import rasterio
    from rasterio.windows import Window

    row_off, col_off, size = window
    win = Window(col_off, row_off, size, size)
    clear_cache()
    out = {band: np.empty((len(urls), size, size), np.uint16) for band in BANDS}

    def one(job: tuple[int, str]) -> None:
        t, band = job
        with rasterio.Env(**GDAL_ENV), rasterio.open(urls[t][band]) as src:
            src.read(1, window=win, out=out[band][t])

    jobs = [(t, band) for t in range(len(urls)) for band in BANDS]
    with ThreadPoolExecutor(RASTERIO_THREADS) as pool:
        list(pool.map(one, jobs))
    return out


# --- the floor: what any reader must spend on this machine -----------------------------------

@dataclass
class Floor:
    """Decoding the AOI's tiles from memory on every core (best of runs) plus one latency."""

    decode_seconds: float
    compressed_bytes: int

    @property
    def seconds(self) -> float:
        return LATENCY + self.decode_seconds


def decode_floor(scenes: list[dict[str, Path]], window: tuple[int, int, int],
                 runs: int = 5) -> Floor:
    """Time imagecodecs' fastest path (libdeflate into a pre-sized tile, then the predictor)
    over every tile the AOI touches, already in memory, on ``os.cpu_count()`` threads."""
    row_off, col_off, size = window
    rows = range(row_off // TILE, (row_off + size - 1) // TILE + 1)
    cols = range(col_off // TILE, (col_off + size - 1) // TILE + 1)
    blobs = [blob for files in scenes for path in files.values()
             for blob in tile_bytes(path, 0, rows, cols)]
    threads = os.cpu_count() or 1
    scratch = [np.empty((TILE, TILE), np.uint16) for _ in range(threads)]

    def decode(k: int) -> None:
        out = scratch[k % threads]
        for blob in blobs[k::threads]:
            decode_tile(blob, out)

    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(runs):
            started = time.perf_counter()
            list(pool.map(decode, range(threads)))
            best = min(best, time.perf_counter() - started)
    return Floor(best, sum(len(b) for b in blobs))


def compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> str:
    problems = []
    for band in BANDS:
        a, b = ours[band], theirs[band]
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{band}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
        elif not np.array_equal(a, b):
            problems.append(f"{band}: {int(np.count_nonzero(a != b)):,} pixels differ")
    return "OK (identical arrays)" if not problems else "FAIL " + "; ".join(problems)


# --- report -----------------------------------------------------------------------------------

def report(name: str, window: tuple[int, int, int], ours: Measure, theirs: Measure,
           check: str, ratio_target: float, floor: Floor) -> None:
    size = window[2]
    print(f"\n{name} x {name} AOI: {size} x {size} px at (row {window[0]}, col {window[1]}), "
          f"{tiles_touched(*window)} tile(s) per file, {SCENES} scenes x {len(BANDS)} bands")
    rows = [("rasteret_dask", ours), (f"rasterio {RASTERIO_THREADS} thr", theirs)]
    for label, m in rows:
        secs = ", ".join(f"{s:.3f}" for s in m.seconds)
        print(f"  {label:<17} wall {m.median:6.3f} s median  (runs {secs}); process CPU "
              f"{statistics.median(m.cpu_seconds):.3f} s median")
        if m.plan_seconds:
            print(f"  {'':<17} of which get_xarray (plan + graph) "
                  f"{statistics.median(m.plan_seconds) * 1000:.0f} ms median")
        print(f"  {'':<17} requests {spread(m.requests)}, transferred "
              f"{mb(statistics.median(m.nbytes))}, output {mb(m.output_bytes)}")
        peak = max(m.peak_rss) if m.peak_rss else None
        runs = "/".join(f"{p / 1e6:.0f}" for p in m.peak_rss)
        line = f"  {'':<17} peak RSS above start {mb(peak)} (max of runs {runs} MB)"
        if peak is not None:
            line += f" = {peak / m.output_bytes:.1f}x output"
        if m.tracemalloc_peak is not None:
            line += (f"; tracemalloc peak {mb(m.tracemalloc_peak)} = "
                     f"{m.tracemalloc_peak / m.output_bytes:.1f}x output")
        print(line)
    print(f"  floor (any reader)  {floor.seconds:6.3f} s = {LATENCY * 1000:.0f} ms first byte + "
          f"{floor.decode_seconds:.3f} s decoding the {tiles_touched(*window) * SCENES * len(BANDS)}"
          f" tiles from memory on {os.cpu_count()} threads (imagecodecs, best of 5)")
    ratio = theirs.median / ours.median
    verdict = "met" if ratio >= ratio_target else "MISSED"
    print(f"  speed ratio rasterio / rasteret_dask  {ratio:.2f}x  (target >= {ratio_target}x: "
          f"{verdict}; at the floor it would be {theirs.median / floor.seconds:.2f}x)")
    peak = max(ours.peak_rss) if ours.peak_rss else None
    if peak is not None:
        verdict = "met" if peak <= 2 * ours.output_bytes else "MISSED"
        print(f"  rasteret_dask peak RSS / output       {peak / ours.output_bytes:.1f}x  "
              f"(target <= 2x: {verdict}; the compressed tiles alone are "
              f"{floor.compressed_bytes / ours.output_bytes:.1f}x)")
    print(f"  arrays                                {check}")


def bench_aoi(server: RangeServerProcess, collection, urls: list[dict[str, str]], name: str,
              runs: int, clear_cache: Callable[[], None],
              scenes: list[dict[str, Path]]) -> None:
    window = AOIS[name]
    aoi = aoi_box(*window)
    ours, theirs = Measure(), Measure()
    warm_ours, warm_theirs = Measure(), Measure()

    def run_ours(m: Measure) -> Callable[[], dict[str, np.ndarray]]:
        return lambda: read_rasteret(collection, aoi, m.plan_seconds)

    def run_theirs() -> dict[str, np.ndarray]:
        return read_rasterio(urls, window, clear_cache)

    # warm-up (not counted), also the equality check
    a = measured(server, warm_ours, run_ours(warm_ours))
    b = measured(server, warm_theirs, run_theirs)
    check = compare(a, b)
    del a, b
    for _ in range(runs):  # interleaved so that background load hits both tools alike
        measured(server, ours, run_ours(ours))
        measured(server, theirs, run_theirs)
    if warm_theirs.requests[0] != theirs.requests[0]:
        print(f"  note: rasterio warm-up made {warm_theirs.requests[0]} requests, timed runs "
              f"{theirs.requests[0]} (GDAL cache not cleared?)")
    # one untimed run under tracemalloc (Python and NumPy heap allocations)
    gc.collect()
    tracemalloc.start()
    read_rasteret(collection, aoi, [])
    ours.tracemalloc_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    floor = decode_floor(scenes, window)
    report(name, window, ours, theirs, check, 3.0 if name == "2 km" else 2.5, floor)


FIRST_READ = """
import sys, time
import rasteret_dask as rd
import shapely
collection = rd.load(sys.argv[1])
aoi = shapely.from_wkt(sys.argv[2])
times = []
for _ in range(2):
    started = time.perf_counter()
    collection.get_xarray(aoi, sys.argv[3].split(","), geometry_crs=int(sys.argv[4])).compute()
    times.append(time.perf_counter() - started)
print(times[0], times[1])
"""


def first_read(collection, aoi: shapely.Geometry, tmp: str, repeats: int = 3) -> None:
    """Time the first read of a fresh process against a warm read in the same process."""
    import subprocess
    import sys

    index = collection.export(Path(tmp) / "index")
    rows = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", FIRST_READ, str(index.path), aoi.wkt, ",".join(BANDS),
             str(EPSG)], capture_output=True, text=True, check=True)
        rows.append(tuple(float(v) for v in done.stdout.split()))
    first = statistics.median(r[0] for r in rows)
    warm = statistics.median(r[1] for r in rows)
    verdict = "met" if first - warm <= 0.050 else "MISSED"
    print("\n== first read of a fresh process (2 km, after import and load)")
    print(f"  first {first:.3f} s, warm {warm:.3f} s, difference {1000 * (first - warm):.0f} ms "
          f"(target <= 50 ms: {verdict}); runs: "
          + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the generated COGs are kept between runs (default: a "
                             "temporary directory, removed at exit)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool and AOI")
    parser.add_argument("--aoi", choices=sorted(AOIS), action="append",
                        help="only this AOI (repeatable; default: both)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp) / "cogs"
        started = time.perf_counter()
        scenes = scene_files(cache_dir)
        print(f"scenes               {SCENES} x {len(BANDS)} bands in {cache_dir} "
              f"({time.perf_counter() - started:.1f} s)")
        clear_cache = gdal_clear_cache()
        with RangeServerProcess(cache_dir, latency=LATENCY) as server:
            table = collection_table(server, scenes)
            collection = rd.build_collection_from_table(table, name="read-bench")
            started = time.perf_counter()
            report_ = collection.enrich(progress=False)
            if report_.errors:
                print("first enrich error:", report_.errors[0])
            collection = report_.collection
            print(f"enrich               {time.perf_counter() - started:.2f} s ({report_})")
            print(f"latency              {LATENCY * 1000:.0f} ms first byte per request; "
                  f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.2f} at start); "
                  f"median of {args.runs} runs after a warm-up; server in child process")
            print("peak memory          RSS high-water mark above the pre-run RSS (VmHWM reset "
                  "via clear_refs); tracemalloc: one separate untimed run")
            urls = [{band: "/vsicurl/" + server.href(s[band].name) for band in BANDS}
                    for s in scenes]
            for name in args.aoi or list(AOIS):
                bench_aoi(server, collection, urls, name, args.runs, clear_cache, scenes)
            first_read(collection, aoi_box(*AOIS["2 km"]), tmp)


if __name__ == "__main__":
    main()
