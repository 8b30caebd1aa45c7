"""The main job on generated data: COGs -> local object store -> index -> enrich -> AOI time series.

Everything runs on this machine: the COGs are generated, served over HTTP with Range from
127.0.0.1, indexed, enriched on a ``distributed.LocalCluster``, and read lazily.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely
from pyproj import Transformer

from . import schema as S
from .build import build_from_table
from .collection import load

__all__ = ["run_demo"]

SCENES = 6
SIZE = 2048
BANDS = ("B04", "B08")


def _step(label: str, started: float) -> float:
    now = time.perf_counter()
    print(f"  {label:<60s} {now - started:6.2f} s")
    return now


def _generate(cog_dir: Path) -> list[dict]:
    """Six scenes x two bands of 10 m uint16 COGs on one UTM grid (kept between runs)."""
    from .testing.cogs import write_cog

    cog_dir.mkdir(parents=True, exist_ok=True)
    scenes = []
    for k in range(SCENES):
        files = {}
        for b, band in enumerate(BANDS):
            path = cog_dir / f"scene{k}_{band}.tif"
            if not path.exists():
                write_cog(path, width=SIZE, height=SIZE, blocksize=512, dtype="uint16",
                          predictor=2, nodata=0, seed=100 * k + b)
            files[band] = path.name
        scenes.append({"id": f"DEMO_{k:02d}", "files": files,
                       "datetime": dt.datetime(2024, 1 + k // 2, 5 + 9 * (k % 2), 10, 30)})
    return scenes


def _table(scenes: list[dict], base_url: str) -> pa.Table:
    to_lonlat = Transformer.from_crs(32633, 4326, always_xy=True)
    x0, y1 = 500_000.0, 5_000_000.0
    ring = shapely.box(x0, y1 - SIZE * 10, x0 + SIZE * 10, y1).segmentize(2000)
    footprint = shapely.transform(ring, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))
    assets = {
        band: pa.StructArray.from_arrays(
            [pa.array([f"{base_url}/{s['files'][band]}" for s in scenes]),
             pa.array([0] * len(scenes), pa.int32())], fields=list(S.ASSET_TYPE))
        for band in BANDS
    }
    rng = np.random.default_rng(0)
    return pa.table({
        "id": [s["id"] for s in scenes],
        "datetime": pa.array([s["datetime"] for s in scenes], pa.timestamp("us", tz="UTC")),
        "geometry": pa.array([shapely.to_wkb(footprint)] * len(scenes), pa.binary()),
        "assets": pa.StructArray.from_arrays(list(assets.values()), names=list(BANDS)),
        "eo:cloud_cover": rng.uniform(0, 40, len(scenes)),
        "split": pa.array(["train", "val"] * (len(scenes) // 2)),
    })


def run_demo(workspace: str | Path = "demo_workspace") -> dict:
    """Run the whole pipeline and print what it did (records, chunks, requests, time)."""
    from distributed import Client, LocalCluster

    from .testing.servers import RangeServer

    workspace = Path(workspace)
    print(f"rasteret-dask demo (workspace: {workspace.resolve()})")
    t = start = time.perf_counter()
    scenes = _generate(workspace / "cogs")
    t = _step(f"generated {SCENES} scenes x {len(BANDS)} bands of {SIZE}x{SIZE} COGs", t)
    with RangeServer(workspace / "cogs", latency=0.02) as store, \
            LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        t = _step(f"object store at {store.url}; LocalCluster with 2 worker processes", t)
        collection = build_from_table(_table(scenes, store.url), name="demo",
                                      workspace_dir=workspace, enrich_cog=False,
                                      overwrite=True)  # a rerun rebuilds the demo index
        t = _step(f"index: {len(collection)} records in {len(collection.fragments())} "
                  "monthly partitions", t)
        store.reset()
        report = collection.enrich(client=client, progress=False)
        t = _step(f"enriched on the cluster: {report.enriched} headers, "
                  f"{store.count(method=None)} requests", t)
        collection = load(workspace / "demo")
        aoi = shapely.Point(15.05, 45.08).buffer(0.03)
        subset = collection.subset(date_range=("2024-01-01", "2024-02-29"), cloud_cover_lt=40)
        store.reset()
        ds = subset.get_xarray(aoi, list(BANDS))
        plan = subset.explain(aoi, list(BANDS))[0]
        t = _step(f"lazy AOI read: {plan['records']} records, shape {plan['shape']}, "
                  f"{plan['chunks']} chunks, {store.count(method=None)} requests", t)
        red, nir = ds["B04"].astype("float32"), ds["B08"].astype("float32")
        valid = (ds["B04"] != 0) & (ds["B08"] != 0)
        ndvi = (nir - red) / (nir + red).where(valid)
        series = ndvi.mean(dim=("y", "x")).compute()
        t = _step(f"NDVI time series computed: {store.count('GET')} GETs "
                  f"(plan: {plan['tiles']} tiles), {store.bytes_sent / 1e6:.1f} MB", t)
    for when, value in zip(series["time"].values, series.values, strict=True):
        print(f"    {str(when)[:16]}  mean NDVI {value:+.4f}")
    print(f"  total {time.perf_counter() - start:.2f} s")
    return {"records": len(collection), "enriched": report.enriched,
            "ndvi": [float(v) for v in series.values]}
