"""End to end on a real cluster: a `dask scheduler` and two `dask worker` processes on 127.0.0.1.

STAC build, re-enrichment and a composite run through the workers; a worker killed in the
middle of the composite still yields the same output as a local run.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pyproj
import shapely
import xarray as xr

import rasteret_dask as rd
from rasteret_dask.testing.dask_cluster import DaskProcessCluster
from rasteret_dask.workflows import composite
from rasteret_dask.workflows.reenrich import reenrich

from .test_ingest_stac import (  # noqa: F401
    BBOX,
    EPSG,
    ES,
    PIXEL,
    _expected,
    _origin,
    _partition_ids,
    cog_server,
    items,
    s2_cogs,
    stac,
)


def _aoi() -> shapely.Polygon:
    x0, y0 = _origin()
    box = shapely.box(x0 + 100 * PIXEL, y0 - 600 * PIXEL, x0 + 600 * PIXEL, y0 - 100 * PIXEL)
    to_lonlat = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True)
    return shapely.transform(box, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))


def _markers(out) -> int:
    return len(list((out / "_done").glob("*/zarr.json"))) if (out / "_done").exists() else 0


def test_reenrich_and_composite_on_scheduler_and_two_workers(stac, items, tmp_path):  # noqa: F811
    kwargs = dict(aoi=_aoi(), bands=["B04", "B08"], tile_size=128,
                  date_range=("2024-01-01", "2024-02-29"))
    with DaskProcessCluster(n_workers=2, nthreads=1) as cluster, rd.connect(cluster.address) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        rd.build_from_stac(name="s2", stac_api=stac.url, collection="sentinel-2-l2a", data_source=ES,
                           bbox=BBOX,
                           date_range=("2024-01-01", "2024-01-31"), workspace_dir=tmp_path,
                           client=client, enrich_cog=False, progress=False)
        root = tmp_path / "s2"
        report = reenrich(root, client=client, until="2024-02-29")
        assert report.exit_code == 0 and report.stac_rows_added > 0
        assert _partition_ids(root) == _expected(items, "2024-01-01", "2024-02-29")
        described = rd.load(root).describe()
        assert described["enriched"]["B04"] == described["records"]
        assert reenrich(root, client=client, until="2024-02-29").nothing_to_do

        reference = tmp_path / "reference.zarr"
        local = composite(root, out=reference, client=client, **kwargs)  # no failure
        assert local.tiles_total >= 9

        out = tmp_path / "cluster.zarr"
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["report"] = composite(root, out=out, client=client, in_flight=4,
                                              **kwargs)
            except BaseException as exc:  # surfaced below
                outcome["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 60
        while _markers(out) < 2 and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        killed_mid_run = worker.is_alive() and _markers(out) < local.tiles_total
        cluster.kill_worker(0)
        worker.join(timeout=180)
        assert not worker.is_alive() and "error" not in outcome, outcome.get("error")
        assert killed_mid_run
        assert outcome["report"].tiles_written + outcome["report"].tiles_skipped == local.tiles_total
    want, got = xr.open_zarr(reference), xr.open_zarr(out)
    for name in ("B04", "B08", "ndvi"):
        np.testing.assert_array_equal(got[name].values, want[name].values)
