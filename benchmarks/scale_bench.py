"""Scale benchmark: 1 vs 2 Dask worker processes, the plan of a continental read, and
continental jobs over a synthetic Sentinel-2 year of Europe.

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

Then the synthetic continental archive (``rasteret_dask.testing.continental``: about 300,000
records a year over Europe, UTM 29-38N, B02/B03/B04/B08/SCL, every record its own URL served
from a few real COGs by ``RangeServerProcess`` with 40 ms latency), the figures of issue 14:

a. a monthly median composite of the whole archive in EPSG:3035 at 1 km, read from overviews,
   on 2 worker processes: the level read (COGs with 7 overview levels, GDAL's OVERVIEW_COUNT:
   1 km takes 1/64, 171 px), the reads it needs, client peak RSS (<= 1 GB), time to first
   task (<= 30 s), wall time, requests and the floor (the reads' tiles decoded by imagecodecs
   on every core plus the server's CPU per request) (``_scale_continental.py``,
   ``_scale_floor.py``); a run past an hour is stopped, its finished tiles counted and the
   whole projected from its read rate;
b. the same composite at 10 m over 100 km x 100 km across UTM 32 | 33 (one month: the unit of
   the monthly median) on 1 and 2 workers: speedup (>= 1.8x), decoded MB/s per worker core, CPU
   seconds of workers / scheduler / server / client;
c. ``get_xarray`` of a 500 km AOI over the whole archive by solar day with 2048-pixel chunks,
   built in a child process: tasks (<= 200,000), planning time (<= 10 s), client memory growth
   (<= 500 MB) (``_scale_plan.py``);
d. the region of (b) by odc-stac on the same 2-worker cluster: ours >= 2x faster, outputs equal
   where both are defined (nearest).

Rows whose API is missing print ``unavailable: <error>`` and the rest still runs.
Run: .venv/bin/python benchmarks/scale_bench.py [--quick] [--parts 123abcd] [--cache-dir DIR]
(--quick: everything small, about a minute; --cache-dir keeps the archive's COGs, which take a
couple of minutes to write at full size).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import dask.array  # noqa: F401  (imported here, not during the timed builds)
import psutil

from rasteret_dask.testing.continental import ARCHIVE_ALIASES, continental_archive, served_folder
from rasteret_dask.testing.continental_layout import ArchiveSpec
from rasteret_dask.testing.server_process import RangeServerProcess

from _scale_common import LATENCY, release_memory  # isort: skip
from _scale_continental import Continental, part_a, part_bd  # isort: skip
from _scale_parts12 import Config, part12  # isort: skip
from _scale_plan import part3, part_c  # isort: skip

FULL = Config(2000, 24, 6, 4096, 512, 1024, 2, 300_000,
              (("(a)", (100.0, 50.0)), ("(b)", (500.0, 250.0, 125.0))), 60.0, 8.0)
QUICK = Config(240, 12, 2, 1024, 256, 512, 1, 20_000,
               (("(a)", (20.0,)), ("(b)", (250.0, 125.0))), 4.0, 4.0)
FULL_CONTINENTAL = Continental(ArchiveSpec(overview_count=7), 1000, 512, 3600.0, 100.0,
                               ("2024-01-01", "2024-01-31"), 2048, 500.0, 60.0, 8.0)
QUICK_CONTINENTAL = Continental(
    ArchiveSpec(bbox=(11.2, 47.6, 12.8, 48.4), zones=(32, 33), months=1, pixels=1098,
                step=10_000.0, blocksize=256, overview_count=4), 200, 256, 600.0, 12.0,
    ("2024-01-01", "2024-01-15"), 512, 60.0, 20.0, 4.0)


def continental(cfg: Continental, parts: str, work: Path, cache: Path) -> None:
    """Build the archive (COGs kept in ``cache``), serve it, run parts a-d."""
    spec = cfg.spec
    with RangeServerProcess(served_folder(cache), latency=LATENCY,
                            aliases=ARCHIVE_ALIASES) as server:
        archive = continental_archive(cache, server.url, spec, index=work / "continental-index")
        release_memory()
        files = [p.stat().st_size for p in archive.index_path.rglob("*") if p.is_file()]
        cogs = sum(p.stat().st_size for p in archive.cogs.paths.values())
        t = archive.times
        print(f"\nSynthetic continental archive: {archive.records:,} records x "
              f"{len(archive.bands)} bands ({', '.join(archive.bands)}) on {archive.tiles:,} "
              f"MGRS-like tiles ({spec.pixels} px at 10 m every {spec.step / 1000:g} km), "
              f"UTM {min(spec.zones)}-{max(spec.zones)}N, {spec.start} + {spec.months} months, "
              f"platforms {', '.join(spec.platforms)}")
        print(f"  build                COGs {t.cogs:.1f} s (written or reused), table "
              f"{t.table:.1f} s, export {t.export:.1f} s; index {sum(files) / 1e6:,.0f} MB in "
              f"{len(files)} files; {len(archive.cogs.paths)} COGs {cogs / 1e9:.2f} GB")
        if "a" in parts:
            part_a(cfg, archive, server, work)
        if "b" in parts or "d" in parts:
            part_bd(cfg, archive, server, work)
        if "c" in parts:
            part_c(archive.index_path, cfg.c_side_km, cfg.budget, cfg.cap_gb)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="everything small (~1 minute)")
    parser.add_argument("--parts", default="123abcd",
                        help="which parts to run (default all: 123abcd)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the continental archive's COGs are kept between runs")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    ccfg = QUICK_CONTINENTAL if args.quick else FULL_CONTINENTAL
    started = time.perf_counter()
    print(f"scale_bench ({'quick' if args.quick else 'full'}, parts {args.parts}): "
          f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"load {os.getloadavg()[0]:.1f}; {LATENCY * 1000:.0f} ms "
          "latency per request; server in a child process; DaskProcessCluster, 1 thread/worker")
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        work = Path(tmp)
        if "1" in args.parts or "2" in args.parts:
            part12(cfg, work)
        if "3" in args.parts:
            part3(cfg, work)
        if set("abcd") & set(args.parts):
            cache = args.cache_dir or work / "continental"
            continental(ccfg, args.parts, work, cache / ("quick" if args.quick else "full"))
    print(f"\ntotal                {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
