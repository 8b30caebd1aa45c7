"""The seed walkthrough, verbatim but for the STAC URL: build from STAC, enrich, query, read.

``Path.home()`` is pointed at a temporary directory and the working directory is temporary, so
the snippets run as written. The STAC API is rustac on 127.0.0.1; the COGs are served locally.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import pytest

from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.testing.stac import StacServer, descriptor_served_at, sentinel2_items

EPSG = 32643
PIXEL = 40.0
SIZE = 768


@pytest.fixture(scope="module")
def bangalore_stac(tmp_path_factory):
    root = tmp_path_factory.mktemp("bangalore_cogs")
    x, y = pyproj.Transformer.from_crs(4326, EPSG, always_xy=True).transform(77.6, 13.0)
    x0 = round((x - SIZE * PIXEL / 2) / PIXEL) * PIXEL
    y0 = round((y + SIZE * PIXEL / 2) / PIXEL) * PIXEL
    keys = ("red", "nir", "green", "blue")
    for n, key in enumerate(keys):
        write_cog(root / f"{key}.tif", width=SIZE, height=SIZE, blocksize=256,
                  crs=f"EPSG:{EPSG}", transform=(PIXEL, 0, x0, 0, -PIXEL, y0), predictor=2,
                  seed=n)
    with RangeServer(root) as cogs:
        items = sentinel2_items(
            240, start="2024-01-01", months=7, bbox=(77.5, 12.9, 77.7, 13.1),
            href_for=lambda i, key: f"{cogs.url}/{key if key in keys else 'red'}.tif",
            bands=keys, extra_assets=("scl",), seed=3)
        with StacServer(items) as stac, descriptor_served_at("earthsearch/sentinel-2-l2a",
                                                             stac.url):
            yield stac.url  # the Earth Search descriptor applies here as on its own API


def test_seed_walkthrough(bangalore_stac, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    STAC_URL = bangalore_stac  # the only change: "https://earth-search.aws.element84.com/v1"

    # --- 1. Build and enrich ----------------------------------------------------------
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely
    from shapely.geometry import Polygon

    import rasteret_dask as rasteret

    collection = rasteret.build_from_stac(
        name="bangalore",
        stac_api=STAC_URL,
        collection="sentinel-2-l2a",
        bbox=(77.5, 12.9, 77.7, 13.1),
        date_range=("2024-01-01", "2024-06-30"),
        workspace_dir=Path.home() / "rasteret_workspace",
    )
    enriched = collection.dataset.to_table()
    n = enriched.num_rows
    assert n > 50
    assert (tmp_path / "rasteret_workspace" / "bangalore" / "year=2024" / "month=6").is_dir()
    assert not (tmp_path / "rasteret_workspace" / "bangalore" / "year=2024" / "month=7").exists()

    aoi = Polygon([
        (77.55, 13.01), (77.58, 13.01),
        (77.58, 13.08), (77.55, 13.08),
        (77.55, 13.01),
    ])
    aoi_wkb = shapely.to_wkb(aoi)
    enriched = enriched.append_column("aoi", pa.array([aoi_wkb] * n, type=pa.binary()))
    rng = np.random.default_rng(42)
    splits = rng.choice(["train", "val", "test"], size=n, p=[0.7, 0.15, 0.15])
    enriched = enriched.append_column("split", pa.array(splits))
    labels = rng.integers(0, 5, size=n)
    enriched = enriched.append_column("label", pa.array(labels, type=pa.int32()))
    pq.write_table(enriched, "./experiment_v1.parquet")
    collection = rasteret.load("./experiment_v1.parquet")

    # --- 2. Query with DuckDB ---------------------------------------------------------
    import duckdb

    collection = rasteret.load("./experiment_v1.parquet")
    enriched = collection.dataset.to_table()
    con = duckdb.connect()
    result = con.sql("""
    SELECT DISTINCT aoi
    FROM enriched
    WHERE split = 'train' AND "eo:cloud_cover" < 15
    """).fetch_arrow_table()
    aoi_col = result.column("aoi")
    train = collection.subset(split="train", cloud_cover_lt=15)
    ds = train.get_xarray(geometries=aoi_col, bands=["B04", "B08"])
    ndvi = (ds.B08 - ds.B04) / (ds.B08 + ds.B04)
    values = ndvi.compute()
    assert values.sizes["time"] == len(train.subset(geometries=aoi))
    assert np.isfinite(values.values).any()

    monthly = con.sql("""
    SELECT split, month, count(*) AS scenes,
    round(avg("eo:cloud_cover"), 1) AS avg_cloud
    FROM enriched
    GROUP BY split, month
    ORDER BY split, month
    """).fetchall()
    assert sum(row[2] for row in monthly) == n
    per_aoi = con.sql("""
    SELECT aoi, split, count(*) AS scenes
    FROM enriched
    GROUP BY aoi, split
    """).fetchall()
    assert sum(row[2] for row in per_aoi) == n

    # --- 3. Query with PyArrow only ---------------------------------------------------
    import pyarrow.compute as pc

    collection = rasteret.load("./experiment_v1.parquet")
    enriched = collection.dataset.to_table()
    mask = pc.and_(
        pc.equal(enriched.column("split"), "train"),
        pc.less(enriched.column("eo:cloud_cover"), 15.0),
    )
    filtered = enriched.filter(mask)
    unique_wkb = filtered.column("aoi").unique()
    train = collection.subset(split="train", cloud_cover_lt=15)
    ds = train.get_xarray(geometries=unique_wkb, bands=["B04", "B03", "B02"])
    assert set(ds.data_vars) == {"B04", "B03", "B02"}
    assert int(ds.B03.isel(time=0).count().compute()) > 0
