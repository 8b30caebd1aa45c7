"""Enrichment benchmark: headers per second and requests per file at 40 ms first-byte latency.

Serves N record hrefs (hard links to a few generated Sentinel-2-like COGs) from the fast local
object-store stand-in (aiohttp + sendfile, Range) adding 40 ms latency, enriches them with
Dask partition tasks and prints headers/s and GETs per file. Then ``reenrich --verify`` over
an index of 10,000 enriched assets at the same latency: one HEAD per asset, as Dask tasks per
data file, and the assets verified per second.
Targets on a 2-core machine: >= 500 headers/s, 1.0 requests per file, and >= 1,000 verified
assets/s.
Run: .venv/bin/python benchmarks/enrich_bench.py [records] [verify-assets]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.testing.cogs import write_s2_like_cog
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.testing.tables import synthetic_table
from rasteret_dask.workflows.reenrich import reenrich

LATENCY = 0.040


def _served(tmp: Path, records: int) -> Path:
    served = tmp / "served"
    served.mkdir()
    sources = [write_s2_like_cog(tmp / f"src{i}.tif", band_seed=i) for i in range(2)]
    for i in range(records):
        os.link(sources[i % len(sources)], served / f"T{i:05d}_B04.tif")
    return served


def _collection(tmp: Path, server: RangeServer, records: int) -> rd.Collection:
    base = synthetic_table(records, months=6, seed=1)
    hrefs = pa.array([server.href(f"T{i:05d}_B04.tif") for i in range(records)])
    assets = pa.StructArray.from_arrays(
        [pa.StructArray.from_arrays([hrefs, pa.array([0] * records, pa.int32())],
                                    fields=list(S.ASSET_TYPE))], names=["B04"])
    table = base.set_column(3, "assets", assets)
    return rd.build_from_table(table, name="bench", workspace_dir=tmp / "ws", enrich_cog=False)


def verify(assets: int = 10_000) -> None:
    """``reenrich --verify`` throughput over ``assets`` enriched assets."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        served = _served(tmp, assets)
        with RangeServer(served, latency=LATENCY) as server:
            collection = _collection(tmp, server, assets)
            collection.enrich(progress=False)
            server.reset()
            started = time.perf_counter()
            report = reenrich(collection.path, stac=False, verify=True)
            seconds = time.perf_counter() - started
            heads = server.count("HEAD")
            gets = server.count("GET")
        print(f"verify assets        {assets:,} at {LATENCY * 1000:.0f} ms per request: "
              f"{heads:,} HEAD, {gets} GET, {report.verified:,} verified, {report.changed} "
              f"changed, {report.verify_failed} failed")
        print(f"verify time          {seconds:.2f} s")
        print(f"verified per second  {report.verified / seconds:,.0f}  (target >= 1,000)")


def main(records: int = 2000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        served = _served(tmp, records)
        with RangeServer(served, latency=LATENCY) as server:
            collection = _collection(tmp, server, records)
            server.reset()
            started = time.perf_counter()
            report = collection.enrich(progress=False)
            if report.errors:
                print("first error:", report.errors[0])
            seconds = time.perf_counter() - started
            gets = server.count("GET")
            total = server.count(method=None)
        print(f"records              {records:,} (6 monthly partitions, 1 band)")
        print(f"latency              {LATENCY * 1000:.0f} ms first byte per request")
        print(f"enrich time          {seconds:.2f} s  ({report})")
        print(f"headers per second   {report.enriched / seconds:,.0f}  (target >= 500)")
        print(f"requests per file    {gets / records:.2f} GET, {total / records:.2f} total "
              f"(target 1.0)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
    verify(int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
