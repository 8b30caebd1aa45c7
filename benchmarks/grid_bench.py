"""Output-grid benchmark: reads across a UTM zone border into one grid, against odc-stac and stackstac.

Data: 6 dates x 2 tiles x 2 bands (B04, B08) = 24 generated Sentinel-2-like COGs, each
5490 x 5490 uint16 at 10 m (54.9 km square, a quarter of a real tile's area, to spare this
machine's disk and CPU; 1024 x 1024 tiles, deflate + predictor 2, overviews 2/4/8, nodata 0).
Each date has one tile in EPSG:32643 whose east edge lies 3 km east of 78 E and one in
EPSG:32644 whose west edge lies 3 km west of it (about 6 km of overlap, centred on 22 N), the
EPSG:32644 tile 4 s later. The COGs are cached in --cache-dir and served from a child process
(aiohttp, Range) adding 40 ms first-byte latency. The same pystac Items (projection extension:
proj:epsg, proj:shape, proj:transform; raster:bands nodata 0) feed odc-stac, stackstac and the
rasteret_dask index (``build_from_table``, enriched).

Reads, each on one odc-geo GeoBox given to every tool:
(1) 20 km at 10 m: a 20 km x 20 km box centred on 78 E, 22 N, in EPSG:32643 at 10 m, nearest;
(2) area at 200 m: both tiles' footprints in EPSG:32643 at 200 m, average (from overviews).
The two tiles of a date are fused first-valid in time order (``groupby="solar_day"``; stackstac:
``stackstac.mosaic`` per day) unless ``--groupby none`` (one time step per item).

Tools: (a) rasteret_dask ``get_xarray(None, bands, geobox=..., resampling=..., groupby=...,
chunks={"x": 2048, "y": 2048}).compute()`` on the default threaded scheduler; (b) odc-stac
``odc.stac.load(items, bands, geobox=..., chunks={"x": 2048, "y": 2048}, ...)`` and (c)
stackstac ``stackstac.stack(items, assets, epsg, resolution, bounds, chunksize=2048, ...)``,
both computed on dask threads (--peer-threads) through GDAL with read_bench's settings
(GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR, GDAL_HTTP_MERGE_CONSECUTIVE_RANGES=YES,
CPL_VSIL_CURL_ALLOWED_EXTENSIONS=.tif; odc-stac's cloud defaults and stackstac's default
environment otherwise), GDAL's /vsicurl/ cache cleared before each of their runs.

Per read it prints wall time (median of --runs, interleaved, after an untimed warm-up), requests
and MB sent by the server, the share of the area's full-resolution bytes, pixel agreement with
odc-stac, the ratio to each peer and the floor: one first-byte latency plus decoding the needed
tiles from memory (imagecodecs) and pasting or resampling them (rasterio.warp.reproject on
in-memory arrays) on ``os.cpu_count()`` threads, best of its runs (one after each round of
the tools' runs). Targets per read: rasteret_dask
>= 2x faster than odc-stac and >= 3x faster than stackstac, or within 1.25x of the floor where
the peer itself is closer to the floor than that; read (2) fetching < 5% of the full-resolution
bytes. A rasteret_dask read that raises is reported as unavailable; the rest still runs.
Run: .venv/bin/python benchmarks/grid_bench.py [--cache-dir DIR] [--runs N] [--peer-threads N]
[--groupby {solar_day,none}]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyproj
import pystac
from affine import Affine
from odc.geo.geobox import GeoBox

import rasteret_dask as rd
from rasteret_dask.testing.cogs import S2_BLOCKSIZE, write_cog
from rasteret_dask.testing.server_process import RangeServerProcess

# the scripts' folder comes first on sys.path
from _common import (GDAL_ENV, LATENCY, Measure, cached_file, gdal_clear_cache,  # isort: skip
                     mb, measured, spread)
from _grid_floor import Floor, warp_floor  # isort: skip

SIZE = 5490
RES = 10.0
DATES = 6
BANDS = ("B04", "B08")
ZONES = (32643, 32644)
BORDER_LON, LAT = 78.0, 22.0
OVERLAP = 3000.0  # metres each tile reaches past the zone border
AOI_SIDE = 20_000.0
COARSE = 200.0
CHUNK = 2048
TARGETS = {"odc-stac": 2.0, "stackstac": 3.0}
FLOOR_SLACK = 1.25
COARSE_BYTES_TARGET = 0.05
PROJ = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"


@dataclass(frozen=True)
class Scene:
    """One item: a tile of one zone on one date, with its band files."""

    id: str
    when: dt.datetime
    geobox: GeoBox
    files: dict[str, Path]


@dataclass(frozen=True)
class Read:
    """One benchmarked read: its name, output grid and GDAL resampling name."""

    name: str
    geobox: GeoBox
    resampling: str


# --- data -------------------------------------------------------------------------------------

def _snap(value: float) -> float:
    return round(value / RES) * RES


def border_xy(epsg: int) -> tuple[float, float]:
    """The zone border (78 E) at 22 N in ``epsg``'s metres, snapped to the 10 m grid."""
    x, y = pyproj.Transformer.from_crs(4326, epsg, always_xy=True).transform(BORDER_LON, LAT)
    return _snap(x), _snap(y)


def tile_geobox(epsg: int) -> GeoBox:
    """The tile of ``epsg``: reaching OVERLAP past the border, centred on 22 N."""
    x, y = border_xy(epsg)
    span = SIZE * RES
    left = x + OVERLAP - span if epsg == ZONES[0] else x - OVERLAP
    top = _snap(y + span / 2)
    return GeoBox((SIZE, SIZE), Affine(RES, 0.0, left, 0.0, -RES, top), f"EPSG:{epsg}")


def scenes(cache_dir: Path) -> list[Scene]:
    """Every date's two tiles, their band files written once into ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    first = dt.datetime(2024, 3, 2, 5, 26, 1, tzinfo=dt.UTC)
    out = []
    for d in range(DATES):
        for z, epsg in enumerate(ZONES):
            gbox = tile_geobox(epsg)
            files = {}
            for b, band in enumerate(BANDS):
                seed = (d * len(ZONES) + z) * len(BANDS) + b
                write = partial(write_cog, width=SIZE, height=SIZE, blocksize=S2_BLOCKSIZE,
                                predictor=2, crs=f"EPSG:{epsg}", transform=tuple(gbox.transform)[:6],
                                nodata=0, seed=seed, LEVEL=1, NUM_THREADS=2)
                files[band] = cached_file(cache_dir / f"grid{SIZE}_d{d}_{epsg}_{band}.tif", write)
            when = first + dt.timedelta(days=5 * d, seconds=4 * z)
            out.append(Scene(f"S2_{epsg % 100}_{when:%Y%m%d}", when, gbox, files))
    return out


def stac_items(server: RangeServerProcess, scenes_: list[Scene]) -> list[pystac.Item]:
    """pystac Items with the projection extension and raster:bands nodata, hrefs on ``server``."""
    items = []
    for scene in scenes_:
        footprint = scene.geobox.extent.to_crs("EPSG:4326")
        epsg = scene.geobox.crs.epsg
        item = pystac.Item(
            scene.id, footprint.json, list(footprint.boundingbox), scene.when,
            {"proj:epsg": epsg, "proj:shape": [SIZE, SIZE],
             "proj:transform": list(scene.geobox.transform)[:6]},
            stac_extensions=[PROJ, RASTER])
        for band, path in scene.files.items():
            item.add_asset(band, pystac.Asset(
                server.href(path.name), media_type=pystac.MediaType.COG, roles=["data"],
                extra_fields={"raster:bands": [{"nodata": 0, "data_type": "uint16"}]}))
        items.append(item)
    return items


def benchmark_reads() -> list[Read]:
    """The 20 km box across the border at 10 m, and both tiles' area at 200 m."""
    x, y = border_xy(ZONES[0])
    half = AOI_SIDE / 2
    aoi = GeoBox.from_bbox((x - half, y - half, x + half, y + half), f"EPSG:{ZONES[0]}",
                           resolution=RES)
    union = tile_geobox(ZONES[0]).extent | tile_geobox(ZONES[1]).extent.to_crs(ZONES[0])
    area = GeoBox.from_bbox(union.boundingbox, f"EPSG:{ZONES[0]}", resolution=COARSE)
    return [Read("(1) 20 km at 10 m", aoi, "nearest"),
            Read("(2) area at 200 m", area, "average")]


# --- the three readers ------------------------------------------------------------------------

Arrays = dict[str, np.ndarray]


def _arrays(per_band: Callable[[str], object], grid: list) -> Arrays:
    """(time, y, x) arrays of every band, in time order; the first band's x/y into ``grid``."""
    out = {}
    for band in BANDS:
        array = per_band(band).sortby("time").transpose("time", "y", "x")
        if not grid:
            grid.append((array.x.values, array.y.values))
        out[band] = array.values
    return out


def read_rasteret(collection, read: Read, groupby: str | None, grid: list) -> Arrays:
    """rasteret_dask: lazy Dataset on the read's GeoBox, one compute (threaded scheduler)."""
    ds = collection.get_xarray(None, list(BANDS), geobox=read.geobox, resampling=read.resampling,
                               groupby=groupby, chunks={"x": CHUNK, "y": CHUNK})
    computed = ds.compute()
    return _arrays(lambda band: computed[band], grid)


def read_odc(items: list[pystac.Item], read: Read, groupby: str | None, threads: int,
             clear_cache: Callable[[], None], grid: list) -> Arrays:
    """odc-stac: dask-backed load on the GeoBox, computed on ``threads`` dask threads."""
    import odc.stac

    clear_cache()
    ds = odc.stac.load(items, list(BANDS), geobox=read.geobox, resampling=read.resampling,
                       groupby=groupby or "id", chunks={"x": CHUNK, "y": CHUNK})
    computed = ds.compute(scheduler="threads", num_workers=threads)
    return _arrays(lambda band: computed[band], grid)


def read_stackstac(items: list[pystac.Item], read: Read, groupby: str | None, threads: int,
                   clear_cache: Callable[[], None], grid: list) -> Arrays:
    """stackstac: the stack on the GeoBox's bounds, a first-valid mosaic per day when grouping."""
    import stackstac
    from rasterio.enums import Resampling

    clear_cache()
    gbox = read.geobox
    stack = stackstac.stack(
        items, assets=list(BANDS), epsg=gbox.crs.epsg, resolution=gbox.resolution.x,
        bounds=tuple(gbox.boundingbox), resampling=Resampling[read.resampling],
        chunksize=CHUNK, dtype=np.dtype("uint16"), fill_value=np.uint16(0), rescale=False,
        xy_coords="center", gdal_env=stackstac.DEFAULT_GDAL_ENV.updated(always=GDAL_ENV))
    if groupby is not None:
        stack = stack.groupby(stack.time.dt.floor("D")).map(
            stackstac.mosaic, dim="time", reverse=True, nodata=0).rename(floor="time")
    computed = stack.compute(scheduler="threads", num_workers=threads)
    return _arrays(lambda band: computed.sel(band=band), grid)


# --- the floor: what any reader must spend on this machine ------------------------------------

def floor(scenes_: list[Scene], read: Read, groupby: str | None) -> Floor:
    """The read's floor: one output slice per time step (a date's tiles fused when grouping,
    in time order) and band."""
    slots: list[list[Scene]] = []
    for scene in scenes_:  # scenes_ is in time order; a date's tiles are adjacent
        if groupby is not None and slots and slots[-1][0].when.date() == scene.when.date():
            slots[-1].append(scene)
        else:
            slots.append([scene])
    return warp_floor([(t, band, [(scene.files[band], scene.geobox) for scene in slot])
                       for t, slot in enumerate(slots) for band in BANDS],
                      read.geobox, read.resampling)


# --- report -----------------------------------------------------------------------------------

def agreement(ours: Arrays, reference: Arrays) -> str:
    """Share of identical pixels against the reference, and of pixels valid in only one."""
    same = total = one_sided = 0
    for band in BANDS:
        a, b = ours[band], reference[band]
        if a.shape != b.shape:
            return f"shape {a.shape} vs {b.shape}"
        same += int(np.count_nonzero(a == b))
        one_sided += int(np.count_nonzero((a == 0) != (b == 0)))
        total += a.size
    return f"{100 * same / total:.2f}% identical, {100 * one_sided / total:.2f}% nodata in one"


def same_grid(grid: list, gbox: GeoBox) -> str:
    if not grid:
        return "no grid"
    x, y = grid[0]
    want = gbox.coords
    ok = (x.shape == want["x"].values.shape and y.shape == want["y"].values.shape
          and np.allclose(x, want["x"].values) and np.allclose(y, want["y"].values))
    return "grid = GeoBox" if ok else f"grid differs ({len(y)} x {len(x)} px)"


@dataclass
class Row:
    """One tool on one read: its measure, or why it could not run; its checks."""

    label: str
    measure: Measure
    error: str | None = None
    check: str = ""


def verdict(ours: Row, peer: Row, fl: Floor) -> str:
    target = TARGETS[peer.label.split()[0]]
    peer_to_floor = peer.measure.median / fl.seconds
    if ours.error is not None:
        return (f"n/a (rasteret_dask unavailable); at the floor a reader would be "
                f"{peer_to_floor:.2f}x faster")
    ratio = peer.measure.median / ours.measure.median
    if peer_to_floor >= target:
        rule, met = f">= {target}x", ratio >= target
    else:
        rule = (f">= {target}x, or <= {FLOOR_SLACK}x the floor as {peer.label.split()[0]} is "
                f"only {peer_to_floor:.2f}x the floor")
        met = ratio >= target or ours.measure.median <= FLOOR_SLACK * fl.seconds
    return f"{ratio:.2f}x  (target {rule}: {'PASS' if met else 'MISS'})"


def report(read: Read, rows: list[Row], fl: Floor, floor_check: str, groupby: str | None) -> None:
    gbox = read.geobox
    steps = fl.output[BANDS[0]].shape[0]
    print(f"\n== {read.name}: EPSG:{gbox.crs.epsg} {gbox.shape[1]} x {gbox.shape[0]} px at "
          f"{gbox.resolution.x:g} m, {read.resampling}; {steps} time steps "
          f"({'fused per ' + groupby if groupby else 'one per item'}) x {len(BANDS)} bands")
    print(f"  {'':<19} {'wall median':>11}  {'requests':>8}  {'fetched':>9}  {'of full-res':>11}"
          "  pixels against odc-stac; grid; runs (s)")
    for row in rows:
        m = row.measure
        if row.error is not None:
            print(f"  {row.label:<19} unavailable: {row.error}")
            continue
        fetched = statistics.median(m.nbytes)
        runs = ", ".join(f"{s:.3f}" for s in m.seconds)
        print(f"  {row.label:<19} {m.median:9.3f} s  {spread(m.requests):>8}  {mb(fetched):>9}  "
              f"{100 * fetched / fl.full_res_bytes:10.2f}%  {row.check}; {runs}")
    print(f"  {'floor':<19} {fl.seconds:9.3f} s  {'':>8}  {mb(fl.compressed_bytes):>9}  "
          f"{100 * fl.compressed_bytes / fl.full_res_bytes:10.2f}%  {floor_check}; "
          + ", ".join(f"{LATENCY + s:.3f}" for s in fl.decode_seconds))
    print(f"  floor = {LATENCY * 1000:.0f} ms first byte + {min(fl.decode_seconds):.3f} s "
          f"decoding {fl.tiles} tiles and pasting or resampling them from memory on "
          f"{os.cpu_count()} threads (imagecodecs, rasterio.warp.reproject; best run); "
          f"full-resolution bytes of the area {mb(fl.full_res_bytes)}")
    ours = rows[0]
    for peer in rows[1:]:
        print(f"  {peer.label.split()[0]} / rasteret_dask  {verdict(ours, peer, fl)}")
    if read.resampling != "nearest" and ours.error is None:
        share = statistics.median(ours.measure.nbytes) / fl.full_res_bytes
        met = "PASS" if share < COARSE_BYTES_TARGET else "MISS"
        print(f"  rasteret_dask bytes / full-resolution bytes  {100 * share:.2f}%  "
              f"(target < {100 * COARSE_BYTES_TARGET:g}%: {met})")


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def bench_read(server: RangeServerProcess, collection, items: list[pystac.Item], read: Read,
               groupby: str | None, runs: int, threads: int, clear_cache: Callable[[], None],
               scenes_: list[Scene]) -> None:
    """Warm-up and checks, then ``runs`` interleaved timed runs of every tool, the floor, report."""
    runners: dict[str, Callable[[list], Arrays]] = {
        "rasteret_dask": partial(read_rasteret, collection, read, groupby),
        f"odc-stac {threads} thr": partial(read_odc, items, read, groupby, threads, clear_cache),
        f"stackstac {threads} thr": partial(read_stackstac, items, read, groupby, threads,
                                            clear_cache),
    }
    rows = [Row(label, Measure()) for label in runners]
    warm: dict[str, Arrays] = {}
    grids: dict[str, str] = {}
    for row, run in zip(rows, runners.values()):
        grid: list = []
        try:  # untimed warm-up, also the outputs for the checks
            warm[row.label] = measured(server, Measure(), partial(run, grid))
        except Exception as exc:
            if row is not rows[0]:
                raise
            row.error = _one_line(exc)  # rasteret_dask without the output-grid API
        grids[row.label] = same_grid(grid, read.geobox)
    reference = warm[rows[1].label]
    for row in rows:
        if row.error is None:
            row.check = f"{agreement(warm[row.label], reference)}; {grids[row.label]}"
    fl = floor(scenes_, read, groupby)
    fl.run()  # warm-up, also the output for its check
    floor_check = agreement(fl.output, reference)
    fl.decode_seconds.clear()
    del warm, reference
    for _ in range(runs):  # interleaved so that background load hits every tool alike
        for row, run in zip(rows, runners.values()):
            if row.error is None:
                measured(server, row.measure, partial(run, []))
        fl.run()
    report(read, rows, fl, floor_check, groupby)


def main(argv: list[str] | None = None) -> None:
    import odc.stac
    from rasterio.errors import NotGeoreferencedWarning

    # rasterio warns on the in-memory arrays odc-stac reprojects (their transforms are given)
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the generated COGs are kept between runs (default: a "
                             "temporary directory, removed at exit)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool and read")
    parser.add_argument("--peer-threads", type=int, default=8,
                        help="dask threads computing odc-stac's and stackstac's reads")
    parser.add_argument("--groupby", choices=("solar_day", "none"), default="solar_day",
                        help="fuse each date's two tiles (default) or one time step per item")
    args = parser.parse_args(argv)
    groupby = None if args.groupby == "none" else args.groupby
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp) / "cogs"
        started = time.perf_counter()
        scenes_ = scenes(cache_dir)
        print(f"data                 {DATES} dates x {len(ZONES)} tiles (EPSG:{ZONES[0]}, "
              f"EPSG:{ZONES[1]}; {OVERLAP * 2 / 1000:g} km overlap at {BORDER_LON:g} E) x "
              f"{len(BANDS)} bands = {len(scenes_) * len(BANDS)} COGs of {SIZE} x {SIZE} uint16 at "
              f"{RES:g} m, {S2_BLOCKSIZE} px tiles, deflate + predictor 2, overviews 2/4/8, in "
              f"{cache_dir} ({time.perf_counter() - started:.1f} s)")
        clear_cache = gdal_clear_cache()
        odc.stac.configure_rio(cloud_defaults=True, **GDAL_ENV)
        with RangeServerProcess(cache_dir, latency=LATENCY) as server:
            items = stac_items(server, scenes_)
            started = time.perf_counter()
            collection = rd.build_from_table(items, name="grid-bench", workspace_dir=tmp,
                                             progress=False)
            print(f"index                {len(items)} pystac Items -> build_from_table, enriched "
                  f"({time.perf_counter() - started:.2f} s)")
            print(f"latency              {LATENCY * 1000:.0f} ms first byte per request; "
                  f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.2f} at start); "
                  f"median of {args.runs} interleaved runs after a warm-up; server in a child "
                  f"process")
            print(f"peers                dask threads x {args.peer_threads}, chunks "
                  f"{CHUNK} x {CHUNK}; GDAL " + ", ".join(f"{k}={v}" for k, v in GDAL_ENV.items())
                  + "; /vsicurl/ cache cleared before each run")
            for read in benchmark_reads():
                bench_read(server, collection, items, read, groupby, args.runs,
                           args.peer_threads, clear_cache, scenes_)


if __name__ == "__main__":
    main()
