"""The ``export_chips`` workflow: per-split stores whose counts follow the split column, chip
pixels equal rasterio's (boundless) reads of the same windows, labels/ids/times/transforms,
resumability (markers, zero requests on a rerun), parameter checks, grid mode, a distributed
run and the runnable script."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pyarrow as pa
import pytest
import shapely
import xarray as xr

import rasteret_dask as rd
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.workflows import export_chips

from .test_read_helpers import record_table, to_crs

rasterio = pytest.importorskip("rasterio")
from rasterio.windows import Window  # noqa: E402

SIZE, BLOCK, CHIP = 512, 128, 64
BANDS = ["B04", "B08"]
SPLITS = ["train", "val", "train", None, "test", "train", "val"]
LABELS = [3, 1, None, 2, 0, 4, 1]
# AOI centre in pixels of each scene (None: no AOI, the chip is centred on the image)
CENTRES = [(100.3, 200.7), (20.2, 30.9), None, (250.0, 250.0), (500.5, 480.2), (300.6, 90.1),
           (256.0, 128.0)]


def origin(k: int) -> tuple[float, float]:
    return 500_000.0 + 3_000.0 * k, 5_000_000.0 - 1_000.0 * k


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("chips-cogs")
    for k in range(len(SPLITS)):
        x0, y0 = origin(k)
        for b, band in enumerate(BANDS):
            write_cog(root / f"s{k}_{band}.tif", width=SIZE, height=SIZE, blocksize=BLOCK,
                      predictor=2, nodata=0, seed=10 * k + b,
                      transform=(10.0, 0.0, x0, 0.0, -10.0, y0))
    return root


@pytest.fixture(scope="module")
def server(scenes):
    with RangeServer(scenes) as srv:
        yield srv


def aoi_of(k: int) -> shapely.Geometry | None:
    """A 30 x 20 pixel AOI around the centre, in EPSG:4326 (as users add an ``aoi`` column)."""
    if CENTRES[k] is None:
        return None
    x0, y0 = origin(k)
    col, row = CENTRES[k]
    x, y = x0 + 10 * col, y0 - 10 * row
    return to_crs(shapely.box(x - 150, y - 100, x + 150, y + 100), 32633, 4326)


@pytest.fixture(scope="module")
def index(scenes, server, tmp_path_factory) -> str:
    records = [{"id": f"r{k}", "datetime": f"2024-0{1 + k % 3}-1{k}T10:00:00",
                "path": scenes / f"s{k}_B04.tif",
                "assets": {b: (server.href(f"s{k}_{b}.tif"), 0) for b in BANDS}}
               for k in range(len(SPLITS))]
    table = record_table(records)
    aois = [None if aoi_of(k) is None else shapely.to_wkb(aoi_of(k)) for k in range(len(SPLITS))]
    table = (table.append_column("aoi", pa.array(aois, pa.binary()))
             .append_column("split", pa.array(SPLITS, pa.string()))
             .append_column("label", pa.array(LABELS, pa.int32())))
    collection = rd.build_collection_from_table(table, name="chips-tests")
    report = collection.enrich(progress=False)
    assert report.failed == 0, report.errors
    path = tmp_path_factory.mktemp("chips-index") / "index"
    report.collection.export(path)
    return str(path)


@pytest.fixture(scope="module")
def first_run(index, tmp_path_factory):
    out = tmp_path_factory.mktemp("chips-out") / "chips"
    report = export_chips(index, bands=BANDS, out=out, chip_size=CHIP, batch_size=2)
    return out, report


def rasterio_chip(scenes, k: int, window) -> np.ndarray:
    row, col, height, width = (int(v) for v in window)
    chips = []
    for band in BANDS:
        with rasterio.open(scenes / f"s{k}_{band}.tif") as src:
            chips.append(src.read(1, window=Window(col, row, width, height), boundless=True,
                                  fill_value=0))
    return np.stack(chips)


def test_split_stores_counts_pixels_and_metadata(scenes, first_run):
    out, report = first_run
    assert report.splits == {"test": 1, "train": 3, "val": 2}
    assert report.rows_null_split == 1 and report.rows_skipped == 0
    assert report.chips_total == 6 and report.geometry_source == "aoi"
    assert report.batches_total == report.batches_written == 1 + 2 + 1
    assert sorted(p.name for p in out.iterdir()) == ["test.zarr", "train.zarr", "val.zarr"]
    for split, count in report.splits.items():
        ds = xr.open_zarr(out / f"{split}.zarr").load()
        assert ds["images"].shape == (count, 2, CHIP, CHIP) and ds["images"].dtype == np.uint16
        assert list(ds["band"].values) == BANDS
        assert ds["images"].encoding["shards"] == (2, 2, CHIP, CHIP)
        ids = [str(v) for v in ds["ids"].values]
        assert ids == sorted(ids, key=lambda i: (ds["times"].values[ids.index(i)], i))
        for n, rid in enumerate(ids):
            k = int(rid[1:])
            assert SPLITS[k] == split
            assert ds["labels"].values[n] == (-1 if LABELS[k] is None else LABELS[k])
            assert ds["crs_epsg"].values[n] == 32633
            row, col, height, width = ds["windows"].values[n]
            assert height == width == CHIP
            if CENTRES[k] is None:
                assert (row, col) == ((SIZE - CHIP) // 2, (SIZE - CHIP) // 2)
            else:  # centred on the AOI's centroid
                assert (col, row) == tuple(math.floor(v) - CHIP // 2 for v in CENTRES[k])
            x0, y0 = origin(k)
            np.testing.assert_allclose(ds["transforms"].values[n],
                                       [10.0, 0.0, x0 + 10 * col, 0.0, -10.0, y0 - 10 * row])
            want = rasterio_chip(scenes, k, ds["windows"].values[n])
            np.testing.assert_array_equal(ds["images"].values[n], want)
    # r4's AOI is at the image's east edge: its chip reaches 20 columns past it (nodata fill)
    test = xr.open_zarr(out / "test.zarr")
    assert (test["images"].values[0][:, :, -20:] == 0).all()


def test_rerun_skips_and_a_deleted_marker_redoes_one_batch(index, server, first_run):
    out, first = first_run
    server.reset()
    again = export_chips(index, bands=BANDS, out=out, chip_size=CHIP, batch_size=2)
    assert server.count(method=None) == 0, server.requests
    assert again.batches_skipped == first.batches_total and again.batches_written == 0
    before = xr.open_zarr(out / "train.zarr").load()
    shutil.rmtree(out / "train.zarr" / "_done" / "batch-00001")
    server.reset()
    redo = export_chips(index, bands=BANDS, out=out, chip_size=CHIP, batch_size=2)
    assert redo.batches_written == 1 and redo.batches_skipped == first.batches_total - 1
    assert 0 < server.count() <= 2 * 4  # one chip (train batch 1): 2 bands x <= 4 COG tiles
    xr.testing.assert_identical(xr.open_zarr(out / "train.zarr").load(), before)
    with pytest.raises(ValueError, match="different parameters.*chip_size"):
        export_chips(index, bands=BANDS, out=out, chip_size=32, batch_size=2)
    with pytest.raises(ValueError, match="different parameters.*bands"):
        export_chips(index, bands=["B04"], out=out, chip_size=CHIP, batch_size=2)


def test_grid_mode_footprint_chips_on_a_cluster_and_the_script(scenes, index, tmp_path,
                                                               capsys):
    from distributed import Client, LocalCluster

    from workflows.export_chips import main

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        report = export_chips(index, bands=BANDS, out=tmp_path / "grid", chip_size=CHIP,
                              mode="grid", batch_size=3, label_column=None, client=client,
                              split="val")
    # AOIs of 31 x 21 pixels: one chip each, from the AOI window's corner
    assert report.splits == {"val": 2} and report.batches_written == 1
    ds = xr.open_zarr(tmp_path / "grid" / "val.zarr").load()
    assert "labels" not in ds
    for n, rid in enumerate(str(v) for v in ds["ids"].values):
        want = rasterio_chip(scenes, int(rid[1:]), ds["windows"].values[n])
        np.testing.assert_array_equal(ds["images"].values[n], want)
    # without a geometry column, one chip per record at its image centre; by script
    args = ["--index", index, "--bands", "B08", "--out", str(tmp_path / "centre"),
            "--chip-size", "32", "--geometry-column", "none", "--batch-size", "4"]
    assert main(args) == 0
    assert '"chips_total": 6' in capsys.readouterr().out
    train = xr.open_zarr(tmp_path / "centre" / "train.zarr").load()
    for n, rid in enumerate(str(v) for v in train["ids"].values):
        assert list(train["windows"].values[n]) == [240, 240, 32, 32]
        want = rasterio_chip(scenes, int(rid[1:]), train["windows"].values[n])[1:]
        np.testing.assert_array_equal(train["images"].values[n], want)
