"""``rasteret-dask read --out`` streams: outputs equal to a load-then-write of the same AOI,
progress shown, shared band buffers never claimed by a chunk-by-chunk write (CLI or
``ds.to_zarr``), memory bounded by a few chunks, and an incomplete output named in the error."""

from __future__ import annotations

import subprocess
import sys
import threading
import tracemalloc
import warnings

import numpy as np
import pyarrow as pa
import pytest
import shapely
import xarray as xr

import rasteret_dask as rd
from rasteret_dask.cli import main
from rasteret_dask.cli.output import zarr_ready
from rasteret_dask.read import buffers as read_buffers
from rasteret_dask.read import chunks as read_chunks
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.servers import RangeServer

pytestmark = pytest.mark.timeout(240)

CLI = [sys.executable, "-m", "rasteret_dask.cli"]
FOOTPRINT = shapely.to_wkb(shapely.box(14.0, 44.0, 16.0, 46.0))
TIMES = pa.array([(1704067200 + 86400 * 30 * i) * 1_000_000 for i in range(6)],
                 pa.timestamp("us", tz="UTC"))


def _table(href, names: list[str]) -> pa.Table:
    """One record per scene name, bands B04 and B08 from ``{name}_B04.tif`` / ``_B08.tif``."""
    return pa.table({
        "id": [f"s{i}" for i in range(len(names))],
        "datetime": TIMES[:len(names)],
        "geometry": [FOOTPRINT] * len(names),
        "red": [href(f"{n}_B04.tif") for n in names],
        "nir": [href(f"{n}_B08.tif") for n in names],
    })


def _build(table: pa.Table, root, name: str) -> str:
    rd.build_from_table(table, name=name, workspace_dir=root,
                        href_column={"B04": "red", "B08": "nir"})
    return str(root / name)


@pytest.fixture(scope="module")
def index(tmp_path_factory, http_server) -> str:
    """Two records of the session's small COGs (700 x 600, 256 tiles), bands B04 and B08."""
    return _build(_table(http_server.href, ["scene0", "scene1"]),
                  tmp_path_factory.mktemp("stream"), "s")


def _box(cog_dir, top: int = 50, left: int = 100, bottom: int = 430, right: int = 610) -> str:
    """A box of the scenes' grid in EPSG:32633 (default: starts mid-tile, spans 2 x 3 tiles)."""
    import rasterio

    with rasterio.open(cog_dir / "scene0_B04.tif") as src:
        x0, y0 = src.xy(top, left, offset="ul")
        x1, y1 = src.xy(bottom, right, offset="ul")
    return f"{x0},{y1},{x1},{y0}"


def _loaded(index: str, box: str) -> xr.Dataset:
    """What ``read`` wrote before it streamed: the whole AOI computed, then written."""
    return rd.load(index).get_xarray(tuple(map(float, box.split(","))), ["B04", "B08"],
                                     geometry_crs="EPSG:32633").load()


def _reference_geotiff(ds: xr.Dataset, path) -> None:
    """The load-then-write GeoTIFF stack ``read`` wrote before it streamed."""
    import rasterio
    from affine import Affine

    variables = list(ds.data_vars)
    attrs = ds["spatial_ref"].attrs
    first = ds[variables[0]]
    dtype = np.result_type(*[ds[v].dtype for v in variables])
    with rasterio.open(path, "w", driver="GTiff", width=ds.sizes["x"], height=ds.sizes["y"],
                       count=len(variables) * ds.sizes["time"], dtype=dtype,
                       crs=attrs.get("crs_wkt"),
                       transform=Affine.from_gdal(*map(float, attrs["GeoTransform"].split())),
                       nodata=first.attrs.get("_FillValue", first.encoding.get("_FillValue")),
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
        band = 1
        for t in range(ds.sizes["time"]):
            stamp = str(np.datetime_as_string(ds["time"].values[t], unit="s"))
            for name in variables:
                dst.write(ds[name].isel(time=t).values.astype(dtype), band)
                dst.set_band_description(band, f"{name} {stamp} {ds['id'].values[t]}")
                band += 1


def _same_dataset(got: xr.Dataset, want: xr.Dataset) -> None:
    xr.testing.assert_identical(got, want)
    for name in (*want.data_vars, *want.coords):  # storage chunks follow the dask chunks
        keep = set(want[name].encoding) - {"chunks", "preferred_chunks", "source", "shards"}
        assert set(got[name].encoding) - {"chunks", "preferred_chunks", "source",
                                          "shards"} == keep, name
        for key in keep:
            assert repr(got[name].encoding[key]) == repr(want[name].encoding[key]), (name, key)


@pytest.mark.parametrize("where", ["mid-tile", "tile edge"])
def test_streamed_outputs_equal_load_then_write(index, cog_dir, tmp_path, capsys, where):
    box = _box(cog_dir) if where == "mid-tile" else _box(cog_dir, 0, 256, 512, 700)
    loaded = _loaded(index, box)
    reference = {".zarr": tmp_path / "ref.zarr", ".nc": tmp_path / "ref.nc",
                 ".tif": tmp_path / "ref.tif"}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        loaded.to_zarr(reference[".zarr"], mode="w")
    from rasteret_dask.cli.output import _for_netcdf

    _for_netcdf(loaded).to_netcdf(reference[".nc"], engine="h5netcdf")
    _reference_geotiff(loaded, reference[".tif"])
    for suffix, ref in reference.items():
        out = tmp_path / f"aoi{suffix}"
        code = main(["read", index, "--aoi", box, "--aoi-crs", "EPSG:32633", "--bands",
                     "B04,B08", "--out", str(out), "--quiet"])
        stdout, err = capsys.readouterr()
        assert code == 0 and err == "", err  # no ZarrUserWarning, nothing else
        assert stdout.startswith(f"wrote {out} (") and stdout.rstrip().endswith(" s")
        if suffix == ".tif":
            import rasterio

            with rasterio.open(out) as got, rasterio.open(ref) as want:
                assert got.profile == want.profile
                assert got.descriptions == want.descriptions
                assert got.descriptions[1].startswith("B08 2024-01-01")
                np.testing.assert_array_equal(got.read(), want.read())
        elif suffix == ".zarr":
            with xr.open_zarr(out) as got, xr.open_zarr(ref) as want:
                _same_dataset(got.load(), want.load())
        else:
            with xr.open_dataset(out, engine="h5netcdf") as got, \
                    xr.open_dataset(ref, engine="h5netcdf") as want:
                _same_dataset(got.load(), want.load())
    with xr.open_zarr(tmp_path / "aoi.zarr") as got:
        np.testing.assert_array_equal(got["B08"].values, loaded["B08"].values)


def test_read_shows_progress_for_every_format(index, cog_dir, tmp_path, capsys):
    for suffix in (".zarr", ".nc", ".tif"):
        assert main(["read", index, "--aoi", _box(cog_dir), "--aoi-crs", "EPSG:32633",
                     "--bands", "B04", "--out", str(tmp_path / f"p{suffix}")]) == 0
        out, err = capsys.readouterr()
        assert "wrote" in out and "read: 100%" in err, (suffix, err)


def test_read_on_a_cluster_shows_distributed_progress(index, cog_dir, tmp_path, capsys):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        for suffix in (".zarr", ".nc", ".tif"):
            out = tmp_path / f"c{suffix}"
            assert main(["read", index, "--aoi", _box(cog_dir), "--aoi-crs", "EPSG:32633",
                         "--bands", "B04,B08", "--out", str(out), "--cluster",
                         cluster.scheduler_address]) == 0
            stdout, err = capsys.readouterr()
            assert "cluster:" in err and f"wrote {out}" in stdout
            if suffix != ".tif":
                assert "100% Completed" in err, (suffix, err)
            else:
                assert "read: 100%" in err
    want = _loaded(index, _box(cog_dir))
    with xr.open_zarr(tmp_path / "c.zarr") as got:
        np.testing.assert_array_equal(got["B04"].values, want["B04"].values)
    with xr.open_dataset(tmp_path / "c.nc", engine="h5netcdf") as got:
        np.testing.assert_array_equal(got["B08"].values, want["B08"].values)


@pytest.fixture
def claims(monkeypatch) -> list[bool]:
    """Every claim of a shared band buffer by a chunk: True when it got one."""
    seen: list[bool] = []
    claim = read_chunks.claim

    def spy(placement, shape):
        region = claim(placement, shape)
        seen.append(region is not None)
        return region

    monkeypatch.setattr(read_chunks, "claim", spy)
    return seen


def test_chunk_by_chunk_writes_never_claim_the_shared_band_buffer(index, cog_dir, tmp_path,
                                                                  claims):
    box = tuple(map(float, _box(cog_dir, 0, 0, 512, 512).split(",")))
    ds = rd.load(index).get_xarray(box, ["B04", "B08"], geometry_crs=32633)
    assert type(ds["B04"].data).__name__ == "SharedBandArray"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        ds.to_zarr(tmp_path / "lib.zarr", mode="w")  # the library's own write
    ds.to_netcdf(tmp_path / "lib.nc", engine="h5netcdf")
    assert claims and not any(claims)
    claims.clear()
    assert main(["read", index, "--aoi", ",".join(map(str, box)), "--aoi-crs", "EPSG:32633",
                 "--bands", "B04,B08", "--out", str(tmp_path / "cli.zarr"), "--quiet"]) == 0
    assert claims and not any(claims)
    claims.clear()
    computed = ds.compute()  # a whole computation still decodes in place
    assert claims and all(claims)
    names = {ds[band].data.name for band in ("B04", "B08")}
    # (a failed computation elsewhere in the session may leave its own marks)
    assert not names & set(read_buffers._whole) and not names & set(read_buffers._shared)
    with xr.open_zarr(tmp_path / "lib.zarr", mask_and_scale=False) as got:
        np.testing.assert_array_equal(got["B04"].values, computed["B04"].values)
    claims.clear()
    assert np.array_equal(ds["B08"].data[:, 10:, 5:].compute(), computed["B08"].values[:, 10:, 5:])
    assert not any(claims)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> tuple[str, str]:
    """Six records (three files, each twice) of 2048 x 2048 COGs (256 tiles, two bands,
    smooth pixels: the compressed tiles are small, so what a write holds is decoded chunks):
    an AOI of 100 MB output."""
    root = tmp_path_factory.mktemp("large")
    rows, cols = np.mgrid[0:2048, 0:2048]
    for scene in range(3):
        for band_no, band in enumerate(("B04", "B08")):
            smooth = (1000 + 100 * scene + 10 * band_no + rows // 8 + cols // 16)
            write_cog(root / f"big{scene}_{band}.tif", data=smooth[None].astype(np.uint16),
                      blocksize=256, predictor=2, nodata=0)
    with RangeServer(root) as server:
        index = _build(_table(server.href, ["big0", "big1", "big2"] * 2), root, "big")
        import rasterio

        with rasterio.open(root / "big0_B04.tif") as src:
            x0, y0 = src.xy(0, 0, offset="ul")
            x1, y1 = src.xy(2048, 2048, offset="ul")
        yield index, f"{x0},{y1},{x1},{y0}"


def test_a_streamed_write_holds_a_few_chunks_not_the_area(large, tmp_path):
    index, box = large
    ds = rd.load(index).get_xarray(tuple(map(float, box.split(","))), ["B04", "B08"],
                                   geometry_crs=32633)
    output = ds.nbytes
    assert output >= 96 * 2**20 and ds["B04"].data.npartitions == 6 * 64
    tracemalloc.start()
    try:
        for suffix in (".zarr", ".nc", ".tif"):
            tracemalloc.reset_peak()
            assert main(["read", index, "--aoi", box, "--aoi-crs", "EPSG:32633", "--bands",
                         "B04,B08", "--out", str(tmp_path / f"big{suffix}"), "--quiet"]) == 0
            _, peak = tracemalloc.get_traced_memory()
            assert peak < output / 4, (suffix, peak, output)
        tracemalloc.reset_peak()
        ds.load()
        _, loaded_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded_peak >= output  # what the write held before it streamed


def test_an_error_mid_write_names_the_incomplete_output(index, cog_dir, tmp_path,
                                                        http_server):
    out = tmp_path / "broken.zarr"
    http_server.set_status("scene1_B08.tif", 404)
    try:
        done = subprocess.run([*CLI, "read", index, "--aoi", _box(cog_dir), "--aoi-crs",
                               "EPSG:32633", "--bands", "B04,B08", "--out", str(out)],
                              capture_output=True, text=True)
    finally:
        http_server.set_status("scene1_B08.tif", None)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (error,) = [line for line in lines if line.startswith("rasteret-dask: error:")]
    assert error == lines[-1] and "scene1_B08.tif" in error and "HTTP 404" in error
    assert f"the output at {out} is incomplete" in error and out.exists()


def test_zarr_ready_regularises_only_irregular_chunks():
    data = xr.Dataset({"a": (("time", "y", "x"), np.zeros((2, 10, 7))),
                       "b": (("y",), np.arange(10))}).chunk(
        {"time": 1, "y": (3, 4, 3), "x": (5, 2)})
    regular = zarr_ready(data)
    assert regular["a"].chunks == ((1, 1), (4, 4, 2), (5, 2))
    assert regular["b"].chunks == ((4, 4, 2),)
    assert zarr_ready(regular) is regular
    assert zarr_ready(data.load()) is not None


def _stored(stores) -> None:
    return None


def _groups_write(lock, live, peak, stored):
    """Two bands of 12 groups (roots) x 4 chunks, written as xarray writes an integer variable
    with a fill value (``where(~full_like(x, False), x, 0)``: a mask shared by both bands)."""
    import dask
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    def start(group: int) -> int:
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        return group

    def chunk(group: int, i: int) -> np.ndarray:
        return np.full((1, 3), i, np.int64)

    class Target:
        def __init__(self, band: str) -> None:
            self.band = band
            self.values = np.zeros((48, 3), np.int64)

        def __setitem__(self, region, value) -> None:
            self.values[region] = value
            group = (self.band, region[0].start // 4)
            with lock:
                stored[group] = stored.get(group, 0) + 1
                if stored[group] == 4:
                    live[0] -= 1

    arrays, targets = [], []
    for band in ("a", "b"):
        roots = {(f"root-{band}", g): (start, g) for g in range(12)}
        chunks = {(f"chunk-{band}", i, 0): (chunk, (f"root-{band}", i // 4), i)
                  for i in range(48)}
        graph = HighLevelGraph({f"root-{band}": roots, f"chunk-{band}": chunks},
                               {f"root-{band}": set(), f"chunk-{band}": {f"root-{band}"}})
        arrays.append(da.Array(graph, f"chunk-{band}", ((1,) * 48, (3,)), dtype=np.int64))
        targets.append(Target(band))
    mask = ~da.zeros((48, 3), chunks=(1, 3), dtype=bool)
    encoded = [da.where(mask, a, 0) for a in arrays]
    write = dask.delayed(_stored)(da.store(encoded, targets, lock=False, compute=False))
    return write, arrays, targets


def test_bounded_write_keeps_a_few_fetch_groups_in_flight():
    """With ``in_flight=2`` a group's root starts only once the group two places earlier is
    written; dask's own order of the same write starts more groups at once."""
    import dask

    from rasteret_dask.cli.store_graph import bounded_write, older_objects_frozen

    want = np.repeat(np.arange(48), 3).reshape(48, 3)
    peaks = []
    for bounded in (False, True):
        lock, live, peak, stored = threading.Lock(), [0], [0], {}
        write, arrays, targets = _groups_write(lock, live, peak, stored)
        if bounded:
            write = bounded_write(write, arrays, 2)
        with older_objects_frozen():
            dask.compute(write, scheduler="threads", num_workers=2)
        for target in targets:
            np.testing.assert_array_equal(target.values, want)
        assert live[0] == 0
        peaks.append(peak[0])
    assert peaks[1] <= 2 < peaks[0], peaks
