"""The ``composite`` workflow: monthly nan-medians and NDVI equal numpy over rasterio reads,
the store's coords/CRS, resumability (markers, zero requests on a rerun), parameter checks,
a distributed run, and the runnable script."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely
import xarray as xr
from affine import Affine

import rasteret_dask as rd
from rasteret_dask.testing.cogs import synthetic_pixels, write_cog
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.workflows import composite

from .test_read_helpers import record_table, to_crs

rasterio = pytest.importorskip("rasterio")
from rasterio.features import geometry_mask  # noqa: E402

SIZE, BLOCK, TILE = 512, 128, 128
ORIGIN = (500_000.0, 5_000_000.0)
# (date, pixel shift (cols, rows) of the scene against scene 0)
SCENES = [("2024-01-05", (0, 0)), ("2024-01-15", (0, 0)), ("2024-01-25", (64, -32)),
          ("2024-02-10", (0, 0)), ("2024-02-20", (0, 0))]
BANDS = ["B04", "B08"]
# AOI in scene-0 pixels (col0, row0, col1, row1): reaches 270 px east of the images
AOI_PIXELS = (40.3, 30.6, 850.2, 290.4)


def transform_of(shift) -> Affine:
    return Affine(10.0, 0.0, ORIGIN[0] + 10.0 * shift[0], 0.0, -10.0, ORIGIN[1] - 10.0 * shift[1])


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("composite-cogs")
    rng = np.random.default_rng(7)
    for k, (_, shift) in enumerate(SCENES):
        for b, band in enumerate(BANDS):
            data = synthetic_pixels(SIZE, SIZE, "uint16", seed=10 * k + b)
            data[0][rng.random((SIZE, SIZE)) < 0.05] = 0  # scattered nodata
            write_cog(root / f"s{k}_{band}.tif", data=data, blocksize=BLOCK, predictor=2,
                      nodata=0, transform=tuple(transform_of(shift))[:6])
    return root


@pytest.fixture(scope="module")
def server(scenes):
    with RangeServer(scenes) as srv:
        yield srv


@pytest.fixture(scope="module")
def index(scenes, server, tmp_path_factory) -> str:
    records = [{"id": f"r{k}", "datetime": f"{day}T10:00:00", "path": scenes / f"s{k}_B04.tif",
                "assets": {b: (server.href(f"s{k}_{b}.tif"), 0) for b in BANDS}}
               for k, (day, _) in enumerate(SCENES)]
    collection = rd.build_collection_from_table(record_table(records), name="composite-tests")
    report = collection.enrich(progress=False)
    assert report.failed == 0, report.errors
    path = tmp_path_factory.mktemp("composite-index") / "index"
    report.collection.export(path)
    return str(path)


def aoi_bbox() -> tuple[float, float, float, float]:
    t = transform_of((0, 0))
    c0, r0, c1, r1 = AOI_PIXELS
    (x0, y0), (x1, y1) = t @ (c0, r0), t @ (c1, r1)
    box = to_crs(shapely.box(x0, y1, x1, y0), 32633, 4326)
    return tuple(float(v) for v in box.bounds)


def oracle(scenes: Path, ds: xr.Dataset) -> dict[str, np.ndarray]:
    """numpy nan-medians of rasterio reads placed on the output grid, NaN outside the AOI."""
    x, y = ds["x"].values, ds["y"].values
    out = Affine(10.0, 0.0, x[0] - 5.0, 0.0, -10.0, y[0] + 5.0)
    aoi = to_crs(shapely.box(*aoi_bbox()), 4326, 32633)
    outside = geometry_mask([shapely.geometry.mapping(aoi)], (len(y), len(x)), out)
    months = [str(m)[:7] for m in ds["month"].values]
    result = {}
    for band in BANDS:
        stacks: dict[str, list[np.ndarray]] = {m: [] for m in months}
        for k, (day, _) in enumerate(SCENES):
            with rasterio.open(scenes / f"s{k}_{band}.tif") as src:
                pixels = src.read(1).astype(np.float32)
                col = round((src.transform.c - out.c) / 10.0)
                row = round((out.f - src.transform.f) / 10.0)
            pixels[pixels == 0] = np.nan
            canvas = np.full((len(y), len(x)), np.nan, np.float32)
            r0, c0 = max(row, 0), max(col, 0)
            r1, c1 = min(row + SIZE, len(y)), min(col + SIZE, len(x))
            if r1 > r0 and c1 > c0:
                canvas[r0:r1, c0:c1] = pixels[r0 - row:r1 - row, c0 - col:c1 - col]
            stacks[day[:7]].append(canvas)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
            median = np.stack([np.nanmedian(np.stack(stacks[m]), axis=0) for m in months])
        median[:, outside] = np.nan
        result[band] = median.astype(np.float32)
    return result


@pytest.fixture(scope="module")
def first_run(index, tmp_path_factory):
    out = tmp_path_factory.mktemp("composite-out") / "monthly.zarr"
    report = composite(index, aoi=aoi_bbox(), bands=BANDS, out=out, tile_size=TILE)
    return out, report


def test_composite_equals_numpy_medians_of_rasterio_reads(scenes, first_run):
    out, report = first_run
    assert report.months == ("2024-01", "2024-02")
    assert report.variables == ("B04", "B08", "ndvi")
    assert report.tiles_written == report.tiles_total > 1 and report.tiles_skipped == 0
    assert report.tiles_empty >= 1  # the AOI reaches past every record
    assert report.to_dict()["months"] == ["2024-01", "2024-02"]
    ds = xr.open_zarr(out).load()
    assert ds["B04"].dims == ("month", "y", "x") and ds["B04"].dtype == np.float32
    assert (ds.sizes["y"], ds.sizes["x"]) == report.shape
    want = oracle(scenes, ds)
    for band in BANDS:
        np.testing.assert_array_equal(ds[band].values, want[band])
    with np.errstate(all="ignore"):
        ndvi = (want["B08"] - want["B04"]) / (want["B08"] + want["B04"])
    np.testing.assert_array_equal(ds["ndvi"].values, ndvi)
    assert np.isfinite(ds["ndvi"].values).mean() > 0.3


def test_store_grid_coords_and_crs(first_run):
    out, report = first_run
    ds = xr.open_zarr(out)
    assert pyproj.CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"]).to_epsg() == 32633
    assert ds["B04"].attrs["grid_mapping"] == "spatial_ref" and report.crs_epsg == 32633
    aoi = to_crs(shapely.box(*aoi_bbox()), 4326, 32633)
    minx, miny, maxx, maxy = aoi.bounds
    # the window is the AOI's pixel window (floor/ceil) on the records' grid
    col0, col1 = np.floor((minx - ORIGIN[0]) / 10), np.ceil((maxx - ORIGIN[0]) / 10)
    row0, row1 = np.floor((ORIGIN[1] - maxy) / 10), np.ceil((ORIGIN[1] - miny) / 10)
    np.testing.assert_allclose(ds["x"].values, ORIGIN[0] + 10 * (np.arange(col0, col1) + 0.5))
    np.testing.assert_allclose(ds["y"].values, ORIGIN[1] - 10 * (np.arange(row0, row1) + 0.5))
    geo = [float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split()]
    assert geo == [ORIGIN[0] + 10 * col0, 10.0, 0.0, ORIGIN[1] - 10 * row0, 0.0, -10.0]
    assert list(ds["month"].values.astype("datetime64[M]").astype(str)) == ["2024-01", "2024-02"]
    assert ds["B04"].encoding["chunks"] == (1, TILE, TILE)


def test_rerun_skips_every_tile_and_a_deleted_marker_redoes_one(scenes, index, server,
                                                               first_run):
    out, first = first_run
    server.reset()
    again = composite(index, aoi=aoi_bbox(), bands=BANDS, out=out, tile_size=TILE)
    assert server.count(method=None) == 0, server.requests
    assert again.tiles_skipped == first.tiles_total and again.tiles_written == 0
    markers = sorted(p.name for p in (out / "_done").iterdir() if p.is_dir())
    assert len(markers) == first.tiles_total
    shutil.rmtree(out / "_done" / "tile-0001-0002")
    before = xr.open_zarr(out).load()
    server.reset()
    redo = composite(index, aoi=aoi_bbox(), bands=BANDS, out=out, tile_size=TILE)
    assert redo.tiles_written == 1 and redo.tiles_skipped == first.tiles_total - 1
    assert 0 < server.count() <= 5 * 2 * 4  # one tile: 5 records x 2 bands x <= 4 COG tiles
    assert (out / "_done" / "tile-0001-0002" / "zarr.json").is_file()
    xr.testing.assert_identical(xr.open_zarr(out).load(), before)


def test_other_parameters_into_an_existing_store_raise(index, first_run, tmp_path):
    out, _ = first_run
    with pytest.raises(ValueError, match="different parameters.*tile_size"):
        composite(index, aoi=aoi_bbox(), bands=BANDS, out=out, tile_size=64)
    with pytest.raises(ValueError, match="different parameters.*date_range"):
        composite(index, aoi=aoi_bbox(), bands=BANDS, out=out, tile_size=TILE,
                  date_range=("2024-01-01", "2024-12-31"))
    other = tmp_path / "not-a-store"
    other.mkdir()
    (other / "data.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a Zarr store"):
        composite(index, aoi=aoi_bbox(), bands=BANDS, out=other, tile_size=TILE)
    assert (other / "data.txt").read_text() == "keep me"


def test_distributed_run_and_the_script_write_the_same_store(index, first_run, tmp_path,
                                                              capsys):
    from distributed import Client, LocalCluster

    from workflows.composite import main

    out, _ = first_run
    want = xr.open_zarr(out).load()  # same grid and values whatever the tile size
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        got = composite(index, aoi=aoi_bbox(), bands=BANDS, out=tmp_path / "d.zarr",
                        tile_size=2 * TILE, client=client)
    assert got.tiles_written == got.tiles_total == 8
    xr.testing.assert_equal(xr.open_zarr(tmp_path / "d.zarr").load(), want)  # attrs: tile_size
    bbox = ",".join(repr(v) for v in aoi_bbox())
    args = ["--index", index, "--aoi", bbox, "--bands", "B04,B08", "--out",
            str(tmp_path / "s.zarr"), "--tile-size", str(3 * TILE)]
    assert main(args) == 0
    assert '"tiles_written": 3' in capsys.readouterr().out
    xr.testing.assert_equal(xr.open_zarr(tmp_path / "s.zarr").load(), want)
