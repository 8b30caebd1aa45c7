"""Write benchmark: ``rasteret-dask read --out x.zarr`` of a 2 GB AOI time series, peak RSS
against the output size.

Serves Sentinel-2-like COGs (10980 x 10980 uint16, 1024 x 1024 tiles, deflate + predictor 2;
the read benchmark's files, so ``--cache-dir`` can share them) from the local object-store
stand-in (a child process, 40 ms first-byte latency), indexes and enriches them, then runs the
command line as a child process:

    rasteret-dask read INDEX --aoi BOX --aoi-crs EPSG:32633 --bands B04,B08 --out x.zarr

over a 100 km x 100 km box (10000 x 10000 pixels from ``--aoi-offset`` pixels off the scene
origin: 0, the default, starts on a tile edge) in 5 scenes x 2 bands: a 2.0 GB output array.
It prints the output array's bytes, the Zarr store's bytes on disk, the wall time, the peak
RSS of the command's process tree (the child's own VmHWM from ``wait4``; with ``--cluster`` the
workers' high-water marks, sampled from /proc every 50 ms, summed and listed separately) and
PASS/FAIL for the target: peak RSS < output / 4. With ``--load-then-write`` it also runs what
``read`` did before it streamed (compute the whole Dataset, then ``to_zarr``) in a child
process and prints the same figures; with ``--library`` a Python API user's plain
``get_xarray(...).to_zarr(store)`` (xarray's own store graph, not the command's). Outputs are written under ``--out-dir`` (checked for
space first) and deleted at the end.

Run: .venv/bin/python benchmarks/write_bench.py [--cache-dir DIR] [--out-dir DIR]
     [--aoi-offset PIXELS] [--scenes N] [--cluster local] [--load-then-write] [--library]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import rasteret_dask as rd
from rasteret_dask.testing.cogs import S2_SIZE, S2_TRANSFORM, write_s2_like_cog
from rasteret_dask.testing.server_process import RangeServerProcess

from _common import LATENCY, cached_file, mb, status_bytes  # isort: skip  (the scripts' folder)
from read_bench import collection_table  # isort: skip  (its scenes, footprint and dates)

BANDS = ("B04", "B08")
EPSG = 32633
AOI_PIXELS = 10000
"""The AOI's side in pixels: 100 km at 10 m."""

LOAD_THEN_WRITE = """
import sys, warnings
import rasteret_dask as rd
index, box, bands, out = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
ds = rd.load(index).get_xarray(tuple(map(float, box.split(","))), bands,
                               geometry_crs="EPSG:32633").load()
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Consolidated metadata")
    ds.to_zarr(out, mode="w")
"""
"""What ``read --out x.zarr`` did before it streamed: the whole area computed, then written."""

LIBRARY_TO_ZARR = LOAD_THEN_WRITE.replace(".load()", "")
"""A Python API user's plain ``get_xarray(...).to_zarr(store)`` (xarray's own store graph)."""


# --- data -------------------------------------------------------------------------------------

def scene_files(cache_dir: Path, scenes: int) -> list[dict[str, Path]]:
    """The scenes' band files (read_bench's names and seeds), written once into ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    return [{band: cached_file(cache_dir / f"scene{i}_{band}.tif",
                               partial(write_s2_like_cog, band_seed=len(BANDS) * i + b))
             for b, band in enumerate(BANDS)} for i in range(scenes)]


def aoi_box(offset: int, size: int = AOI_PIXELS) -> str:
    """``x0,y0,x1,y1`` (EPSG:32633) of ``size`` x ``size`` pixels from pixel (offset, offset)."""
    if offset < 0 or offset + size > S2_SIZE:
        raise SystemExit(f"--aoi-offset must be between 0 and {S2_SIZE - size}")
    a, _, c, _, e, f = S2_TRANSFORM
    x0, y0 = c + a * offset, f + e * offset
    return f"{x0},{y0 + e * size},{x0 + a * size},{y0}"


# --- memory of a process tree -----------------------------------------------------------------

def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(v) for v in handle.read().split())
        except OSError:
            continue
    return found


@dataclass
class TreeMemory:
    """High-water marks of a process (``root``) and its descendants (workers), sampled from
    /proc; a descendant between fork and exec (its pages are the command's) is left out."""

    root: int
    root_peak: int = 0
    peaks: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    tree_peak: int = 0  # the largest sum of the tree's current RSS seen

    def sample(self) -> None:
        pending, total = [self.root], 0
        while pending:
            pid = pending.pop()
            pending.extend(_children(pid))
            rss, hwm = status_bytes("VmRSS", pid), status_bytes("VmHWM", pid)
            total += rss or 0
            if hwm is None:
                continue
            if pid == self.root:
                self.root_peak = max(self.root_peak, hwm)
                continue
            name = _cmdline(pid)
            if name is None or name == _cmdline(self.root):
                continue  # forked, not yet exec'd: the command's own pages, counted there
            # the last reading: a process's high-water mark only grows within one program
            self.peaks[pid] = hwm
            self.names[pid] = name[:70]
        self.tree_peak = max(self.tree_peak, total)


def _cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


@dataclass
class Run:
    """One write: wall time, the command's own peak RSS, its descendants' peaks, output."""

    label: str
    seconds: float
    own_peak: int
    workers: TreeMemory
    output_bytes: int
    store_bytes: int
    stdout: str

    @property
    def peak(self) -> int:
        return self.own_peak + sum(self.workers.peaks.values())


def run_child(label: str, argv: list[str], out: Path, output_bytes: int) -> Run:
    """Run ``argv`` as a child process while sampling its tree's memory. Its own peak RSS is
    ``ru_maxrss`` from ``wait4`` (exact) when it has no worker processes, else its sampled
    VmHWM (``wait4`` would report the largest of it and its workers)."""
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out_file, stderr=err_file, text=True)
        memory = TreeMemory(child.pid)
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                memory.sample()
                done.wait(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        watcher.join()
        out_file.seek(0)
        err_file.seek(0)
        stdout, stderr = out_file.read(), err_file.read()
    if child.returncode != 0:
        raise SystemExit(f"{label} failed ({child.returncode}):\n{stderr}")
    own = memory.root_peak if memory.peaks else usage.ru_maxrss * 1024
    return Run(label, seconds, own, memory, output_bytes, disk_bytes(out), stdout.strip())


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def report(run: Run) -> None:
    target = run.output_bytes / 4
    verdict = "PASS" if run.peak < target else "FAIL"
    print(f"\n== {run.label}")
    if run.stdout:
        print(f"  {run.stdout}")
    print(f"  output array      {mb(run.output_bytes)}")
    print(f"  Zarr store        {mb(run.store_bytes)} on disk")
    print(f"  wall time         {run.seconds:.1f} s (child process: import, plan, read, write)")
    print(f"  peak RSS          {mb(run.own_peak)} the command's process (VmHWM)")
    for pid, peak in sorted(run.workers.peaks.items()):
        print(f"  peak RSS          {mb(peak)} pid {pid}: {run.workers.names.get(pid, '?')}")
    if run.workers.peaks:
        print(f"  peak RSS, summed  {mb(run.peak)} (the tree's largest simultaneous total: "
              f"{mb(run.workers.tree_peak)})")
    print(f"  peak / output     {run.peak / run.output_bytes:.3f}: target < 0.25 "
          f"({mb(target)}): {verdict}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the generated COGs are kept between runs (default: a "
                             "temporary directory, removed at exit; read_bench's cache works)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where the outputs are written, then deleted (default: a "
                             "temporary directory)")
    parser.add_argument("--aoi-offset", type=int, default=0,
                        help="the AOI's first row and column in scene pixels (0: on a tile "
                             "edge; e.g. 500 starts mid-tile)")
    parser.add_argument("--scenes", type=int, default=5,
                        help="dates (scenes) read; 5 x 2 bands of 100 km is 2.0 GB")
    parser.add_argument("--cluster", default=None,
                        help="also run with --cluster TARGET (e.g. local)")
    parser.add_argument("--load-then-write", action="store_true",
                        help="also run what read did before it streamed (load, then write)")
    parser.add_argument("--library", action="store_true",
                        help="also run a plain get_xarray(...).to_zarr(store) from Python")
    args = parser.parse_args(argv)
    box = aoi_box(args.aoi_offset)
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp) / "cogs"
        out_dir = args.out_dir or Path(tmp) / "out"
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        scenes = scene_files(cache_dir, args.scenes)
        print(f"scenes               {args.scenes} x {len(BANDS)} bands in {cache_dir} "
              f"({time.perf_counter() - started:.1f} s)")
        with RangeServerProcess(cache_dir, latency=LATENCY) as server:
            started = time.perf_counter()
            collection = rd.build_collection_from_table(collection_table(server, scenes),
                                                        name="write-bench")
            enriched = collection.enrich(progress=False)
            if enriched.errors:
                raise SystemExit(f"enrich failed: {enriched.errors[0]}")
            index = enriched.collection.export(Path(tmp) / "index").path
            print(f"index                {index} ({time.perf_counter() - started:.1f} s)")
            ds = rd.load(index).get_xarray(tuple(map(float, box.split(","))), list(BANDS),
                                           geometry_crs=EPSG)
            output = ds.nbytes
            chunks = ds[BANDS[0]].data.chunksize
            print(f"AOI                  {AOI_PIXELS} x {AOI_PIXELS} pixels from pixel "
                  f"({args.aoi_offset}, {args.aoi_offset}) x {args.scenes} dates x "
                  f"{len(BANDS)} bands: {mb(output)}, chunks {chunks}, "
                  f"{ds[BANDS[0]].data.npartitions * len(BANDS)} in all")
            free = shutil.disk_usage(out_dir).free
            print(f"disk                 {mb(free)} free in {out_dir}; "
                  f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
                  f"{LATENCY * 1000:.0f} ms first-byte latency")
            runs = [("read --out x.zarr (streamed)", [])]
            if args.cluster:
                runs.append((f"read --out x.zarr --cluster {args.cluster} (streamed)",
                             ["--cluster", args.cluster]))
            needed = output * (len(runs) + args.load_then_write + args.library)
            if free < needed:
                raise SystemExit(f"not enough space in {out_dir}: {mb(free)} free, up to "
                                 f"{mb(needed)} needed (give --out-dir)")
            cli = [sys.executable, "-m", "rasteret_dask.cli", "read", str(index), "--aoi", box,
                   "--aoi-crs", f"EPSG:{EPSG}", "--bands", ",".join(BANDS), "--quiet"]
            try:
                for k, (label, extra) in enumerate(runs):
                    out = out_dir / f"stream{k}.zarr"
                    report(run_child(label, [*cli, "--out", str(out), *extra], out, output))
                    shutil.rmtree(out)
                scripts = [("library.zarr", "get_xarray(...).to_zarr(store) from Python",
                            LIBRARY_TO_ZARR, args.library),
                           ("loaded.zarr", "load, then to_zarr (what read did before it streamed)",
                            LOAD_THEN_WRITE, args.load_then_write)]
                for name, label, script, wanted in scripts:
                    if not wanted:
                        continue
                    out = out_dir / name
                    report(run_child(label, [sys.executable, "-c", script, str(index), box,
                                             ",".join(BANDS), str(out)], out, output))
                    shutil.rmtree(out)
            finally:
                for leftover in out_dir.glob("*.zarr"):
                    shutil.rmtree(leftover, ignore_errors=True)
            print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
