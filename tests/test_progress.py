"""Progress: off in library calls, on in the command line (``--quiet`` hides it); tqdm on
local threads, ``distributed.progress`` on a cluster, a bar of units for streamed work."""

from __future__ import annotations

import dask
import pyarrow as pa
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask.cli import main
from rasteret_dask.runner import compute, compute_streaming

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def table(http_server) -> pa.Table:
    footprint = shapely.to_wkb(shapely.box(14.0, 44.0, 16.0, 46.0))
    return pa.table({
        "id": ["s0", "s1"],
        "datetime": pa.array([1704067200_000000, 1706745600_000000],
                             pa.timestamp("us", tz="UTC")),
        "geometry": [footprint, footprint],
        "red": [http_server.href("scene0_B04.tif"), http_server.href("scene1_B04.tif")],
    })


def _box(cog_dir) -> str:
    import rasterio

    with rasterio.open(cog_dir / "scene0_B04.tif") as src:
        left, top = src.xy(100, 50, offset="ul")
        right, bottom = src.xy(260, 230, offset="ul")
    return f"{left},{bottom},{right},{top}"


def test_library_calls_show_nothing_by_default(table, tmp_path, capsys):
    collection = rd.build_from_table(table, name="t", workspace_dir=tmp_path,
                                     href_column="red", band_codes={"B04": "red"})
    collection.get_numpy(shapely.box(14.9, 44.9, 15.1, 45.1), ["B04"])
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    collection = collection.enrich(only_missing=False, progress=True).collection
    err = capsys.readouterr().err
    assert "enrich COG headers" in err and "100%" in err
    collection.get_numpy(shapely.box(14.9, 44.9, 15.1, 45.1), ["B04"], progress=True)
    err = capsys.readouterr().err
    assert "get_numpy" in err and "100%" in err


def test_cli_enrich_and_read_show_progress_unless_quiet(table, tmp_path, cog_dir, capsys):
    rd.build_from_table(table, name="t", workspace_dir=tmp_path, href_column="red",
                        band_codes={"B04": "red"}, enrich_cog=False)
    index = str(tmp_path / "t")
    assert main(["enrich", index]) == 0
    out, err = capsys.readouterr()
    assert "enriched 2" in out
    assert "enrich COG headers" in err and "100%" in err
    read = ["read", index, "--aoi", _box(cog_dir), "--aoi-crs", "EPSG:32633", "--bands", "B04",
            "--out", str(tmp_path / "a.nc")]
    assert main(read) == 0
    out, err = capsys.readouterr()
    assert "wrote" in out and "read: 100%" in err
    assert main([*read[:-1], str(tmp_path / "b.nc"), "--quiet"]) == 0
    assert main(["enrich", index, "--all", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_cluster_shows_distributed_progress_on_stderr(capsys):
    from distributed import Client, LocalCluster

    tasks = [dask.delayed(sum)([i, 1]) for i in range(5)]
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        assert compute(tasks, client, progress=True, description="sums") == [1, 2, 3, 4, 5]
    out, err = capsys.readouterr()
    assert out == "" and "sums" in err and "100% Completed" in err


def test_streamed_units_show_a_bar_of_units(capsys):
    units = (dask.delayed(abs)(-i) for i in range(7))
    assert compute_streaming(units, progress=True, total=7, description="tiles",
                             in_flight=3) == 7
    err = capsys.readouterr().err
    assert "tiles" in err and "7/7" in err
    assert compute_streaming(dask.delayed(abs)(i) for i in range(3)) == 3
    assert capsys.readouterr().err == ""
