"""``reenrich --verify``: HEAD every enriched asset, re-enrich exactly the replaced objects."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

import rasteret_dask as rd
from rasteret_dask.enrich.verify import Verification, compare, in_sample
from rasteret_dask.io.errors import FetchError
from rasteret_dask.io.identity import ObjectIdentity
from rasteret_dask.read.chunks import ObjectChangedReadError
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.workflows.reenrich import reenrich

from .test_read_helpers import file_info, pixel_box, record_table, single

N = 6
OPTIONS = dict(width=200, height=200, blocksize=128, compress=None, dtype="uint16")


def test_sample_is_stable_and_nested():
    hrefs = [f"http://h/{i}.tif" for i in range(2000)]
    tenth = {h for h in hrefs if in_sample(h, 0.1)}
    half = {h for h in hrefs if in_sample(h, 0.5)}
    assert tenth < half and 120 < len(tenth) < 280 and 850 < len(half) < 1150
    assert all(in_sample(h, 1.0) for h in hrefs)
    with pytest.raises(ValueError, match="fraction"):
        Verification(0.0)


def test_compare_counts_changed_unrecorded_and_failed():
    a = ObjectIdentity('"a"', 10, None)
    current = {"x": a, "y": ObjectIdentity('"b"', 10, None),
               "z": FetchError("z", 0, 0, 2, "HEAD: HTTP 503", 503)}
    out = compare([0, 1, 2, 3], ["x", "y", "x", "z"], [a, a, None, a], current)
    assert out.refresh.tolist() == [1, 2]
    assert (out.verified, out.changed, out.unrecorded) == (3, 1, 1)
    assert out.failed == ((3, "verification failed: HEAD: HTTP 503"),)


def _box(path):
    epsg, transform, (h, w) = file_info(path)
    return pixel_box(transform, 0, 0, w, h), epsg


def _read(collection, path):
    box, epsg = _box(path)
    return np.squeeze(collection.get_numpy(box, ["B1"], geometry_crs=epsg)[0])


def test_verify_reenriches_exactly_the_replaced_objects(tmp_path):
    cogs = tmp_path / "cogs"
    cogs.mkdir()
    for i in range(N):
        write_cog(cogs / f"s{i}.tif", overviews=False, seed=i, **OPTIONS)
    with RangeServer(cogs) as server:
        records = [single(cogs / f"s{i}.tif", href=server.href(f"s{i}.tif"), rid=f"r{i}",
                          when=f"2024-0{1 + i % 2}-1{i}T00:00:00") for i in range(N)]
        rd.build_collection_from_table(record_table(records), name="v").export(tmp_path / "v")
        first = reenrich(tmp_path / "v", stac=False)
        assert first.enriched == N and first.verify_fraction is None
        replaced = (1, 4)
        for i in replaced:  # same pixels, overviews in front: every tile moves
            write_cog(cogs / f"s{i}.tif", overviews=True, seed=i, **OPTIONS)
        stale = rd.load(tmp_path / "v")
        with pytest.raises(ObjectChangedReadError, match="r1"):
            _read(stale.subset(id="r1"), cogs / "s1.tif")
        server.reset()
        report = reenrich(tmp_path / "v", stac=False, verify=True)
        heads = [r for r in server.requests if r.method == "HEAD"]
        assert len(heads) == N
        assert (report.verified, report.changed, report.reenriched) == (N, 2, 2)
        assert report.unrecorded == 0 and report.verify_failed == 0 and report.exit_code == 0
        assert report.partitions_rewritten == len({1 + i % 2 for i in replaced})
        gets = {r.path for r in server.requests if r.method == "GET"}
        assert gets == {f"s{i}.tif" for i in replaced}
        assert "2 changed" in report.summary()
        fresh = rd.load(tmp_path / "v")
        for i in range(N):
            got = _read(fresh.subset(id=f"r{i}"), cogs / f"s{i}.tif")
            with rasterio.open(cogs / f"s{i}.tif") as src:
                assert np.array_equal(got, src.read(1))
        again = reenrich(tmp_path / "v", stac=False, verify=True, verify_fraction=0.5)
        assert again.changed == 0 and again.partitions_rewritten == 0
        assert again.verified == sum(in_sample(server.href(f"s{i}.tif"), 0.5)
                                     for i in range(N))
