"""``composite`` over any grid: records of two UTM zones composited into EPSG:32643 and
EPSG:3857 equal ``get_xarray`` of the whole grid reduced by xarray's groupby per month, for
each reducer and with a quality mask; reruns, failures, the JSON report, argument errors,
and a real ``dask scheduler`` + 2 ``dask worker`` run with a worker killed mid-run."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox

from rasteret_dask.testing.dask_cluster import DaskProcessCluster
from rasteret_dask.testing.grids import grid_fixture, write_grid_scenes
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.workflows import composite

rasterio = pytest.importorskip("rasterio")
from rasterio.features import geometry_mask  # noqa: E402

BANDS = ["B02", "B11"]
NDVI = {"red": "B02", "nir": "B11"}  # the fixture has no B04/B08: any two bands make an NDVI
# an L-shaped AOI in EPSG:32643 across both zones' records (the 32644 ones lie east of x
# 819700); its edges are on no pixel centre of the grids used (rasterisers differ there)
AOI_32643 = shapely.Polygon([(814005, 1437505), (828005, 1437505), (828005, 1447005),
                             (821005, 1447005), (821005, 1442005), (814005, 1442005)])
SCL_DROP = [3, 8, 9, 10]
composite_module = sys.modules["rasteret_dask.workflows.composite"]


@pytest.fixture(scope="module")
def zones(tmp_path_factory):
    """Seven passes (March and one in April) of a 9.6 km record in each zone, overlapping."""
    root = tmp_path_factory.mktemp("composite-grids")
    scenes = write_grid_scenes(root / "cogs", pixels=960, passes=7)
    with RangeServer(scenes.root) as server:
        yield grid_fixture(root / "index", scenes, server.url), server


def aoi_in(crs: int) -> shapely.Geometry:
    to = pyproj.Transformer.from_crs(32643, crs, always_xy=True)
    return shapely.transform(shapely.segmentize(AOI_32643, 100.0), lambda xy: np.column_stack(
        to.transform(xy[:, 0], xy[:, 1])))


def grid_of(crs: int, resolution: float) -> tuple[GeoBox, shapely.Geometry]:
    aoi = aoi_in(crs)
    return GeoBox.from_bbox(aoi.bounds, f"EPSG:{crs}", resolution=resolution), aoi


def observations(collection, geobox, tile, mask=None) -> dict[str, xr.DataArray]:
    """get_xarray of the whole grid (solar days), nodata and masked pixels as NaN."""
    chunks = {"x": tile, "y": tile}
    ds = collection.get_xarray(None, BANDS, geobox=geobox, groupby="solar_day",
                               chunks=chunks).load()
    out = {b: ds[b].where(ds[b] != 0).astype(np.float32) for b in BANDS}
    if mask is not None:
        scl = collection.get_xarray(None, ["SCL"], geobox=geobox, groupby="solar_day",
                                    chunks=chunks).load()["SCL"]
        assert list(scl["id"].values) == list(ds["id"].values)
        out = {b: v.where(~scl.isin(mask)) for b, v in out.items()}
    return out


def monthly(values: xr.DataArray, reducer: str) -> xr.DataArray:
    """xarray's reduction per calendar month (skipna)."""
    months = values["time"].dt.strftime("%Y-%m").rename("month")
    grouped = values.groupby(months)
    if reducer == "count":
        return values.notnull().groupby(months).sum("time").astype(np.uint16)
    if reducer.startswith("p"):
        return grouped.quantile(float(reducer[1:]) / 100, dim="time").drop_vars("quantile")
    return getattr(grouped, reducer)("time")


def outside_aoi(geobox: GeoBox, aoi: shapely.Geometry) -> np.ndarray:
    return geometry_mask([shapely.geometry.mapping(aoi)], geobox.shape, geobox.transform)


def expected(collection, geobox, aoi, tile, reducer="median", mask=None) -> dict[str, np.ndarray]:
    values = observations(collection, geobox, tile, mask)
    outside = outside_aoi(geobox, aoi)
    result = {}
    for band, v in values.items():
        reduced = monthly(v, reducer).transpose("month", "y", "x").values
        reduced[:, outside] = 0 if reducer == "count" else np.nan
        result[band] = reduced.astype(np.uint16 if reducer == "count" else np.float32)
    if reducer != "count":
        with np.errstate(all="ignore"):
            result["ndvi"] = ((result["B11"] - result["B02"])
                              / (result["B11"] + result["B02"])).astype(np.float32)
    return result


def run(zones, out, crs, resolution, tile, **kwargs):
    fixture, _ = zones
    return composite(fixture.collection.path, aoi=aoi_in(crs), aoi_crs=crs, bands=BANDS,
                     out=out, crs=crs, resolution=resolution, tile_size=tile, **NDVI, **kwargs)


@pytest.mark.parametrize(("crs", "resolution", "tile"), [(32643, 20, 128), (3857, 40, 64)])
def test_composite_onto_a_grid_equals_get_xarray_reduced_per_month(zones, tmp_path, crs,
                                                                    resolution, tile):
    fixture, _ = zones
    report = run(zones, tmp_path / "c.zarr", crs, resolution, tile)
    geobox, aoi = grid_of(crs, resolution)
    assert report.months == ("2024-03", "2024-04") and report.reducer == "median"
    assert report.variables == ("B02", "B11", "ndvi") and report.tiles_failed == 0
    assert report.shape == geobox.shape and report.crs_epsg == crs
    assert report.tiles_written == report.tiles_total == report.tiles_submitted > 4
    assert report.tiles_outside >= 1  # the L leaves a corner tile out: never written
    ds = xr.open_zarr(tmp_path / "c.zarr").load()
    assert pyproj.CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"]).to_epsg() == crs
    geo = [float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split()]
    t = geobox.transform
    assert geo == [t.c, t.a, t.b, t.f, t.d, t.e]
    assert t.c % resolution == 0 and t.f % resolution == 0  # anchored
    np.testing.assert_allclose(ds["x"].values, geobox.coords["x"].values)
    np.testing.assert_allclose(ds["y"].values, geobox.coords["y"].values)
    assert ds["B02"].encoding["chunks"] == (1, tile, tile) and ds["B02"].dtype == np.float32
    want = expected(fixture.collection, geobox, aoi, tile)
    for name in ("B02", "B11", "ndvi"):
        np.testing.assert_array_equal(ds[name].values, want[name], err_msg=name)
    assert np.isfinite(ds["B02"].values[0]).mean() > 0.5
    assert np.isfinite(ds["B02"].values[1]).mean() > 0.2  # April: one pass


@pytest.mark.parametrize("reducer", ["mean", "min", "max", "count", "p90"])
def test_each_reducer_equals_xarray(zones, tmp_path, reducer):
    fixture, _ = zones
    report = run(zones, tmp_path / "r.zarr", 32643, 80, 64, reducer=reducer)
    geobox, aoi = grid_of(32643, 80)
    ds = xr.open_zarr(tmp_path / "r.zarr").load()
    want = expected(fixture.collection, geobox, aoi, 64, reducer)
    assert report.reducer == reducer and set(report.variables) == set(want)
    for name, values in want.items():
        assert ds[name].dtype == values.dtype
        np.testing.assert_allclose(ds[name].values, values, rtol=1e-6, err_msg=name)
    if reducer == "count":
        assert "ndvi" not in ds and ds["B02"].values.max() == 6  # six passes in March
        assert ds["B02"].attrs["long_name"] == "monthly count of valid observations of B02"


def test_quality_mask_drops_pixels_before_reducing(zones, tmp_path):
    fixture, _ = zones
    report = run(zones, tmp_path / "m.zarr", 32643, 40, 64,
                 mask={"band": "SCL", "drop": SCL_DROP})
    geobox, aoi = grid_of(32643, 40)
    ds = xr.open_zarr(tmp_path / "m.zarr").load()
    want = expected(fixture.collection, geobox, aoi, 64, mask=SCL_DROP)
    for name in ("B02", "B11", "ndvi"):
        np.testing.assert_array_equal(ds[name].values, want[name], err_msg=name)
    unmasked = expected(fixture.collection, geobox, aoi, 64)["B02"]
    assert (np.isnan(want["B02"]) & ~np.isnan(unmasked)).any()  # the mask removed pixels
    assert report.tiles_failed == 0


def test_rerun_skips_finished_tiles_and_a_failed_tile_is_redone(zones, tmp_path, monkeypatch):
    fixture, server = zones
    out = tmp_path / "f.zarr"
    real = composite_module.run_tile
    broken = "tile-0001-0001"

    def failing(tile, job):
        if tile.key == broken:
            raise OSError("the store went away")
        return real(tile, job)

    monkeypatch.setattr(composite_module, "run_tile", failing)
    first = run(zones, out, 32643, 40, 64, report_path=tmp_path / "first.json")
    assert first.tiles_failed == 1 and first.exit_code == 1
    assert first.tiles_written == first.tiles_total - 1
    assert first.errors == ({"tile": broken, "error": "OSError: the store went away"},)
    written = json.loads((tmp_path / "first.json").read_text())
    assert written["tiles_failed"] == 1 and written["exit_code"] == 1
    assert written["report_path"] == str(tmp_path / "first.json")
    assert not (out / "_done" / broken).exists()
    monkeypatch.setattr(composite_module, "run_tile", real)
    second = run(zones, out, 32643, 40, 64)
    assert (second.tiles_written, second.tiles_skipped) == (1, first.tiles_total - 1)
    assert second.exit_code == 0 and second.tiles_submitted == 1
    server.reset()
    third = run(zones, out, 32643, 40, 64)
    assert third.tiles_submitted == 0 and third.tiles_skipped == third.tiles_total
    assert server.count(method=None) == 0
    geobox, aoi = grid_of(32643, 40)
    want = expected(fixture.collection, geobox, aoi, 64)
    np.testing.assert_array_equal(xr.open_zarr(out)["B02"].values, want["B02"])


def test_an_aoi_beyond_the_records_writes_empty_tiles_and_progress_shows(zones, tmp_path,
                                                                         capsys):
    fixture, _ = zones
    wide = shapely.box(806000, 1437500, 828000, 1447000)  # reaches 6 km west of every record
    report = composite(fixture.collection.path, aoi=wide, aoi_crs=32643, bands=["B02"],
                       out=tmp_path / "e.zarr", crs=32643, resolution=80, tile_size=32,
                       reducer="count", progress=True)
    assert report.tiles_empty >= 2 and report.tiles_written == report.tiles_total
    err = capsys.readouterr().err
    assert "composite" in err and f"{report.tiles_total}/{report.tiles_total}" in err
    ds = xr.open_zarr(tmp_path / "e.zarr").load()
    assert (ds["B02"].values[:, :, :32] == 0).all()  # west of the records: no observation


def test_a_geobox_composites_the_whole_grid_and_the_default_grid_is_the_records(zones,
                                                                                tmp_path):
    fixture, _ = zones
    geobox = GeoBox.from_bbox((815040, 1440000, 818880, 1443840), "EPSG:32643", resolution=60)
    report = composite(fixture.collection.path, bands=["B02"], geobox=geobox,
                       out=tmp_path / "g.zarr", tile_size=32, reducer="max")
    assert report.shape == (64, 64) and report.tiles_total == 4
    ds = xr.open_zarr(tmp_path / "g.zarr").load()
    want = observations(fixture.collection, geobox, 32)["B02"]
    np.testing.assert_array_equal(ds["B02"].values, monthly(want, "max").values)
    default = composite(fixture.collection.path, aoi=(77.9, 13.0, 77.91, 13.01),
                        bands=["B02", "B11"], out=tmp_path / "d.zarr", tile_size=256)
    assert default.crs_epsg == 32643 and default.resolution == (10.0, 10.0)  # the records',
    assert default.tiles_failed == 0  # the finest band
    march = fixture.collection.subset(date_range=("2024-03-01", "2024-03-31"))
    only = composite(march, bands=["B02"], geobox=geobox, out=tmp_path / "m.zarr",
                     tile_size=32, reducer="max")  # workers apply the collection's filter
    assert only.months == ("2024-03",) and only.tiles_written == 4
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "m.zarr")["B02"].values,
                                  ds["B02"].values[:1])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"reducer": "p101"}, r"reducer='p101' is not a reducer"),
    ({"reducer": "average"}, r"reducer='average' is not a reducer"),
    ({"reducer": 90}, r"reducer=90 is not a reducer"),
    ({"mask": {"band": "QA", "drop": [1]}}, r"QA"),
    ({"mask": {"band": "SCL", "drop": []}}, r"'drop' is empty"),
    ({"mask": {"band": "SCL"}}, r"exactly the keys 'band' and 'drop'"),
    ({"mask": {"band": "SCL", "drop": [3.5]}}, r"must be integers"),
    ({"resolution": -10}, r"resolution=-10 must be a positive"),
    ({"crs": "EPSG:nope"}, r"crs='EPSG:nope' is not a CRS"),
    ({"resampling": "fancy"}, r"resampling='fancy' is not a resampling"),
    ({"tile_size": 0}, r"tile_size must be a whole number"),
    ({"groupby": len}, r"groupby=.* is not a grouping a composite records"),
    ({"threads_per_tile": 0}, r"threads_per_tile must be an int"),
    ({"bands": ["B99"]}, r"B99"),
    ({"aoi": None}, r"aoi= is required"),
    ({"geobox": GeoBox.from_bbox((0, 0, 10, 10), "EPSG:32643", resolution=1),
      "crs": 32643}, r"geobox= sets the whole output grid"),
    ({"date_range": ("2023-01-01", "2023-02-01")}, r"no (enriched )?record meets the (AOI|output grid)"),
])
def test_bad_arguments_raise_naming_the_value(zones, tmp_path, kwargs, message):
    fixture, _ = zones
    args = {"aoi": AOI_32643, "aoi_crs": 32643, "bands": ["B02"], "out": tmp_path / "x.zarr",
            **kwargs}
    with pytest.raises(ValueError, match=message):
        composite(fixture.collection.path, **args)
    assert not (tmp_path / "x.zarr").exists()


def _markers(out: Path) -> int:
    done = out / "_done"
    return sum(1 for p in done.iterdir() if p.is_dir()) if done.is_dir() else 0


def test_a_killed_worker_loses_nothing_on_a_real_cluster(zones, tmp_path):
    """``dask scheduler`` + 2 ``dask worker`` processes: composite a two-zone area, SIGKILL a
    worker once a few tiles are marked, and the store equals an undisturbed run's."""
    from distributed import Client

    fixture, _ = zones
    kwargs = {"aoi": AOI_32643, "aoi_crs": 32643, "bands": BANDS, "crs": 32643,
              "resolution": 40, "tile_size": 64, "mask": {"band": "SCL", "drop": SCL_DROP},
              **NDVI}
    with DaskProcessCluster(n_workers=2, nthreads=1) as cluster, \
            Client(cluster.address, set_as_default=False) as client:
        calm = composite(fixture.collection.path, out=tmp_path / "calm.zarr", client=client,
                         **kwargs)
        assert calm.tiles_written == calm.tiles_total >= 16 and calm.tiles_failed == 0
        out, outcome = tmp_path / "killed.zarr", {}

        def job() -> None:
            try:
                outcome["report"] = composite(fixture.collection.path, out=out, client=client,
                                              in_flight=4, **kwargs)
            except BaseException as exc:  # surfaced below
                outcome["error"] = exc

        thread = threading.Thread(target=job)
        thread.start()
        deadline = time.monotonic() + 60
        while _markers(out) < 4 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        marked_at_kill = _markers(out)
        running = thread.is_alive()
        cluster.kill_worker(1)
        thread.join(timeout=180)
        assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
        assert running and marked_at_kill < calm.tiles_total  # killed mid-run
        report = outcome["report"]
        assert report.tiles_written == report.tiles_total == calm.tiles_total
        assert report.tiles_failed == 0 and len(client.scheduler_info()["workers"]) == 1
    assert _markers(out) == calm.tiles_total
    xr.testing.assert_identical(xr.open_zarr(out).load(), xr.open_zarr(tmp_path / "calm.zarr").load())
    shutil.rmtree(out)


def test_the_command_line_composites_onto_a_grid_and_writes_a_report(zones, tmp_path, capsys):
    from workflows.composite import main

    fixture, _ = zones
    out = tmp_path / "cli.zarr"
    args = ["--index", fixture.collection.path, "--aoi", AOI_32643.wkt, "--aoi-crs",
            "EPSG:32643", "--bands", "B02,B11", "--red", "B02", "--nir", "B11", "--out",
            str(out), "--crs", "EPSG:3857", "--resolution", "80", "--tile-size", "64",
            "--reducer", "p90", "--mask", "SCL:3,8,9,10", "--groupby", "none", "--quiet"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["reducer"] == "p90" and printed["crs_epsg"] == 3857
    assert printed["report_path"].startswith(f"{out}.composite-")
    assert json.loads(Path(printed["report_path"]).read_text()) == printed
    want = composite(fixture.collection.path, aoi=AOI_32643, aoi_crs=32643, bands=BANDS,
                     out=tmp_path / "lib.zarr", crs="EPSG:3857", resolution=80, tile_size=64,
                     reducer="p90", mask={"band": "SCL", "drop": SCL_DROP}, groupby=None,
                     **NDVI)
    assert want.tiles_total == printed["tiles_written"]
    got, lib = xr.open_zarr(out).load(), xr.open_zarr(tmp_path / "lib.zarr").load()
    xr.testing.assert_identical(got, lib)
    assert main([*args[:-7], "--mask", "SCL", "--quiet"]) == 2
    assert "--mask 'SCL': give BAND:V,V,..." in capsys.readouterr().err
    assert main([*args[:-7], "--reducer", "p200", "--quiet"]) == 2
    assert "reducer='p200' is not a reducer" in capsys.readouterr().err


def test_a_tile_whose_cached_index_was_replaced_opens_it_again(zones, tmp_path, monkeypatch):
    import rasteret_dask as rd
    from rasteret_dask.workflows._tiles import open_index, run_tile

    fixture, _ = zones
    copy = tmp_path / "index"
    shutil.copytree(fixture.collection.path, copy)
    jobs, real = [], composite_module.run_tiles

    def capture(function, tiles, job, **kwargs):
        jobs.append((tiles, job))
        return real(function, tiles, job, **kwargs)

    monkeypatch.setattr(composite_module, "run_tiles", capture)
    args = {"aoi": AOI_32643, "aoi_crs": 32643, "bands": ["B02"], "crs": 32643,
            "resolution": 80, "tile_size": 64}
    first = composite(str(copy), out=tmp_path / "a.zarr", **args)
    before = xr.open_zarr(tmp_path / "a.zarr").load()
    tiles, job = jobs[0]
    assert job.index.path == str(copy) and job.index.version == rd.load(copy).version
    report = rd.load(copy).enrich(only_missing=False, progress=False)  # every file replaced
    assert report.partitions_rewritten >= 1
    ref = job.index
    cached = open_index(ref.path, ref.storage_options, ref.name, ref.data_source, ref.version)
    assert cached.version == ref.version  # this process still holds the replaced version
    outcome = run_tile(tiles[0], job)  # its files are gone: the tile opens the index again
    assert not outcome.empty and first.tiles_failed == 0
    reopened = open_index(ref.path, ref.storage_options, ref.name, ref.data_source, ref.version)
    assert reopened.version == rd.load(copy).version > ref.version
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "a.zarr").load(), before)


def test_an_in_memory_collection_is_composited_on_threads(zones, tmp_path):
    import rasteret_dask as rd

    fixture, _ = zones
    memory = rd.Collection(pyarrow_dataset(fixture.collection.to_table()), fixture.collection.info)
    assert memory.path is None
    args = {"aoi": AOI_32643, "aoi_crs": 32643, "bands": ["B02"], "crs": 3857,
            "resolution": 80, "tile_size": 64, "reducer": "min"}
    got = composite(memory, out=tmp_path / "mem.zarr", **args)
    want = composite(fixture.collection.path, out=tmp_path / "path.zarr", **args)
    assert got.tiles_written == want.tiles_written > 1
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "mem.zarr").load(),
                                xr.open_zarr(tmp_path / "path.zarr").load())


def pyarrow_dataset(table):
    import pyarrow.dataset as pads

    return pads.dataset(table)
