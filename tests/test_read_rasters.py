"""Collection.iterate_rasters (issue 19 item 13): one typed, lazy Raster per record, the
layer's columns checked at the call, reads through the plan and fetch path of get_xarray."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import shapely
from rasterio.windows import Window

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.read.rasters import check_layer
from rasteret_dask.read.skipped import MissingRecordsError
from rasteret_dask.tiff.cog_metadata import CogMetadata

from .test_read_helpers import build, record_table

BANDS = ("B04", "B08")
WHEN = ["2024-01-03T00:00:00", "2024-01-01T00:00:00", "2024-02-01T00:00:00"]


def _records(cog_dir, http_server, n=3, broken=None):
    return [{"id": f"s{i}", "datetime": WHEN[i], "path": cog_dir / f"scene{i}_B04.tif",
             "assets": {b: (http_server.href(f"scene{i}_{b}.tif" if i != broken else
                                             "absent.tif"), 0) for b in BANDS}}
            for i in range(n)]


@pytest.fixture(scope="module")
def scenes(cog_dir, http_server):
    return build(_records(cog_dir, http_server))


def test_one_typed_raster_per_record(scenes):
    rasters = list(scenes.iterate_rasters(list(BANDS), batch_size=1))
    table = scenes.to_table()
    assert [r.id for r in rasters] == table["id"].to_pylist()
    for raster, row in zip(rasters, table.to_pylist(), strict=True):
        assert isinstance(raster, rd.Raster) and raster.bands == BANDS
        assert raster.datetime == np.datetime64(row["datetime"].replace(tzinfo=None), "ns")
        for band in BANDS:
            want = CogMetadata.from_struct(row[S.metadata_column(band)])
            assert raster.metadata[band] == want
        assert raster.footprint.equals(shapely.from_wkb(row["geometry"]))
        assert raster.bbox == tuple(row["scene_bbox"]) and raster.crs_epsg == 32633
        assert raster.hrefs["B08"] == row["assets"]["B08"]["href"]
        with pytest.raises(AttributeError):
            raster.id = "other"  # frozen


def test_iteration_reads_batches_not_the_table(scenes, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the whole table was read")

    monkeypatch.setattr(type(scenes), "to_table", refuse)
    seen = []
    real = type(scenes).to_batches

    def counting(self, columns=None, *, batch_size=None):
        for batch in real(self, columns, batch_size=batch_size):
            seen.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(type(scenes), "to_batches", counting)
    rasters = scenes.iterate_rasters("B04", batch_size=1)
    assert isinstance(rasters, Iterator) and seen == []
    first = next(rasters)
    assert seen == [1] and first.bands == ("B04",)
    assert len(list(rasters)) == 2 and seen == [1, 1, 1]


def test_window_reads_equal_rasterio(scenes, cog_dir):
    files = {"s0": 0, "s1": 1, "s2": 2}
    for raster in scenes.iterate_rasters(list(BANDS)):
        ds = raster.read(window=Window(250, 100, 300, 200)).compute()
        assert ds.sizes == {"time": 1, "y": 200, "x": 300}
        assert ds["id"].values.tolist() == [raster.id]
        for band in BANDS:
            with rasterio.open(cog_dir / f"scene{files[raster.id]}_{band}.tif") as src:
                want = src.read(1, window=Window(250, 100, 300, 200))
            assert np.array_equal(ds[band].values[0], want)
    whole = next(scenes.iterate_rasters("B08")).read()
    assert whole.sizes == {"time": 1, "y": 600, "x": 700}


def test_geometry_reads_equal_get_xarray(scenes):
    raster = next(scenes.iterate_rasters(list(BANDS), id="s2"))
    b = raster.metadata["B04"].transform
    aoi = shapely.Point(b.c + 3000, b.f - 2500).buffer(800)
    got = raster.read(aoi, geometry_crs=32633).compute()
    want = scenes.get_xarray(aoi, list(BANDS), geometry_crs=32633, id="s2").compute()
    for band in BANDS:
        assert np.array_equal(got[band].values, want[band].values)
    assert got["x"].values.tolist() == want["x"].values.tolist()
    assert raster.plan(aoi, geometry_crs=32633).explain()["records"] == 1


def test_layer_requirements_are_checked_at_the_call(cog_dir, http_server):
    bare = rd.build_collection_from_table(record_table(_records(cog_dir, http_server)), name="b")
    with pytest.raises(ValueError, match=r"missing: \['B04_metadata'\]; run collection.enrich"):
        bare.iterate_rasters(["B04"])
    with pytest.raises(ValueError, match="has none: run collection.enrich"):
        bare.iterate_rasters()
    with pytest.raises(ValueError, match="unknown band"):
        bare.iterate_rasters(["B99"])
    schema = pa.schema([("id", pa.string()), ("datetime", pa.timestamp("us")),
                        ("assets", pa.struct([]))])
    with pytest.raises(ValueError, match=r"missing: \['geometry', 'scene_bbox', 'B1_metadata'\]"):
        check_layer(schema, ["B1"])


def test_records_without_metadata_are_skipped_or_refused(cog_dir, http_server, caplog):
    table = record_table(_records(cog_dir, http_server, broken=1))
    collection = rd.build_collection_from_table(table, name="m").enrich(progress=False).collection
    with caplog.at_level("WARNING", logger="rasteret_dask.read"):
        ids = [r.id for r in collection.iterate_rasters(list(BANDS))]
    assert ids == ["s0", "s2"] and "iterate_rasters skipped 2 record(s)" in caplog.text
    assert "absent.tif" in caplog.text and "not enriched" not in caplog.text
    with pytest.raises(MissingRecordsError, match="'s1'"):
        list(collection.iterate_rasters(list(BANDS), on_missing="raise"))


def test_bad_windows_name_the_record(scenes):
    raster = next(scenes.iterate_rasters("B04", id="s1"))
    with pytest.raises(ValueError, match="record 's1', band 'B04'.*not inside the image"):
        raster.read(window=(600, 0, 200, 10))
    with pytest.raises(ValueError, match="whole pixels"):
        raster.read(window=(0.5, 0, 10, 10))
    with pytest.raises(ValueError, match="not both"):
        raster.read(shapely.Point(0, 0), window=(0, 0, 1, 1))
