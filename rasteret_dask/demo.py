"""The main job, end to end on generated data: index -> export -> load -> subset -> summary."""

from __future__ import annotations

import time
from pathlib import Path

from .collection import build_collection_from_table, load
from .testing.tables import synthetic_table

__all__ = ["run_demo"]


def _step(label: str, started: float) -> float:
    now = time.perf_counter()
    print(f"  {label:<48s} {now - started:7.2f} s")
    return now


def run_demo(workspace: str | Path = "demo_workspace", *, records: int = 20_000, months: int = 24) -> dict:
    """Build an index from a generated table, export it partitioned, load, subset, summarise."""
    workspace = Path(workspace)
    print(f"rasteret-dask demo (workspace: {workspace.resolve()})")
    t = time.perf_counter()
    table = synthetic_table(records, months=months, seed=42)
    collection = build_collection_from_table(table, name="demo-s2", data_source="synthetic")
    t = _step(f"built index of {records:,} records", t)
    collection.export(workspace / "index")
    t = _step(f"exported {months} monthly partitions", t)
    loaded = load(workspace / "index")
    t = _step("loaded lazily", t)
    month = loaded.subset(date_range=("2024-03-01", "2024-03-31"), bbox=(8, 47, 10, 49),
                          cloud_cover_lt=30)
    n = len(month)
    t = _step(f"subset March 2024 + bbox + cloud < 30: {n} records", t)
    summary = loaded.describe()
    print(f"  collection {summary['name']!r}: {summary['records']:,} records, "
          f"{summary['partitions']} partitions, bands {summary['bands']}, EPSG {summary['epsg']}")
    print(f"  subset touched {len(month.fragments())} of {summary['partitions']} partition files")
    return {"records": summary["records"], "subset": n}
