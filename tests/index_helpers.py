"""Helpers shared by the index storage tests: COG-backed tables, file-tree snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from rasteret_dask import schema as S
from rasteret_dask.testing.tables import synthetic_table


def cog_table(prefix: str, n: int = 40, months: int = 4, seed: int = 2) -> pa.Table:
    """``n`` records over ``months`` months whose B04/B08 hrefs are the session's COGs
    (``{prefix}scene{k}_{band}.tif``, k = 0..3)."""
    base = synthetic_table(n, months=months, seed=seed).drop_columns(["proj:epsg"])
    bands = []
    for band in ("B04", "B08"):
        hrefs = [f"{prefix}scene{i % 4}_{band}.tif" for i in range(n)]
        bands.append(pa.StructArray.from_arrays(
            [pa.array(hrefs, pa.string()), pa.array([0] * n, pa.int32())],
            fields=list(S.ASSET_TYPE)))
    assets = pa.StructArray.from_arrays(bands, names=["B04", "B08"])
    return base.set_column(base.schema.get_field_index(S.ASSETS), S.ASSETS, assets)


def tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` (hidden ones too) with its mtime in ns."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            out[str(path.relative_to(root))] = path.stat().st_mtime_ns
    return out


def data_files(root: Path) -> list[str]:
    """The ``*.parquet`` files under ``root`` as DuckDB's ``**/*.parquet`` glob sees them."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet")
                  if not any(part.startswith((".", "_")) for part in p.relative_to(root).parts))


def fingerprint(table: pa.Table) -> tuple:
    """What identifies a version's rows: count, distinct ids, summed cloud cover, and the
    number of records with B04 metadata."""
    import pyarrow.compute as pc

    enriched = 0
    if S.metadata_column("B04") in table.column_names:
        enriched = table.num_rows - table[S.metadata_column("B04")].null_count
    total = pc.sum(table[S.CLOUD_COVER]).as_py() or 0.0
    return (table.num_rows, len(pc.unique(table[S.ID])), round(total, 3), enriched)
