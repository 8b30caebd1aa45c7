"""Index benchmark: a synthetic 1,000,000-row index over 60 months.

Prints build, export and load times, and the time of a one-month + bbox subset (target on a
2-core machine: under 0.5 s). Run: .venv/bin/python benchmarks/index_bench.py [rows]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import rasteret_dask as rd
from rasteret_dask.testing.tables import synthetic_table


def main(rows: int = 1_000_000, months: int = 60) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "index"
        t0 = time.perf_counter()
        table = synthetic_table(rows, months=months, seed=0)
        t1 = time.perf_counter()
        collection = rd.build_collection_from_table(table, name="bench")
        t2 = time.perf_counter()
        collection.export(root)
        t3 = time.perf_counter()
        loaded = rd.load(root)
        t4 = time.perf_counter()
        subset = loaded.subset(date_range=("2026-03-01", "2026-03-31"), bbox=(8.0, 47.0, 9.0, 48.0))
        result = subset.to_table()
        t5 = time.perf_counter()
        size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
        print(f"rows                 {rows:,} over {months} months")
        print(f"generate table       {t1 - t0:7.3f} s")
        print(f"normalise (build)    {t2 - t1:7.3f} s")
        print(f"export               {t3 - t2:7.3f} s  ({size / 1e6:.1f} MB on disk, "
              f"{len(list(root.glob('year=*/month=*')))} partitions)")
        print(f"load (lazy)          {t4 - t3:7.3f} s")
        print(f"one-month+bbox subset{t5 - t4:7.3f} s  ({result.num_rows} rows, "
              f"{len(subset.fragments())} file opened; target < 0.5 s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
