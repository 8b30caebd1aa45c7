"""Shared fixtures: generated COGs served from 127.0.0.1 over HTTP (Range) and S3 (moto)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.grids import GridFixture, GridScenes, grid_fixture, write_grid_scenes
from rasteret_dask.testing.servers import RangeServer, S3Server

BUCKET = "cogs"


@pytest.fixture(scope="session")
def cog_dir(tmp_path_factory) -> Path:
    """A handful of small COGs: two UTM scenes per band and a 4326 one, deflate + predictor."""
    root = tmp_path_factory.mktemp("cogs")
    for scene in range(4):
        for band_no, band in enumerate(("B04", "B08")):
            write_cog(root / f"scene{scene}_{band}.tif", width=700, height=600, blocksize=256,
                      dtype="uint16", predictor=2, nodata=0, seed=10 * scene + band_no)
    write_cog(root / "wgs84.tif", width=300, height=300, blocksize=256, crs="EPSG:4326",
              dtype="float32", predictor=3, seed=99)
    return root


@pytest.fixture(scope="session")
def http_server(cog_dir):
    with RangeServer(cog_dir) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(cog_dir):
    with S3Server() as server:
        server.create_bucket(BUCKET)
        server.upload_dir(cog_dir, BUCKET)
        yield server


@pytest.fixture(scope="session")
def grid_scenes(tmp_path_factory) -> GridScenes:
    """Sentinel-2-like COGs in EPSG:32643 and 32644 across 78 E (rasteret_dask.testing.grids)."""
    return write_grid_scenes(tmp_path_factory.mktemp("grid-cogs"))


@pytest.fixture(scope="session")
def grid_server(grid_scenes):
    with RangeServer(grid_scenes.root) as server:
        yield server


@pytest.fixture(scope="session")
def two_zones(grid_scenes, grid_server, tmp_path_factory) -> GridFixture:
    """The scenes over HTTP: pystac Items and the enriched index built from them."""
    return grid_fixture(tmp_path_factory.mktemp("grid-index"), grid_scenes, grid_server.url)
