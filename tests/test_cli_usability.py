"""The command line as a new user meets it: --where, --epsg, --version, a closed pipe, warnings
and logs on one line each, errors that say what to do next."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import xarray as xr

from rasteret_dask.cli import main

pytestmark = pytest.mark.timeout(180)

CLI = [sys.executable, "-m", "rasteret_dask.cli"]


@pytest.fixture(scope="module")
def index(tmp_path_factory, http_server) -> str:
    """Three records (cloud cover 5, 50, 10; platforms a, b, a) of two scenes."""
    root = tmp_path_factory.mktemp("usability")
    footprint = shapely.to_wkb(shapely.box(14.0, 44.0, 16.0, 46.0))
    table = pa.table({
        "id": ["r0", "r1", "r2"],
        "datetime": pa.array([1704067200_000000, 1706745600_000000, 1709251200_000000],
                             pa.timestamp("us", tz="UTC")),
        "geometry": [footprint] * 3,
        "red": [http_server.href(f"scene{i}_B04.tif") for i in (0, 1, 0)],
        "eo:cloud_cover": [5.0, 50.0, 10.0],
        "platform": ["sentinel-2a", "sentinel-2b", "sentinel-2a"],
    })
    pq.write_table(table, root / "scenes.parquet")
    assert main(["build-table", str(root / "scenes.parquet"), "--name", "u", "--workspace",
                 str(root), "--href-column", "red", "--band-map", "B04=red", "--quiet"]) == 0
    return str(root / "u")


def _box(cog_dir) -> str:
    import rasterio

    with rasterio.open(cog_dir / "scene0_B04.tif") as src:
        left, top = src.xy(100, 50, offset="ul")
        right, bottom = src.xy(260, 230, offset="ul")
    return f"{left},{bottom},{right},{top}"


def test_read_where_selects_records_like_subset(index, cog_dir, tmp_path, capsys):
    out = tmp_path / "w.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ZarrUserWarning (nor any other) on --out x.zarr
        code = main(["read", index, "--aoi", _box(cog_dir), "--aoi-crs", "EPSG:32633",
                     "--bands", "B04", "--out", str(out), "--quiet",
                     "--where", "eo:cloud_cover < 20 AND platform = 'sentinel-2a'"])
    assert code == 0, capsys.readouterr().err
    got = xr.open_zarr(out)
    assert [str(v) for v in got["id"].values] == ["r0", "r2"]
    assert "eo:cloud_cover < 20" in got.attrs["query"]

    code = main(["read", index, "--aoi", _box(cog_dir), "--aoi-crs", "EPSG:32633", "--bands",
                 "B04", "--out", str(tmp_path / "x.nc"), "--where", "eo:cloud_cover <"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("rasteret-dask: error: invalid filter 'eo:cloud_cover <'")


def test_epsg_is_the_output_crs(index, cog_dir, tmp_path, capsys):
    common = ["read", index, "--aoi", _box(cog_dir), "--aoi-crs", "EPSG:32633", "--bands", "B04",
              "--quiet", "--resolution", "0.0005"]
    assert main([*common, "--epsg", "4326", "--out", str(tmp_path / "e.nc")]) == 0
    assert main([*common, "--crs", "EPSG:4326", "--out", str(tmp_path / "c.nc")]) == 0
    capsys.readouterr()
    by_epsg, by_crs = xr.open_dataset(tmp_path / "e.nc"), xr.open_dataset(tmp_path / "c.nc")
    assert by_epsg.sizes == by_crs.sizes and "latitude" in by_epsg["y"].attrs["standard_name"]
    np.testing.assert_array_equal(by_epsg["B04"].values, by_crs["B04"].values)
    with pytest.raises(SystemExit):
        main([*common, "--epsg", "wgs84", "--out", str(tmp_path / "z.nc")])
    assert "not an EPSG code" in capsys.readouterr().err


def test_version_and_info_into_head(index):
    done = subprocess.run([*CLI, "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("rasteret-dask ")
    # the real pipeline: head exits after one line, and the command must end quietly
    shell = f"set -o pipefail; {sys.executable} -m rasteret_dask.cli info {index} | head -1"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{" and done.stderr == ""


def test_warnings_and_logs_come_as_one_line_each(index, cog_dir, tmp_path, capsys):
    code = main(["read", index, "--aoi", _box(cog_dir), "--aoi-crs", "EPSG:32633", "--bands",
                 "B04", "--out", str(tmp_path / "v.nc"), "--quiet", "--verbose"])
    err = capsys.readouterr().err.splitlines()
    assert code == 0
    assert any(line.startswith("rasteret-dask: info: read B04 on the native grid EPSG:32633")
               for line in err), err
    assert all(line.startswith("rasteret-dask: ") for line in err), err

    def warn(args):
        warnings.warn("something\nworth knowing", UserWarning, stacklevel=1)
        return 0

    from rasteret_dask.cli import commands

    real = commands.info  # main() builds its parser afresh: it binds the patched command
    commands.info = warn
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            assert main(["info", index]) == 0
    finally:
        commands.info = real
    assert capsys.readouterr().err == "rasteret-dask: warning: something worth knowing\n"


def test_errors_say_what_to_do_next(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "no collection index at" in line and "build one first" in line

    from rasteret_dask.cli import commands

    def broken(args):
        raise ZeroDivisionError("division by zero")

    real = commands.info
    commands.info = broken
    try:
        assert main(["info", str(tmp_path)]) == 1
    finally:
        commands.info = real
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("rasteret-dask: error: ZeroDivisionError: division by zero")
    assert "--debug" in line
