"""Collection.to_torchgeo_dataset (issue 19 item 12): a TorchGeo GeoDataset whose samples are
read by this project's plan and fetch path; a RandomGeoSampler batch equals get_numpy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import shapely

from rasteret_dask.read.canvas import QueryGrid, first_valid, place, valid_mask

from .test_read_helpers import build, record_table

BANDS = ["B04", "B08"]
WHEN = ["2024-01-03T00:00:00", "2024-01-01T00:00:00", "2024-02-01T00:00:00"]


def _records(cog_dir, http_server):
    return [{"id": f"s{i}", "datetime": WHEN[i], "path": cog_dir / f"scene{i}_B04.tif",
             "assets": {b: (http_server.href(f"scene{i}_{b}.tif"), 0) for b in BANDS}}
            for i in range(3)]


@pytest.fixture(scope="module")
def scenes(cog_dir, http_server):
    return build(_records(cog_dir, http_server))


def _box(x, y):
    return shapely.box(x.start, y.start, x.stop, y.stop)


def test_random_sampler_batch_equals_get_numpy(scenes):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchgeo")
    from torch.utils.data import DataLoader
    from torchgeo.datasets import stack_samples
    from torchgeo.samplers import RandomGeoSampler

    dataset = scenes.to_torchgeo_dataset(BANDS)
    assert dataset.crs.to_epsg() == 32633 and len(dataset) == 3
    assert dataset.index["id"].tolist() == ["s1", "s0", "s2"]  # time order
    sampler = RandomGeoSampler(dataset, size=64, length=6,
                               generator=torch.Generator().manual_seed(3))
    batch = next(iter(DataLoader(dataset, sampler=sampler, batch_size=6,
                                 collate_fn=stack_samples)))
    assert batch["image"].shape == (6, 2, 64, 64) and batch["image"].dtype == torch.float32
    table = scenes.to_table(["id", "datetime"])
    times = {r["id"]: np.datetime64(r["datetime"].replace(tzinfo=None), "ns")
             for r in table.to_pylist()}
    for image, (x, y, t) in zip(batch["image"], batch["bounds"], strict=True):
        ids = [i for i, when in times.items()
               if np.datetime64(t.start, "ns") <= when <= np.datetime64(t.stop, "ns")]
        want = scenes.get_numpy(_box(x, y), BANDS, geometry_crs=32633, id=ids)
        assert want.shape == (1, 2, 64, 64)
        assert np.array_equal(image.numpy(), want[0].astype(np.float32))


def test_time_series_and_mosaic_over_an_edge(scenes):
    pytest.importorskip("torchgeo")
    series = scenes.to_torchgeo_dataset(BANDS, time_series=True)
    xs, ys, ts = series.bounds
    x = slice(xs.start - 320.0, xs.start + 320.0, series.res[0])
    y = slice(ys.stop - 400.0, ys.stop, series.res[1])
    sample = series[x, y, ts]
    image = sample["image"].numpy()
    assert image.shape == (3, 2, 40, 64) and sample["crs"] == series.crs
    inside = scenes.get_numpy(_box(x, y), BANDS, geometry_crs=32633)  # time order, 32 columns
    assert inside.shape == (3, 2, 40, 32)
    assert np.array_equal(image[..., 32:], inside) and not image[..., :32].any()
    mosaic = scenes.to_torchgeo_dataset(BANDS)[x, y, ts]["image"].numpy()
    first = inside[0].copy()  # first record wins where valid; nodata 0 everywhere else
    for later in inside[1:]:
        first = np.where(first == 0, later, first)
    assert np.array_equal(mosaic[..., 32:], first) and not mosaic[..., :32].any()


def test_masks_and_points_in_time(scenes):
    pytest.importorskip("torchgeo")
    masks = scenes.to_torchgeo_dataset(["B08"], is_image=False)
    xs, ys, _ = masks.bounds
    when = masks.index.index[0].left
    sample = masks[slice(xs.start, xs.start + 80.0, 10.0), slice(ys.stop - 80.0, ys.stop, 10.0),
                   slice(when, when)]
    assert sample["mask"].shape == (8, 8) and str(sample["mask"].dtype) == "torch.int64"
    with pytest.raises(IndexError):
        masks[slice(0.0, 10.0, 10.0), slice(0.0, 10.0, 10.0), slice(when, when)]
    with pytest.raises(ValueError, match="not resampled"):
        masks[slice(xs.start, xs.start + 80.0, 20.0), slice(ys.stop - 80.0, ys.stop, 20.0)]


def test_layer_requirements_and_grid_rules(scenes, cog_dir, http_server):
    pytest.importorskip("torchgeo")
    import rasteret_dask as rd

    bare = rd.build_collection_from_table(record_table(_records(cog_dir, http_server)),
                                          name="bare")
    with pytest.raises(ValueError, match=r"missing: \['proj:epsg'\]|missing: \['B04_metadata"):
        bare.to_torchgeo_dataset(["B04"])
    with pytest.raises(ValueError, match="no reprojection"):
        scenes.to_torchgeo_dataset(BANDS, crs=3857)
    with pytest.raises(ValueError, match="not resampled"):
        scenes.to_torchgeo_dataset(BANDS, res=20)
    assert scenes.to_torchgeo_dataset(BANDS, res=10.0, crs="EPSG:32633").res == (10.0, 10.0)


def test_record_times_from_datetime_or_start_end(cog_dir, http_server):
    pytest.importorskip("torchgeo")
    import rasteret_dask as rd

    table = record_table(_records(cog_dir, http_server))
    us = pa.timestamp("us")
    table = table.set_column(1, "datetime", pa.array(
        [None, None, np.datetime64("2024-01-02T00:00", "us")], us))
    table = table.append_column("start_datetime", pa.array(
        [np.datetime64("2024-01-01T00:00", "us"), np.datetime64("2024-03-01T00:00", "us"),
         None], us))
    table = table.append_column("end_datetime", pa.array(
        [np.datetime64("2024-01-31T00:00", "us"), None, None], us))
    collection = rd.build_collection_from_table(table, name="t").enrich(progress=False).collection
    index = collection.to_torchgeo_dataset(["B04"]).index
    spans = {i: (iv.left, iv.right) for i, iv in zip(index["id"], index.index, strict=True)}
    day = np.datetime64
    assert spans == {"s0": (day("2024-01-01"), day("2024-01-31")),
                     "s1": (day("2024-03-01"), day("2024-03-01")),
                     "s2": (day("2024-01-02"), day("2024-01-02"))}


def test_a_record_without_any_time_has_no_interval():
    pytest.importorskip("torchgeo")
    from rasteret_dask.read.rasters import Raster
    from rasteret_dask.torchgeo import record_interval

    bare = Raster("x", np.datetime64("NaT"), None, None, {}, None, {}, {})
    assert record_interval(bare) is None
    start_only = Raster("x", np.datetime64("NaT"), None, None, {}, None, {},
                        {"start_datetime": np.datetime64("2024-05-01T00:00", "us")})
    assert record_interval(start_only) == (np.datetime64("2024-05-01"),) * 2


# pure chip rules ---------------------------------------------------------------------------


def test_query_grid_offsets_and_placement():
    grid = QueryGrid.from_bounds(100.0, 0.0, 160.0, 40.0, 10.0, 10.0)
    assert (grid.height, grid.width) == (4, 6)
    assert grid.offset(95.0, 45.0) == (-1, -1) and grid.offset(125.0, 25.0) == (1, 2)
    chip, covered = place(np.ones((1, 3, 3), np.uint8), -1, 4, grid, 9)
    assert chip[0, :2, 4:].tolist() == [[1, 1], [1, 1]] and chip[0, 3, 0] == 9
    assert covered.sum() == 4


def test_first_valid_keeps_the_first_valid_value():
    stack = np.array([[[[0, 5]]], [[[7, 6]]], [[[8, 0]]]], dtype=np.uint16)  # (t, band, y, x)
    valid = valid_mask(stack, 0)
    assert first_valid(stack, valid, np.array([0.0])).tolist() == [[[7, 5]]]
    floats = np.array([[[[np.nan]]], [[[2.0]]]])
    assert first_valid(floats, valid_mask(floats, None), np.array([np.nan])).tolist() == [[[2.0]]]
