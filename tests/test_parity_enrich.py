"""Enrichment of the tables Rasteret accepts: assets without band_index, footprints and
proj:epsg filled from the headers, reads of records without a footprint, band indices."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyproj
import pytest
import rasterio
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.collection import MissingFootprintWarning
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.tables import synthetic_table


def _raster_extent(path) -> shapely.Geometry:
    """The file's extent in CRS84, as rasterio sees it (densely sampled edges)."""
    with rasterio.open(path) as src:
        box = shapely.box(*src.bounds)
        to_lonlat = pyproj.Transformer.from_crs(src.crs, "OGC:CRS84", always_xy=True)
    dense = shapely.segmentize(box, 10.0)
    return shapely.transform(dense, lambda xy: np.column_stack(
        to_lonlat.transform(xy[:, 0], xy[:, 1])))


def _table(hrefs: list[str], geometry=None, epsg=None) -> pa.Table:
    n = len(hrefs)
    base = synthetic_table(n, months=1, seed=4).drop_columns([S.EPSG])
    assets = pa.StructArray.from_arrays(
        [pa.StructArray.from_arrays([pa.array(hrefs), pa.array([0] * n, pa.int32())],
                                    fields=list(S.ASSET_TYPE))], names=["B04"])
    table = base.set_column(base.schema.get_field_index(S.ASSETS), S.ASSETS, assets)
    if geometry is not None:
        table = table.set_column(table.schema.get_field_index(S.GEOMETRY), S.GEOMETRY, geometry)
    if epsg is not None:
        table = table.append_column(S.EPSG, pa.array(epsg, pa.int32()))
    return table


def test_assets_without_band_index_enrich(cog_dir):
    raw = pa.table({
        S.ID: ["a", "b"],
        S.ASSETS: pa.array([{"B04": {"href": f"{cog_dir}/scene0_B04.tif"}},
                            {"B04": {"href": f"{cog_dir}/scene1_B04.tif"}}]),
    })
    assert raw[S.ASSETS].type.field("B04").type.get_field_index("band_index") < 0
    enriched = rd.enrich_table_with_cog_metadata(raw)
    metadata = enriched[S.metadata_column("B04")].to_pylist()
    assert all(m is not None and m["image_width"] == 700 for m in metadata)
    strings = pa.table({S.ID: ["c"], S.ASSETS: pa.array([{"B04": f"{cog_dir}/scene2_B04.tif"}])})
    assert rd.enrich_table_with_cog_metadata(strings)[S.metadata_column("B04")][0].is_valid


def test_null_footprints_are_filled_from_headers_in_memory(cog_dir):
    hrefs = [f"{cog_dir}/scene0_B04.tif", f"{cog_dir}/wgs84.tif", f"{cog_dir}/scene1_B04.tif"]
    given = synthetic_table(3, months=1, seed=4)[S.GEOMETRY][2].as_py()
    table = _table(hrefs, pa.array([None, None, given], pa.binary()))
    collection = rd.build_collection_from_table(table, name="nulls")
    assert collection.to_table()[S.SCENE_BBOX].null_count == 2
    enriched = collection.enrich(progress=False).collection.to_table()
    footprints = shapely.from_wkb(enriched[S.GEOMETRY].to_numpy(zero_copy_only=False))
    for row, path in ((0, cog_dir / "scene0_B04.tif"), (1, cog_dir / "wgs84.tif")):
        truth = _raster_extent(path)
        assert shapely.hausdorff_distance(footprints[row], truth) < 1e-6
        assert enriched[S.SCENE_BBOX][row].as_py() == pytest.approx(list(truth.bounds), abs=1e-6)
        assert enriched["bbox_minx"][row].as_py() == pytest.approx(truth.bounds[0], abs=1e-6)
        assert enriched[S.BBOX_STRUCT][row].as_py()["ymax"] == pytest.approx(truth.bounds[3],
                                                                           abs=1e-6)
    assert footprints[2].equals(shapely.from_wkb(given))  # a given footprint is kept
    assert enriched[S.EPSG].to_pylist() == [32633, 4326, 32633]  # backfilled from headers


def test_null_footprints_are_filled_in_a_partitioned_index(cog_dir, tmp_path):
    hrefs = [f"{cog_dir}/scene{i}_B04.tif" for i in range(3)] + ["/nonexistent/x.tif"]
    table = _table(hrefs, pa.nulls(4, pa.binary()), epsg=[None, 32633, 99, None])
    index = rd.build_collection_from_table(table, name="p").export(tmp_path / "index")
    report = index.enrich(progress=False, storage_options=None)
    assert report.enriched == 3 and report.failed == 1
    out = rd.load(tmp_path / "index").to_table().sort_by(S.ID)
    assert out[S.GEOMETRY].null_count == 1 and out[S.SCENE_BBOX].null_count == 1
    assert out[S.EPSG].to_pylist() == [32633, 32633, 99, None]  # only missing codes filled
    truth = _raster_extent(cog_dir / "scene0_B04.tif")
    found = rd.load(tmp_path / "index").subset(bbox=truth.bounds)
    assert len(found) == 3


def test_a_read_names_records_without_a_footprint(cog_dir, tmp_path):
    good = f"{cog_dir}/scene0_B04.tif"
    table = _table([good, good, "/nonexistent/y.tif"], pa.nulls(3, pa.binary()))
    table = table.set_column(table.schema.get_field_index(S.ID), S.ID,
                             pa.array(["kept", "unread", "broken"]))
    index = rd.build_collection_from_table(table, name="r").export(tmp_path / "index")
    aoi = _raster_extent(cog_dir / "scene0_B04.tif").centroid.buffer(0.005)
    with pytest.warns(MissingFootprintWarning, match=r"record 'kept'.*not been enriched"):
        assert len(index.subset(geometries=aoi)) == 0
    enriched = index.enrich(["B04"], progress=False).collection
    with pytest.warns(MissingFootprintWarning) as caught:
        ds = enriched.get_xarray(aoi, ["B04"])
    message = str(caught[0].message)
    assert "record 'broken'" in message and "header could not be read" in message
    assert "'kept'" not in message and ds.sizes["time"] == 2
    complete = enriched.subset(**{S.ID: ["kept", "unread"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingFootprintWarning)
        assert len(complete.subset(geometries=aoi)) == 2  # nothing missing: no warning


def test_href_column_band_indices_read_their_own_samples(tmp_path):
    path = write_cog(tmp_path / "two.tif", width=300, height=200, count=2, dtype="uint16",
                     blocksize=128, seed=9)
    table = synthetic_table(1, months=1, seed=1).drop_columns([S.ASSETS, S.EPSG])
    table = table.set_column(table.schema.get_field_index(S.GEOMETRY), S.GEOMETRY,
                             pa.nulls(1, pa.binary()))
    table = table.append_column("path", pa.array([str(path)]))
    collection = rd.build_from_table(table, name="two", workspace_dir=tmp_path / "ws",
                                     href_column="path", band_index_map={"A0": 0, "A1": 1},
                                     progress=False)
    with rasterio.open(path) as src:
        expected = src.read()
        bounds = src.bounds
        to_lonlat = pyproj.Transformer.from_crs(src.crs, "OGC:CRS84", always_xy=True)
    inner = shapely.box(bounds.left + 5, bounds.bottom + 5, bounds.right - 5, bounds.top - 5)
    aoi = shapely.transform(inner, lambda xy: np.column_stack(
        to_lonlat.transform(xy[:, 0], xy[:, 1])))
    ds = collection.get_xarray(aoi, ["A0", "A1"], all_touched=True)
    a0, a1 = ds["A0"].values[0], ds["A1"].values[0]
    assert not np.array_equal(a0, a1)
    with rasterio.open(path) as src:
        window = rasterio.windows.from_bounds(float(ds.x.min()) - 5, float(ds.y.min()) - 5,
                                              float(ds.x.max()) + 5, float(ds.y.max()) + 5,
                                              src.transform)
        window = window.round_offsets().round_lengths()
    rows = slice(window.row_off, window.row_off + a0.shape[0])
    cols = slice(window.col_off, window.col_off + a0.shape[1])
    np.testing.assert_array_equal(a0, expected[0][rows, cols])
    np.testing.assert_array_equal(a1, expected[1][rows, cols])
