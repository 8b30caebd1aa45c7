"""One composite tile of scale_bench's part (b), in one process: CPU seconds and page faults.

The tile is the 2048 x 2048 tile at the centre of (b)'s 100 km region (EPSG:3035, 10 m,
nearest, monthly median of B04 and B08 over January 2024, records of UTM 32 and 33) of the
synthetic continental archive, served with 40 ms latency. A child process composites it
``--runs`` times after one warm-up run (index opened, GDAL and PROJ loaded) and reports each
run's wall and CPU seconds and minor page faults; it runs twice: with this environment, and
with the ``MALLOC_TRIM_THRESHOLD_`` a Dask nanny sets before it starts a worker (glibc then
returns freed memory at once, so every fresh array past 128 KB costs page faults again).

    python benchmarks/tile_bench.py --cache-dir /tmp/i14cont/cache [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import shapely

from rasteret_dask.testing.continental import ARCHIVE_ALIASES, continental_archive, served_folder
from rasteret_dask.testing.continental_layout import ArchiveSpec
from rasteret_dask.testing.server_process import RangeServerProcess

from _scale_common import LATENCY  # isort: skip
from _scale_continental import BANDS, region_3035  # isort: skip

TILE = 2048
NANNY_MALLOC = {"MALLOC_TRIM_THRESHOLD_": "65536"}


def tile_kwargs() -> dict:
    """``composite`` arguments of the centre tile of (b)'s region."""
    west, south = region_3035(100.0).bounds[:2]
    x0, y0 = west + 2 * TILE * 10.0, south + 2 * TILE * 10.0
    return {"aoi": shapely.box(x0, y0, x0 + TILE * 10.0, y0 + TILE * 10.0), "aoi_crs": 3035,
            "bands": list(BANDS), "crs": "EPSG:3035", "resolution": 10,
            "resampling": "nearest", "tile_size": TILE, "reducer": "median",
            "date_range": ["2024-01-01", "2024-01-31"], "ndvi": False}


def child(index: str, out: str, runs: int) -> None:
    """Composite the tile ``runs + 1`` times; print one JSON line per measured run."""
    from rasteret_dask.workflows import composite

    kwargs = tile_kwargs()
    composite(index, out=out, overwrite=True, **kwargs)  # warm-up
    for _ in range(runs):
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        wall, cpu = time.perf_counter(), time.process_time()
        report = composite(index, out=out, overwrite=True, **kwargs)
        print(json.dumps({
            "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
            "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
            "written": report.tiles_written}), flush=True)


def _measure(index: Path, work: Path, runs: int, extra: dict[str, str]) -> list[dict]:
    env = {**os.environ, **extra}
    args = [sys.executable, __file__, "--child", str(index), str(work / "tile.zarr"),
            "--runs", str(runs)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, required=False,
                        help="where the continental archive's COGs are kept between runs")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("INDEX", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.runs)
        return
    with tempfile.TemporaryDirectory(prefix="tile-bench-") as tmp:
        work = Path(tmp)
        cache = (args.cache_dir or work / "continental") / "full"
        with RangeServerProcess(served_folder(cache), latency=LATENCY,
                                aliases=ARCHIVE_ALIASES) as server:
            archive = continental_archive(cache, server.url, ArchiveSpec(overview_count=7),
                                          index=work / "index")
            print(f"tile_bench: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; the "
                  f"{TILE} x {TILE} tile at the centre of scale_bench (b)'s region, "
                  f"{archive.records:,}-record archive, {LATENCY * 1000:.0f} ms latency; "
                  f"medians of {args.runs} runs after a warm-up, in a child process")
            for name, extra in (("this environment", {}),
                                ("a nanny's MALLOC_TRIM_THRESHOLD_=65536", NANNY_MALLOC)):
                rows = _measure(archive.index_path, work, args.runs, extra)
                if not rows or any(r["written"] != 1 for r in rows):
                    print(f"  {name:40s} unavailable: the tile was not written")
                    continue
                wall = statistics.median(r["wall"] for r in rows)
                cpu = statistics.median(r["cpu"] for r in rows)
                faults = statistics.median(r["faults"] for r in rows)
                print(f"  {name:40s} {wall:5.2f} s wall, {cpu:5.2f} s CPU, "
                      f"{faults / 1000:,.0f}k minor page faults "
                      f"({faults * 4096 / 1e9:.2f} GB of fresh pages)")


if __name__ == "__main__":
    main()
