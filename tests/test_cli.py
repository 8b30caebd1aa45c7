"""The ``rasteret-dask`` command line: builds, enrich, info, read outputs, workflows, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import xarray as xr

from rasteret_dask.cli import main

from .test_ingest_stac import BBOX, cog_server, items, s2_cogs, stac  # noqa: F401

CLI = [sys.executable, "-m", "rasteret_dask.cli"]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def table_path(tmp_path_factory, http_server) -> Path:
    """A plain table of two UTM scenes (href columns per band)."""
    path = tmp_path_factory.mktemp("cli") / "scenes.parquet"
    footprint = shapely.to_wkb(shapely.box(14.0, 44.0, 16.0, 46.0))
    table = pa.table({
        "id": ["s0", "s1"],
        "datetime": pa.array([1704067200_000000, 1706745600_000000],
                             pa.timestamp("us", tz="UTC")),
        "geometry": [footprint, footprint],
        "red": [http_server.href("scene0_B04.tif"), http_server.href("scene1_B04.tif")],
        "split": ["train", "val"],
    })
    pq.write_table(table, path)
    return path


def _box(cog_dir) -> str:
    import rasterio

    with rasterio.open(cog_dir / "scene0_B04.tif") as src:
        left, top = src.xy(100, 50, offset="ul")
        right, bottom = src.xy(260, 230, offset="ul")
    return f"{left},{bottom},{right},{top}"


def test_build_table_info_read_outputs(table_path, tmp_path, cog_dir, capsys):
    code, out, _ = _run(["build-table", str(table_path), "--name", "t", "--workspace",
                         str(tmp_path), "--href-column", "red", "--band-map", "B04=red",
                         "--quiet"], capsys)
    assert code == 0 and "2 records" in out
    index = str(tmp_path / "t")
    code, out, _ = _run(["info", index], capsys)
    assert code == 0 and json.loads(out)["enriched"] == {"B04": 2}

    import rasteret_dask as rd

    box = _box(cog_dir)
    want = rd.load(index).get_xarray(tuple(map(float, box.split(","))), ["B04"],
                                     geometry_crs=32633).compute()
    for suffix in (".nc", ".zarr", ".tif"):
        out_path = tmp_path / f"aoi{suffix}"
        code, out, err = _run(["read", index, "--aoi", box, "--aoi-crs", "EPSG:32633",
                               "--bands", "B04", "--out", str(out_path), "--quiet"], capsys)
        assert code == 0, err
        assert f"wrote {out_path}" in out
        if suffix == ".tif":
            import rasterio

            with rasterio.open(out_path) as src:
                assert src.count == 2 and src.crs.to_epsg() == 32633
                np.testing.assert_array_equal(src.read(2), want["B04"].values[1])
                assert src.descriptions[0].startswith("B04 2024-01-01")
        else:
            got = xr.open_zarr(out_path) if suffix == ".zarr" else xr.open_dataset(out_path)
            np.testing.assert_array_equal(got["B04"].values, want["B04"].values)
            assert [str(v) for v in got["id"].values] == ["s0", "s1"]


def test_bad_input_gives_one_line_errors(table_path, tmp_path):
    index = tmp_path / "e"
    subprocess.run([*CLI, "build-table", str(table_path), "--name", "e", "--workspace",
                    str(tmp_path), "--href-column", "red", "--band-map", "B04=red", "--quiet"],
                   check=True, capture_output=True)
    cases = [
        (["info", str(tmp_path / "missing")], "no collection index"),
        (["read", str(index), "--aoi", "14.9,44.9,15.1,45.1", "--bands", "B99", "--out",
          str(tmp_path / "x.nc")], "unknown band"),
        (["build-stac", "--name", "x", "--stac-api", "http://127.0.0.1:9", "--collection", "c",
          "--date-range", "2024-06-30", "2024-01-01", "--workspace", str(tmp_path)],
         "invalid date range"),
        (["read", str(index), "--aoi", "14.9,44.9,15.1,45.1", "--bands", "B04", "--out",
          str(tmp_path / "x.png")], "cannot tell the output format"),
        (["enrich", str(index), "--bands", "B99"], "unknown band"),
        (["workflow", "reenrich", "--index", str(tmp_path / "missing")], "no collection index"),
    ]
    for argv, expected in cases:
        done = subprocess.run([*CLI, *argv], capture_output=True, text=True)
        assert done.returncode == 2, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rasteret-dask: error:"), done.stderr
        assert expected in lines[0] and "Traceback" not in done.stderr


def test_build_stac_enrich_and_reenrich_workflow(stac, tmp_path, capsys):  # noqa: F811
    code, out, err = _run(["build-stac", "--name", "s2", "--stac-api", stac.url, "--collection",
                           "sentinel-2-l2a", "--data-source", "earthsearch/sentinel-2-l2a",
                           "--bbox", ",".join(map(str, BBOX)),
                           "--date-range", "2024-01-01", "2024-02-29", "--workspace",
                           str(tmp_path), "--no-enrich", "--quiet"], capsys)
    assert code == 0, err
    index = str(tmp_path / "s2")
    code, out, _ = _run(["enrich", index, "--bands", "B04", "--quiet"], capsys)
    assert code == 0 and "enriched" in out
    code, out, _ = _run(["workflow", "reenrich", "--index", index, "--until", "2024-03-31",
                         "--quiet"], capsys)
    assert code == 0 and "added" in out
    code, out, _ = _run(["workflow", "reenrich", "--index", index, "--until", "2024-03-31",
                         "--quiet"], capsys)
    assert code == 0 and "nothing to do" in out


def test_cluster_option_uses_an_existing_scheduler(table_path, tmp_path, capsys):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        code, out, err = _run(["build-table", str(table_path), "--name", "c", "--workspace",
                               str(tmp_path), "--href-column", "red", "--band-map", "B04=red",
                               "--cluster", cluster.scheduler_address, "--quiet"], capsys)
    assert code == 0, err
    assert "cluster:" in err


def test_version_help_and_flags_after_the_subcommand(capsys):
    from rasteret_dask import __version__
    from rasteret_dask.cli import build_parser

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"rasteret-dask {__version__}"
    parser = build_parser()
    args = parser.parse_args(["enrich", "idx", "--debug", "--quiet", "--cluster", "x"])
    assert (args.debug, args.quiet, args.cluster) == (True, True, "x")
    args = parser.parse_args(["--debug", "workflow", "reenrich", "--index", "idx"])
    assert (args.debug, args.quiet, args.cluster) == (True, False, None)
    assert (args.lookback, args.full, args.prune, args.verify, args.verify_fraction) == \
        (3, False, False, False, 1.0)
    args = parser.parse_args(["workflow", "reenrich", "--index", "idx", "--lookback", "6",
                              "--full", "--prune", "--verify", "--verify-fraction", "0.2"])
    assert (args.lookback, args.full, args.prune, args.verify, args.verify_fraction) == \
        (6, True, True, True, 0.2)
    with pytest.raises(SystemExit):
        main(["workflow", "composite", "--help"])
    usage = capsys.readouterr().out
    assert usage.count("composite") >= 1 and "workflow composite composite" not in usage
    for command in (["--help"], ["read", "--help"], ["workflow", "export-chips", "--help"]):
        with pytest.raises(SystemExit):
            main(command)
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text
    # every option of every subcommand has a help line
    actions = []
    pending = [parser]
    while pending:
        current = pending.pop()
        for action in current._actions:
            if isinstance(action, __import__("argparse")._SubParsersAction):
                pending.extend(action.choices.values())
            else:
                actions.append(action)
    assert all(a.help for a in actions), [a.dest for a in actions if not a.help]


def test_info_into_a_closed_pipe_ends_quietly(table_path, tmp_path):
    subprocess.run([*CLI, "build-table", str(table_path), "--name", "p", "--workspace",
                    str(tmp_path), "--href-column", "red", "--band-map", "B04=red", "--quiet",
                    "--no-enrich"], check=True, capture_output=True)
    # the reader is gone before the command writes (what `info INDEX | head -1` can meet)
    child = subprocess.Popen([*CLI, "info", str(tmp_path / "p")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()
    assert child.wait(timeout=60) == 0
    assert child.stderr.read() == b""
