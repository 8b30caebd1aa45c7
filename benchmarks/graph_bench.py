"""Graph-build benchmark: a lazy read over 1,000 records x 4 bands x a 10 km x 10 km AOI.

Nothing is fetched: the records carry Sentinel-2-sized header metadata (10980 x 10980, 1024 x
1024 tiles) and ``get_xarray`` only plans and builds the graph. Prints build time (target under
2 s on a 2-core machine), task count and pickled graph size.
Run: .venv/bin/python benchmarks/graph_bench.py [records]
"""

from __future__ import annotations

import pickle
import sys
import time

import numpy as np
import pyarrow as pa
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.testing.tables import synthetic_table

BANDS = ("B02", "B03", "B04", "B08")


def s2_metadata() -> dict:
    """A Sentinel-2 10 m band's header metadata (T33 zone, 1024 x 1024 tiles)."""
    tiles = 11 * 11
    offsets = (2688 + np.arange(tiles) * 1_500_000).tolist()
    return {
        "image_width": 10980, "image_height": 10980, "tile_width": 1024, "tile_height": 1024,
        "dtype": "uint16", "transform": [10.0, 0.0, 499980.0, 0.0, -10.0, 5000040.0],
        "predictor": 2, "compression": 8, "tile_offsets": offsets,
        "tile_byte_counts": [1_400_000] * tiles, "pixel_scale": [10.0, 10.0, 0.0],
        "tiepoint": [0.0, 0.0, 0.0, 499980.0, 5000040.0, 0.0], "nodata": 0.0,
        "samples_per_pixel": 1, "planar_configuration": 1, "photometric": 1,
        "extra_samples": [], "crs_epsg": 32633, "jpeg_tables": None, "lerc_parameters": None,
        "overviews": [], "header_bytes": 2688,
    }


def main(records: int = 1000) -> None:
    table = synthetic_table(records, months=12, bands=BANDS, bbox=(15.0, 44.5, 16.0, 45.5),
                            footprint_deg=0.99, seed=3)
    metadata = pa.array([s2_metadata()] * records, type=S.METADATA_TYPE)
    for band in BANDS:
        table = table.append_column(S.metadata_column(band), metadata)
    collection = rd.build_collection_from_table(table, name="graph")
    aoi = shapely.box(530_000, 4_960_000, 540_000, 4_970_000)  # 10 km x 10 km, EPSG:32633
    started = time.perf_counter()
    ds = collection.get_xarray(aoi, list(BANDS), geometry_crs=32633)
    built = time.perf_counter() - started
    graph = ds.__dask_graph__()
    tasks = len(graph)
    size = len(pickle.dumps(dict(graph), protocol=5))
    print(f"records x bands      {ds.sizes['time']} x {len(BANDS)}, output {dict(ds.sizes)}")
    print(f"graph build time     {built:.2f} s (target < 2 s)")
    print(f"tasks                {tasks:,}  ({ds['B04'].data.npartitions:,} chunks per band)")
    print(f"pickled graph        {size / 1e6:.1f} MB ({size / tasks:.0f} B per task)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
