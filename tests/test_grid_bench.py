"""benchmarks/grid_bench.py without I/O: its tiles straddle the zone border, its grids, its verdicts."""

from __future__ import annotations

import importlib
from pathlib import Path

import pyproj
import pytest
import shapely

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        yield importlib.import_module("grid_bench")


def test_tiles_overlap_across_the_zone_border(bench):
    west, east = (bench.tile_geobox(epsg) for epsg in bench.ZONES)
    west_lonlat = west.extent.to_crs("EPSG:4326").boundingbox
    east_lonlat = east.extent.to_crs("EPSG:4326").boundingbox
    assert west_lonlat.right > bench.BORDER_LON > east_lonlat.left
    # about 2 x OVERLAP wide on the 22 N parallel, measured in EPSG:32643
    overlap = west.extent.geom.intersection(east.extent.to_crs(west.crs).geom)
    to_utm = pyproj.Transformer.from_crs(4326, bench.ZONES[0], always_xy=True)
    y = to_utm.transform(bench.BORDER_LON, bench.LAT)[1]
    across = overlap.intersection(shapely.LineString([(0, y), (2e6, y)]))
    assert across.length == pytest.approx(2 * bench.OVERLAP, abs=100)


def test_reads_share_one_grid_across_the_border(bench):
    fine, coarse = bench.benchmark_reads()
    assert fine.geobox.crs.epsg == coarse.geobox.crs.epsg == bench.ZONES[0]
    assert fine.geobox.shape == (2000, 2000) and fine.geobox.resolution.x == bench.RES
    x, y = bench.border_xy(bench.ZONES[0])
    assert fine.geobox.extent.geom.contains(shapely.Point(x, y))
    for epsg in bench.ZONES:
        tile = bench.tile_geobox(epsg).extent.to_crs(coarse.geobox.crs).geom
        assert coarse.geobox.extent.geom.buffer(1).contains(tile)
    assert (fine.resampling, coarse.resampling) == ("nearest", "average")


def _row(bench, label, seconds):
    return bench.Row(label, bench.Measure(seconds=[seconds]))


def test_verdict_ratio_or_floor(bench):
    fine = bench.benchmark_reads()[0]
    floor = bench.Floor(fine.geobox, "nearest", [], {}, decode_seconds=[1.0 - bench.LATENCY])
    ours = _row(bench, "rasteret_dask", 1.5)
    assert "PASS" in bench.verdict(ours, _row(bench, "odc-stac 8 thr", 3.0), floor)
    assert "MISS" in bench.verdict(ours, _row(bench, "stackstac 8 thr", 4.0), floor)
    # a peer only 1.6x the floor: within 1.25x of the floor passes, beyond it misses
    assert "PASS" in bench.verdict(_row(bench, "rasteret_dask", 1.2),
                                   _row(bench, "odc-stac 8 thr", 1.6), floor)
    assert "MISS" in bench.verdict(_row(bench, "rasteret_dask", 1.3),
                                   _row(bench, "odc-stac 8 thr", 1.6), floor)
    unavailable = bench.Row("rasteret_dask", bench.Measure(), error="TypeError: x")
    assert "n/a" in bench.verdict(unavailable, _row(bench, "odc-stac 8 thr", 3.0), floor)


def test_help(bench, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--help"])
    assert exit_.value.code == 0
    assert "--peer-threads" in capsys.readouterr().out
