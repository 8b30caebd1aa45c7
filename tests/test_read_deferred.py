"""Large warped reads planned on the workers: the same pixels as the client-side plan, task
counts that grow with chunks x groups x bands, no tile table read by the client, and a real
multi-process cluster."""

from __future__ import annotations

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

import rasteret_dask as rd
import rasteret_dask.read.deferred as deferred
from rasteret_dask.testing.dask_cluster import DaskProcessCluster
from rasteret_dask.tiff.cog_metadata import CogMetadata

BANDS = ["B02", "B11"]


def area(two_zones, resolution: float = 40.0) -> GeoBox:
    """Both zones' ground in EPSG:32643."""
    union = two_zones.scenes.union(32643)
    return GeoBox.from_bbox(union.bounds, "EPSG:32643", resolution=resolution)


def read(collection, box, **kwargs):
    return collection.get_xarray(None, BANDS, geobox=box, chunks={"x": 96, "y": 96}, **kwargs)


@pytest.mark.parametrize("kwargs", [
    {"resampling": "nearest", "groupby": "solar_day"},
    {"resampling": "bilinear"},
    {"resampling": "average", "groupby": "time"},
])
def test_deferred_equals_the_client_plan(two_zones, monkeypatch, kwargs):
    box = area(two_zones)
    monkeypatch.setattr(deferred, "DEFERRED_CHUNKS", 10**9)
    eager = read(two_zones.collection, box, **kwargs)
    monkeypatch.setattr(deferred, "DEFERRED_CHUNKS", 0)
    large = read(two_zones.collection, box, **kwargs)
    assert list(large["id"].values) == list(eager["id"].values)
    assert np.array_equal(large["time"].values, eager["time"].values)
    computed = large.compute()
    for band in BANDS:
        # a large read's chunks hold several time steps (64 MiB blocks) unless told otherwise
        assert large[band].chunks[1:] == eager[band].chunks[1:]
        assert len(large[band].chunks[0]) < len(eager[band].chunks[0])
        want = eager[band].values
        assert np.array_equal(computed[band].values, want)
        assert (want != 0).mean() > 0.3


def test_time_chunks(two_zones, monkeypatch):
    box = area(two_zones)
    monkeypatch.setattr(deferred, "DEFERRED_CHUNKS", 0)
    one = two_zones.collection.get_xarray(None, BANDS, geobox=box,
                                          chunks={"x": 96, "y": 96, "time": 1})
    two = two_zones.collection.get_xarray(None, BANDS, geobox=box,
                                          chunks={"x": 96, "y": 96, "time": 2})
    assert set(one["B02"].chunks[0]) == {1} and two["B02"].chunks[0][0] == 2
    assert np.array_equal(one["B02"].values, two["B02"].values)
    monkeypatch.setattr(deferred, "DEFERRED_CHUNKS", 10**9)  # the client plan takes it too
    eager = two_zones.collection.get_xarray(None, BANDS, geobox=box,
                                            chunks={"x": 96, "y": 96, "time": 2})
    assert eager["B02"].chunks == two["B02"].chunks
    assert np.array_equal(eager["B02"].values, two["B02"].values)
    with pytest.raises(ValueError, match="time must be a positive integer"):
        two_zones.collection.get_xarray(None, BANDS, geobox=box, chunks={"time": 0})


def test_a_polygon_and_rescale(two_zones, monkeypatch):
    aoi = two_zones.scenes.overlap(4326).buffer(0.05)
    kwargs = dict(crs=32644, resolution=30.0, groupby="solar_day", rescale=True,
                  chunks={"x": 64, "y": 64})
    monkeypatch.setattr(deferred, "DEFERRED_CHUNKS", 10**9)
    eager = two_zones.collection.get_xarray(aoi, ["B02"], **kwargs)
    monkeypatch.setattr(deferred, "DEFERRED_CHUNKS", 0)
    large = two_zones.collection.get_xarray(aoi, ["B02"], **kwargs)
    a, b = eager["B02"].values, large["B02"].values
    assert a.dtype == b.dtype == np.float32
    assert np.array_equal(a, b, equal_nan=True) and np.isnan(a).any() and (a > 0).any()


def test_the_client_reads_no_tile_table(two_zones, monkeypatch):
    monkeypatch.setattr(deferred, "DEFERRED_CHUNKS", 0)

    def refuse(*args, **kwargs):
        raise AssertionError("the client read a record's metadata")

    monkeypatch.setattr(CogMetadata, "from_arrow", classmethod(refuse))
    box = area(two_zones, 20.0)
    ds = read(two_zones.collection, box, groupby="solar_day")
    (info,) = two_zones.collection.explain(None, BANDS, geobox=box, groupby="solar_day",
                                           chunks={"x": 96, "y": 96})
    assert info["planned_on"] == "workers" and info["tiles"] is None
    blocks, rows, cols = (len(c) for c in ds["B02"].chunks)
    graph = dict(ds.__dask_graph__())
    # one task per band, time block and chunk, plus per band the loaders and two shared values
    assert len(graph) <= len(BANDS) * (blocks * rows * cols + info["loaders"] + 2)
    assert info["records_per_chunk"]["max"] >= 2  # the zones overlap


def test_on_a_process_cluster(two_zones, monkeypatch):
    monkeypatch.setattr(deferred, "DEFERRED_CHUNKS", 0)
    box = area(two_zones, 60.0)
    local = read(two_zones.collection, box, groupby="solar_day").compute()
    with DaskProcessCluster(n_workers=2, nthreads=1) as cluster, \
            rd.connect(cluster.address) as client:
        remote = client.compute(read(two_zones.collection, box, groupby="solar_day")).result()
    for band in BANDS:
        assert np.array_equal(remote[band].values, local[band].values)
