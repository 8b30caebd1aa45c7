"""Synthetic Sentinel-2-like record tables for tests, the demo and benchmarks (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import shapely

from .. import schema as S

__all__ = ["synthetic_table"]


def synthetic_table(
    n: int,
    *,
    months: int = 12,
    start_year: int = 2024,
    bands: Sequence[str] = ("B04", "B08"),
    bbox: tuple[float, float, float, float] = (5.0, 45.0, 15.0, 55.0),
    footprint_deg: float = 1.0,
    href_template: str = "s3://bucket/{id}/{band}.tif",
    epsg: int = 32633,
    seed: int = 0,
) -> pa.Table:
    """``n`` records spread evenly over ``months`` months, with footprints inside ``bbox``.

    Columns: the four required ones plus ``eo:cloud_cover``, ``proj:epsg``, ``platform`` and
    ``s2:mgrs_tile`` as user columns.
    """
    rng = np.random.default_rng(seed)
    month_index = np.sort(rng.integers(0, months, n))
    years = start_year + month_index // 12
    month = month_index % 12 + 1
    day = rng.integers(1, 29, n)
    seconds = rng.integers(0, 86_400, n)
    dates = (
        np.array([f"{y:04d}-{m:02d}-{d:02d}" for y, m, d in zip(years, month, day)],
                 dtype="datetime64[us]")
        + seconds.astype("timedelta64[s]")
    )
    minx = rng.uniform(bbox[0], bbox[2] - footprint_deg, n)
    miny = rng.uniform(bbox[1], bbox[3] - footprint_deg, n)
    boxes = shapely.box(minx, miny, minx + footprint_deg, miny + footprint_deg)
    ids = np.array([f"S2_{i:08d}" for i in range(n)])
    assets = {}
    for band in bands:
        hrefs = [href_template.format(id=i, band=band) for i in ids]
        assets[band] = pa.StructArray.from_arrays(
            [pa.array(hrefs, pa.string()), pa.array(np.zeros(n, np.int32))],
            fields=list(S.ASSET_TYPE),
        )
    tiles = np.array([f"33T{chr(65 + k % 26)}{chr(65 + (k // 26) % 26)}" for k in range(n)])
    return pa.table(
        {
            S.ID: pa.array(ids, pa.string()),
            S.DATETIME: pa.array(dates, pa.timestamp("us")).cast(S.DATETIME_TYPE),
            S.GEOMETRY: pa.array(shapely.to_wkb(boxes), pa.binary()),
            S.ASSETS: pa.StructArray.from_arrays(list(assets.values()), names=list(bands)),
            S.CLOUD_COVER: pa.array(rng.uniform(0, 100, n), pa.float64()),
            S.EPSG: pa.array(np.full(n, epsg, np.int32)),
            "platform": pa.array(rng.choice(["sentinel-2a", "sentinel-2b"], n)),
            "s2:mgrs_tile": pa.array(tiles),
        }
    )
