"""Every ```python block of README.md runs as written: in order, as one session, in an empty
working directory, against local servers.

What the README reaches outside the machine is provided here, and nothing else is changed:

- the Earth Search STAC API URL is replaced by a local STAC API (rustac) whose items are
  Sentinel-2-like (blue, green, red, nir at "10 m", swir16 and scl at "20 m", raster:bands
  scale and offset) over Bangalore (EPSG:32643) and, for the output-grid examples, around
  EPSG:32644 (300000, 2190000); the Earth Search descriptor answers for that URL as it does
  for its own (``descriptor_served_at``);
- ``items.parquet`` in the working directory holds the same items as stac-geoparquet;
- ``s3://bucket`` is a local S3 (moto), reached through the dask config
  ``rasteret_dask.storage_options`` as the README says;
- ``tcp://scheduler:8786`` is replaced by a local scheduler's address.
"""

from __future__ import annotations

import re
from pathlib import Path

import dask.config
import pyproj
import pytest

import rasteret_dask as rd
from rasteret_dask.catalog import unregister
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.servers import RangeServer, S3Server
from rasteret_dask.testing.stac import StacServer, descriptor_served_at, sentinel2_items

pytestmark = pytest.mark.timeout(600)

README = Path(__file__).resolve().parents[1] / "README.md"
EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
SCHEDULER = "tcp://scheduler:8786"
ES = "earthsearch/sentinel-2-l2a"
PIXEL = 40.0  # the "10 m" bands; "20 m" ones at twice that
SIZE = 768
KEYS = {"blue": 1, "green": 1, "red": 1, "nir": 1, "swir16": 2, "scl": 2}  # key -> pixel factor
AREAS = {  # CRS -> (lon/lat bbox of the items, upper-left corner of the COGs or None: centred)
    32643: ((77.5, 12.9, 77.7, 13.1), None),
    32644: ((79.05, 19.75, 79.3, 19.95), (295000.0, 2215000.0)),
}


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, source) of every fenced ```python block, in order."""
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        blocks.append((text[:match.start()].count("\n") + 2, match.group(1)))
    return blocks


def test_the_readme_has_python_blocks_that_compile():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 10
    for line, source in blocks:
        compile(source, f"README.md:{line}", "exec")


def _origin(epsg: int, bbox, corner) -> tuple[float, float]:
    if corner is not None:
        return corner
    to_utm = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    x, y = to_utm.transform((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2)
    half = SIZE * PIXEL / 2
    return round((x - half) / PIXEL) * PIXEL, round((y + half) / PIXEL) * PIXEL


@pytest.fixture(scope="module")
def cogs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme_cogs")
    for epsg, (bbox, corner) in AREAS.items():
        x0, y0 = _origin(epsg, bbox, corner)
        for variant in range(2):
            for n, (key, factor) in enumerate(KEYS.items()):
                pixel, size = PIXEL * factor, SIZE // factor
                write_cog(root / f"{epsg}_{key}_{variant}.tif", width=size, height=size,
                          blocksize=256, crs=f"EPSG:{epsg}",
                          transform=(pixel, 0, x0, 0, -pixel, y0),
                          dtype="uint8" if key == "scl" else "uint16", predictor=2, nodata=0,
                          seed=10 * variant + n)
    return root


@pytest.fixture(scope="module")
def world(cogs, tmp_path_factory):
    """The local STAC API, COG server, S3 and scheduler the README's session runs against."""
    import rustac
    from distributed import LocalCluster

    with RangeServer(cogs) as server:
        items = []
        for epsg, (bbox, _) in AREAS.items():
            def href(i: int, key: str, epsg: int = epsg) -> str:
                return server.href(f"{epsg}_{key}_{i % 2}.tif")

            items += sentinel2_items(18 if epsg == 32643 else 6, months=6, bbox=bbox,
                                     epsg=epsg, href_for=href, seed=epsg,
                                     bands=("blue", "green", "red", "nir", "swir16"),
                                     extra_assets=("scl",))
        parquet = tmp_path_factory.mktemp("readme_items") / "items.parquet"
        rustac.write_sync(str(parquet), {"type": "FeatureCollection", "features": items})
        with StacServer(items) as stac, S3Server() as s3, \
                LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                             dashboard_address=None) as scheduler, \
                descriptor_served_at(ES, stac.url):
            s3.create_bucket("bucket")
            yield {"stac": stac.url, "s3": s3.storage_options, "parquet": parquet,
                   "scheduler": scheduler.scheduler_address}


def test_every_readme_snippet_runs_as_written(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RASTERET_DASK_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / "items.parquet").write_bytes(world["parquet"].read_bytes())
    substitutions = {EARTH_SEARCH: world["stac"], SCHEDULER: world["scheduler"]}
    namespace: dict = {"__name__": "readme"}
    blocks = python_blocks(README.read_text())
    registered = {d.id for d in rd.descriptors()}
    try:
        with dask.config.set({"rasteret_dask.storage_options": {"s3": world["s3"]}}):
            for line, source in blocks:
                for real, local in substitutions.items():
                    source = source.replace(real, local)
                try:
                    exec(compile(source, f"README.md:{line}", "exec"), namespace)
                except Exception as exc:
                    raise AssertionError(f"the README snippet at line {line} failed: "
                                         f"{type(exc).__name__}: {exc}") from exc
    finally:  # descriptors the session registered are this process's only: forget them
        for descriptor in rd.descriptors():
            if descriptor.id not in registered:
                unregister(descriptor.id)
    # what the session made is what the README says it makes
    assert (tmp_path / "index").is_dir() and (tmp_path / "ws" / "bangalore").is_dir()
    assert namespace["collection"].describe()["records"] > 0
    assert namespace["frame"].shape[0] > 0 and namespace["t"].num_rows > 0
