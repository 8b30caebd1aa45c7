"""Enrichment benchmark: headers per second and requests per file at 40 ms first-byte latency.

Serves N record hrefs (hard links to a few generated Sentinel-2-like COGs) from the fast local
object-store stand-in (aiohttp + sendfile, Range) adding 40 ms latency, enriches them with
Dask partition tasks and prints headers/s and GETs per file.
Targets on a 2-core machine: >= 500 headers/s and 1.0 requests per file.
Run: .venv/bin/python benchmarks/enrich_bench.py [records]
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

LATENCY = 0.040


def main(records: int = 2000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        served = tmp / "served"
        served.mkdir()
        sources = [write_s2_like_cog(tmp / f"src{i}.tif", band_seed=i) for i in range(2)]
        for i in range(records):
            os.link(sources[i % len(sources)], served / f"T{i:05d}_B04.tif")
        base = synthetic_table(records, months=6, seed=1)
        with RangeServer(served, latency=LATENCY) as server:
            hrefs = pa.array([server.href(f"T{i:05d}_B04.tif") for i in range(records)])
            assets = pa.StructArray.from_arrays(
                [pa.StructArray.from_arrays([hrefs, pa.array([0] * records, pa.int32())],
                                            fields=list(S.ASSET_TYPE))], names=["B04"])
            table = base.set_column(3, "assets", assets)
            collection = rd.build_from_table(table, name="bench", workspace_dir=tmp / "ws",
                                             enrich_cog=False)
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
