"""Index layout benchmark: reads over a continental index, time-ordered vs Hilbert-sorted files.

Builds scale_bench's Europe index (a year of Sentinel-2 over Europe, 4 bands with full
``{band}_metadata``; 300,000 records, or 100,000 with --quick) twice: once as files were written
before (rows in time order, one 65,536-row group per month file) and once as the index writes
them now (rows along a Hilbert curve of their footprints, row groups of about 8 MB). For AOIs of
10 km and 100 km it prints, per layout: the Parquet row groups a bbox filter keeps, the time and
peak Arrow memory of ``subset(geometries=aoi)`` plus the table of read columns that planning
loads (``plan_reads``), and the time of the whole lazy ``get_xarray`` build.
Run: .venv/bin/python benchmarks/layout_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyproj
import shapely

sys.path.insert(0, str(Path(__file__).parent))
import scale_bench as sb  # noqa: E402  (the Europe index generator)

import rasteret_dask as rd  # noqa: E402
from rasteret_dask import schema as S  # noqa: E402
from rasteret_dask.index import datafiles as storage  # noqa: E402
from rasteret_dask.index import filters as F  # noqa: E402

EPSG, CENTRE = sb.EPSG, sb.CENTRE
BANDS = list(sb.S2_BANDS)


def export(table: pa.Table, root: Path, legacy: bool) -> float:
    """Write the index; ``legacy`` writes rows in time order, one 65,536-row group per file."""
    sort, size = storage.spatial_sort, storage.row_group_size
    if legacy:
        storage.spatial_sort = lambda t: t.sort_by([(S.DATETIME, "ascending")])
        storage.row_group_size = lambda t: 65_536
    try:
        started = time.perf_counter()
        rd.build_collection_from_table(table, name="europe-2024").export(root)
        return time.perf_counter() - started
    finally:
        storage.spatial_sort, storage.row_group_size = sort, size


def aoi(side_km: float) -> tuple[shapely.Geometry, shapely.Geometry]:
    """The AOI square in EPSG:32633 and in lon/lat."""
    box = shapely.Point(CENTRE).buffer(side_km * 500.0, cap_style="square")
    to_lonlat = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True)
    return box, shapely.transform(shapely.segmentize(box, 5000.0), to_lonlat.transform,
                                  interleaved=False)


def row_groups(root: Path, lonlat: shapely.Geometry) -> tuple[int, int]:
    """(row groups the AOI's bbox filter keeps, row groups in all) over every file."""
    dataset = rd.load(root)._dataset
    expression = F.bbox_expression(shapely.bounds(lonlat).tolist())
    kept = total = 0
    for fragment in dataset.get_fragments():
        total += fragment.metadata.num_row_groups
        kept += len(fragment.split_by_row_group(expression, schema=dataset.schema))
    return kept, total


def measure(root: Path, side_km: float) -> dict:
    native, lonlat = aoi(side_km)
    collection = rd.load(root).subset(**{S.EPSG: EPSG})
    kept, total = row_groups(root, lonlat)
    pool = pa.default_memory_pool()
    base = pool.bytes_allocated()
    started = time.perf_counter()
    hits = collection.subset(geometries=lonlat)
    columns = [S.ID, S.DATETIME, S.ASSETS] + [S.metadata_column(b) for b in BANDS]
    table = hits.to_table(columns=columns)
    scan = time.perf_counter() - started
    arrow_peak = pool.max_memory()  # process-wide high-water of Arrow's pool
    del table
    started = time.perf_counter()
    collection.get_xarray(native, BANDS, geometry_crs=EPSG)
    build = time.perf_counter() - started
    return {"kept": kept, "total": total, "scan": scan, "build": build, "records": len(hits),
            "arrow_peak": arrow_peak - base}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 records instead of 300,000")
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else 300_000
    table = sb.europe_table(rows, sb.s2_tiles())
    print(f"index                {rows:,} records x {len(BANDS)} bands, full metadata structs "
          f"({table.nbytes / 1e9:.2f} GB in memory)")
    with tempfile.TemporaryDirectory(prefix="layout-bench-") as tmp:
        roots = {"time order, 65,536-row groups": Path(tmp) / "legacy",
                 "Hilbert order, ~8 MB row groups": Path(tmp) / "hilbert"}
        for (label, root), legacy in zip(roots.items(), (True, False), strict=True):
            seconds = export(table, root, legacy)
            size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
            print(f"write                {label}: {seconds:.1f} s, {size / 1e6:,.0f} MB")
        del table
        for side in (10.0, 100.0):
            print(f"\n{side:g} km x {side:g} km AOI centred on {CENTRE} (EPSG:{EPSG}), whole year")
            for label, root in roots.items():
                m = measure(root, side)
                print(f"  {label:<32} {m['records']:,} records; row groups kept "
                      f"{m['kept']:,} of {m['total']:,}; subset + read columns "
                      f"{m['scan']:.2f} s; get_xarray build {m['build']:.2f} s")


if __name__ == "__main__":
    main()
