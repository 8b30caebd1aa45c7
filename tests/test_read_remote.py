"""Reads over HTTP (Range) and S3 equal local reads; laziness and the requests a read makes;
retries under injected 503s; the same arrays on a multi-process distributed cluster."""

from __future__ import annotations

import pytest

from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.servers import RangeServer

from .test_read_helpers import (
    assert_matches,
    build,
    expected,
    file_info,
    pixel_box,
    pixel_circle,
    range_starts,
    single,
    tile_offsets,
)

BUCKET = "read-tests"
NAN = float("nan")
FOUR = {"B1": 0, "B2": 1, "B3": 2, "B4": 3}
RGB = {"R": 0, "G": 1, "B": 2}

# name -> (write_cog arguments, band -> band_index)
FILES = {
    "u16.tif": (dict(dtype="uint16", predictor=2, nodata=0, seed=1), {"B1": 0}),
    "u16b.tif": (dict(dtype="uint16", predictor=2, nodata=0, seed=2), {"B1": 0}),
    "be_f32.tif": (dict(compress="lzw", dtype="float32", predictor=3, endianness="big",
                        nodata=NAN, blocksize=128, width=350, height=330), {"B1": 0}),
    "planar.tif": (dict(compress="zstd", dtype="int16", count=4, predictor=2,
                        interleave="band", nodata=-1), FOUR),
    "chunky.tif": (dict(dtype="uint16", count=4, predictor=2, blocksize=128, width=390,
                        height=300), FOUR),
    "webp.tif": (dict(compress="webp", dtype="uint8", count=3, QUALITY=100), RGB),
    "jpeg.tif": (dict(compress="jpeg", dtype="uint8", blocksize=128, width=300, height=280),
                 {"B1": 0}),
}


@pytest.fixture(scope="module")
def remote_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("read-remote")
    for name, (options, _) in FILES.items():
        options = {"width": 700, "height": 600, "blocksize": 256, **options}
        write_cog(root / name, **options)
    return root


@pytest.fixture(scope="module")
def server(remote_dir):
    with RangeServer(remote_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def s3(s3_server, remote_dir):
    s3_server.create_bucket(BUCKET)
    s3_server.upload_dir(remote_dir, BUCKET)
    return {"s3": s3_server.storage_options}


def shapes_for(path) -> tuple[int, list]:
    """(EPSG, [a box from mid-tile across tile edges, a circle]) in the file's CRS."""
    epsg, t, (h, w) = file_info(path)
    return epsg, [pixel_box(t, 70.4, 50.7, w - 90.2, h - 60.9),
                  pixel_circle(t, w * 0.5, h * 0.45, min(h, w) * 0.35)]


def record(remote_dir, name: str, href: str, rid: str = "r0", when="2024-05-01T10:00:00"):
    return single(remote_dir / name, href=href, bands=FILES[name][1], rid=rid, when=when)


@pytest.mark.parametrize("name", ["u16.tif", "be_f32.tif", "planar.tif", "chunky.tif",
                                  "webp.tif", "jpeg.tif"])
def test_http_and_s3_reads_equal_the_local_read(remote_dir, server, s3, name):
    bands = list(FILES[name][1])
    epsg, shapes = shapes_for(remote_dir / name)
    arrays = {}
    for where, href, options in (("local", str(remote_dir / name), None),
                                 ("http", server.href(name), None),
                                 ("s3", f"s3://{BUCKET}/{name}", s3)):
        collection = build([record(remote_dir, name, href)], storage_options=options)
        arrays[where] = collection.get_numpy(shapes, bands, geometry_crs=epsg,
                                             storage_options=options)
    for k, local in enumerate(arrays["local"]):
        assert local.shape[:2] == (1, len(bands))
        for where in ("http", "s3"):
            assert_matches(arrays[where][k], local)


def test_get_xarray_is_lazy_and_compute_fetches_only_tiles(remote_dir, server):
    names = ["u16.tif", "u16b.tif"]
    records = [record(remote_dir, n, server.href(n), rid=f"r{i}", when=f"2024-0{i + 1}-01")
               for i, n in enumerate(names)]
    two_records = build(records)
    planar = build([record(remote_dir, "planar.tif", server.href("planar.tif"))])
    # (collection, bands, the local file of each time slice)
    cases = [(two_records, ["B1"], names), (planar, list(FOUR), ["planar.tif"])]
    for coll, bands, files in cases:
        epsg, (box, circle) = shapes_for(remote_dir / files[0])
        server.reset()
        ds = coll.get_xarray(box, bands, geometry_crs=epsg)
        plan = coll.explain(box, bands, geometry_crs=epsg)[0]
        masked = coll.get_xarray([box, circle], bands, geometry_crs=epsg)
        assert server.count(method=None) == 0, server.requests  # planning reads no COG
        values = ds.compute()
        log = server.requests
        assert log and all(r.method == "GET" and r.status == 206 for r in log), log
        starts = range_starts(log)
        offsets = tile_offsets(coll, bands)
        assert all(s in offsets for s in starts), (starts, sorted(offsets)[:8])
        assert all(start > 0 for _, start in starts)  # no header read
        assert len(starts) == len(set(starts))  # no tile twice
        assert len(log) <= plan["tiles"]
        assert plan["shape"] == (len(files), ds.sizes["y"], ds.sizes["x"])
        for band in bands:
            for t, name in enumerate(files):
                index = FILES[name][1][band]
                want = expected(values, remote_dir / name, index)
                assert_matches(values[band].values[t], want)
        server.reset()
        for one in masked:
            one.compute()
        tiles = sum(p["tiles"] for p in coll.explain([box, circle], bands, geometry_crs=epsg))
        assert 0 < server.count(method=None) <= tiles
        assert all(s in offsets for s in range_starts(server.requests))


def test_injected_503s_give_identical_arrays(remote_dir, server):
    names = ["u16.tif", "u16b.tif", "be_f32.tif"]
    hrefs = {n: server.href(n) for n in names}
    collections = [build([record(remote_dir, n, hrefs[n])]) for n in names]
    # many small reads: one request at least per box, so that some are answered 503
    queries = []
    for name, coll in zip(names, collections):
        epsg, t, (h, w) = file_info(remote_dir / name)
        boxes = [pixel_box(t, c + 3.5, r + 5.5, c + 60.5, r + 50.5)
                 for r in range(0, h - 60, 110) for c in range(0, w - 70, 130)]
        queries.append((coll, boxes, epsg))

    def run():
        return [coll.get_numpy(boxes, ["B1"], geometry_crs=epsg)
                for coll, boxes, epsg in queries]

    server.reset()
    clean = run()
    clean_requests = server.count()
    try:
        server.fail_rate = 0.05
        server.reset()
        faulty = run()
        statuses = [r.status for r in server.requests]
    finally:
        server.fail_rate = 0.0
    assert statuses.count(503) >= 1 and clean_requests >= 40
    assert statuses.count(206) == clean_requests
    for a, b in zip(clean, faulty, strict=True):
        for x, y in zip(a, b, strict=True):
            assert_matches(y, x)


def test_distributed_cluster_gives_the_threaded_arrays(remote_dir, server):
    from distributed import Client, LocalCluster

    names = ["u16.tif", "u16b.tif"]
    records = [record(remote_dir, n, server.href(n), rid=f"r{i}", when=f"2024-0{i + 1}-01")
               for i, n in enumerate(names)]
    http = build(records)
    local = build([record(remote_dir, "planar.tif", str(remote_dir / "planar.tif"))])
    reads = []
    for coll, name, bands in ((http, "u16.tif", ["B1"]), (local, "planar.tif", list(FOUR))):
        epsg, shapes = shapes_for(remote_dir / name)
        reads.extend(coll.get_xarray(shapes, bands, geometry_crs=epsg))
    threaded = [ds.compute(scheduler="threads") for ds in reads]
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        futures = client.compute(reads)
        distributed = client.gather(futures)
        assert len(client.scheduler_info()["workers"]) == 2
    for got, want in zip(distributed, threaded, strict=True):
        for band in want.data_vars:
            assert_matches(got[band].values, want[band].values)
    # and the threaded values (box over HTTP, two records) are rasterio's
    box = threaded[0]
    assert list(box["id"].values) == ["r0", "r1"]
    for t, name in enumerate(names):
        assert_matches(box["B1"].values[t], expected(box, remote_dir / name, 0))
