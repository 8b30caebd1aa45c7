"""Geometries of a read: polygon masks (all_touched both ways), several geometries, the input
forms (bbox, Arrow WKB column), reprojection from EPSG:4326; union grids of offset records;
clear errors; the graph size of a 1,000-record read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask.testing.cogs import default_transform, write_cog

from .test_read_helpers import (
    WGS84,
    assert_matches,
    build,
    expected,
    file_info,
    footprint_wkb,
    output_window,
    pixel_box,
    pixel_circle,
    record_table,
    single,
    to_crs,
)

rasterio = pytest.importorskip("rasterio")

NAN = float("nan")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("read-geometry")
    return {
        "u16": write_cog(root / "u16.tif", width=700, height=600, blocksize=256,
                         dtype="uint16", predictor=2, nodata=0, seed=3),
        "f32": write_cog(root / "f32.tif", width=520, height=470, blocksize=128,
                         dtype="float32", predictor=3, nodata=NAN, seed=4),
        "i16": write_cog(root / "i16.tif", width=610, height=500, blocksize=256,
                         dtype="int16", predictor=2, seed=5),
    }


def holed(t, col: float, row: float, outer: float, inner: float) -> shapely.Polygon:
    """An irregular polygon around a pixel position with an off-centre hole, in file CRS."""
    ring = [(col - outer, row - outer * 0.7), (col + outer * 1.1, row - outer),
            (col + outer * 0.9, row + outer * 0.8), (col - outer * 0.6, row + outer * 1.05)]
    hole = [(col - inner, row - inner * 0.5), (col + inner * 0.8, row - inner),
            (col + inner, row + inner * 0.9), (col - inner * 0.7, row + inner)]
    world = [[t @ p for p in ring], [t @ p for p in hole]]
    return shapely.Polygon(world[0], holes=[world[1]])


@pytest.mark.parametrize("all_touched", [False, True])
@pytest.mark.parametrize("name", ["u16", "f32", "i16"])
def test_polygon_masks_match_rasterio(files, name, all_touched):
    path = files[name]
    collection = build([single(path)])
    epsg, t, (h, w) = file_info(path)
    shapes = [pixel_circle(t, w * 0.48 + 0.37, h * 0.52 + 0.21, min(h, w) * 0.33),
              holed(t, w * 0.5 + 0.13, h * 0.5 + 0.31, min(h, w) * 0.4, min(h, w) * 0.15),
              pixel_box(t, 40.5, 30.5, w - 60.5, h - 20.5)]
    datasets = collection.get_xarray(shapes, ["B1"], geometry_crs=epsg, all_touched=all_touched)
    assert isinstance(datasets, list) and len(datasets) == 3
    for ds, shape in zip(datasets, shapes, strict=True):
        want = expected(ds, path, 0, geometry=shape, all_touched=all_touched)
        assert_matches(ds["B1"].values[0], want)
    # the hole is nodata (or 0): the mask really is applied
    hole_value = datasets[1]["B1"].values[0][datasets[1].sizes["y"] // 2,
                                             datasets[1].sizes["x"] // 2]
    assert np.array_equal(hole_value, np.float32(NAN) if name == "f32" else 0, equal_nan=True)
    # input order is kept
    reverse = collection.get_xarray(shapes[::-1], ["B1"], geometry_crs=epsg,
                                    all_touched=all_touched)
    for a, b in zip(datasets, reverse[::-1], strict=True):
        assert_matches(b["B1"].values, a["B1"].values)


def test_bbox_tuple_and_arrow_wkb_column(files):
    path = files["u16"]
    collection = build([single(path)])
    epsg, t, (h, w) = file_info(path)
    box = pixel_box(t, 100.25, 80.75, 420.5, 390.25)
    circle = pixel_circle(t, 300.3, 250.6, 120.0)
    by_shape = collection.get_numpy([box, circle], ["B1"], geometry_crs=epsg)
    by_tuple = collection.get_numpy(tuple(box.bounds), ["B1"], geometry_crs=epsg)
    assert isinstance(by_tuple, np.ndarray)
    assert_matches(by_tuple, by_shape[0])
    table = pa.table({"name": ["box", "circle"],
                      "aoi": pa.array(shapely.to_wkb([box, circle]), pa.binary())})
    by_column = collection.get_numpy(table.column("aoi"), ["B1"], geometry_crs=epsg)
    assert len(by_column) == 2
    for got, want in zip(by_column, by_shape, strict=True):
        assert_matches(got, want)
    ds = collection.get_xarray(table.column("aoi"), ["B1"], geometry_crs=epsg)[1]
    assert_matches(ds["B1"].values[0], expected(ds, path, 0, geometry=circle))


@pytest.mark.parametrize("all_touched", [False, True])
def test_geometry_crs_4326_equals_the_reprojected_native_geometry(files, all_touched):
    path = files["u16"]
    collection = build([single(path)])
    epsg, t, (h, w) = file_info(path)
    lon, lat = to_crs(shapely.Point(t @ (w * 0.4, h * 0.6)), epsg, WGS84).coords[0]
    aoi = shapely.Polygon([(lon - 0.02, lat - 0.01), (lon + 0.015, lat - 0.013),
                           (lon + 0.02, lat + 0.012), (lon - 0.01, lat + 0.015)])
    native = to_crs(aoi, WGS84, epsg)
    from_4326 = collection.get_xarray(aoi, ["B1"], geometry_crs=4326, all_touched=all_touched)
    default = collection.get_xarray(aoi, ["B1"], all_touched=all_touched)
    from_native = collection.get_xarray(native, ["B1"], geometry_crs=f"EPSG:{epsg}",
                                        all_touched=all_touched)
    want = expected(from_native, path, 0, geometry=native, all_touched=all_touched)
    for ds in (from_4326, default, from_native):
        assert np.array_equal(ds["x"].values, from_native["x"].values)
        assert np.array_equal(ds["y"].values, from_native["y"].values)
        assert_matches(ds["B1"].values[0], want)


@pytest.mark.parametrize(("dtype", "nodata", "shift"), [
    ("uint16", 0, (100, 60)),
    ("float32", NAN, (-130, -45)),
    ("int16", None, (300, -200)),
])
def test_offset_records_share_one_union_grid(tmp_path, dtype, nodata, shift):
    cols, rows = shift
    a, b, c, d, e, f = default_transform("EPSG:32633")
    paths = [write_cog(tmp_path / "a.tif", width=700, height=600, blocksize=256, dtype=dtype,
                       predictor=2 if dtype != "float32" else 3, nodata=nodata, seed=11),
             write_cog(tmp_path / "b.tif", width=650, height=560, blocksize=256, dtype=dtype,
                       nodata=nodata, transform=(a, b, c + cols * a, d, e, f + rows * e),
                       seed=12)]
    # b is older: it comes first on the time axis
    collection = build([single(paths[0], rid="a", when="2024-06-01"),
                        single(paths[1], rid="b", when="2024-03-01")])
    _, t, _ = file_info(paths[0])
    # a box and a circle over both images, reaching past both
    shapes = [pixel_box(t, min(cols, 0) - 40.5, min(rows, 0) - 30.5, 760.5 + max(cols, 0),
                        650.5 + max(rows, 0)),
              pixel_circle(t, 350.5 + cols / 2, 300.5 + rows / 2, 380.0)]
    datasets = collection.get_xarray(shapes, ["B1"], geometry_crs=32633)
    for k, ds in enumerate(datasets):
        assert list(ds["id"].values) == ["b", "a"]
        assert np.array_equal(ds["time"].values,
                              np.array(["2024-03-01", "2024-06-01"], dtype="datetime64[ns]"))
        window = output_window(ds, t)
        if k == 0:  # the box covers the whole union grid
            assert (window.col_off, window.row_off) == (min(cols, 0), min(rows, 0))
            assert window.width == max(700, cols + 650) - min(cols, 0)
            assert window.height == max(600, rows + 560) - min(rows, 0)
        for time, path in enumerate(paths[::-1]):
            want = expected(ds, path, 0, geometry=shapes[k])
            assert_matches(ds["B1"].values[time], want)
    # chunks a record's image does not reach are plain fills: no tiles, no fetch group
    from rasteret_dask.read import plan_reads
    from rasteret_dask.read.plan import NO_GROUP

    plan = plan_reads(collection, shapes[0], ["B1"], geometry_crs=32633)[0]
    band = plan.bands[0]
    fills = [work for group, work in band.chunks.values() if group == NO_GROUP]
    assert all(not work.tiles for work in fills)
    # the chunks (regular from the window's origin) that miss a record's image, in union-grid
    # pixels: b (first on the time axis) is at (rows, cols), a at the union's (0, 0) offset
    win = plan.window
    images = [(rows, cols, 560, 650), (0, 0, 600, 700)]
    edges_r = np.cumsum((0, *band.row_chunks)) + win.row_off
    edges_c = np.cumsum((0, *band.col_chunks)) + win.col_off
    off_r, off_c = min(rows, 0), min(cols, 0)
    missing = sum(
        1 for r0, c0, h, w in images
        for i in range(len(band.row_chunks)) for j in range(len(band.col_chunks))
        if edges_r[i + 1] <= r0 - off_r or edges_r[i] >= r0 - off_r + h
        or edges_c[j + 1] <= c0 - off_c or edges_c[j] >= c0 - off_c + w)
    assert len(fills) == missing
    assert fills or shift == (100, 60)  # the box reaches past both images


def test_errors_name_the_problem(files, tmp_path, caplog):
    path = files["u16"]
    epsg, t, (h, w) = file_info(path)
    # the same place on a 32632 grid: two CRSs in one read
    x0, y0 = to_crs(shapely.Point(t.c, t.f), epsg, WGS84).coords[0]
    x1, y1 = to_crs(shapely.Point(x0, y0), WGS84, 32632).coords[0]
    other = write_cog(tmp_path / "utm32.tif", width=700, height=600, crs="EPSG:32632",
                      transform=(10.0, 0.0, round(x1, -1), 0.0, -10.0, round(y1, -1)))
    both = build([single(path, rid="a"), single(other, rid="b", when="2024-05-02")])
    centre = to_crs(shapely.Point(t @ (w / 2, h / 2)), epsg, WGS84).buffer(0.005)
    # two CRSs in one read (issue 13): read onto the CRS of most records, said in one log line
    for call in (both.get_xarray, both.explain):
        caplog.clear()
        with caplog.at_level("INFO", logger="rasteret_dask.read"):
            call(centre, ["B1"])
        said = [r.getMessage() for r in caplog.records if "CRS of most records" in
                r.getMessage()]
        assert len(said) == 1 and "EPSG:32632" in said[0] and "EPSG:32633" in said[0]

    records = [single(path, bands={"B1": 0, "B2": 0}),
               {**single(path, rid="r1", when="2024-05-03"),
                "assets": {"B1": (str(path), 0), "B2": (str(tmp_path / "missing.tif"), 0)}}]
    partial = build(records, bands=["B1"])
    with pytest.raises(ValueError, match=r"unknown band.*B9"):
        partial.get_xarray(centre, ["B1", "B9"])
    with pytest.raises(ValueError, match=r"B2.*no COG metadata.*enrich"):
        partial.get_xarray(centre, ["B2"])
    with pytest.raises(ValueError, match=r"B2.*no COG metadata"):
        partial.explain(centre, ["B1", "B2"])
    far = shapely.box(100.0, -40.0, 100.1, -39.9)
    with pytest.raises(ValueError, match="no enriched record intersects"):
        partial.get_xarray(far, ["B1"])
    # B2 of r1 fails to enrich: a read of B1 and B2 keeps only the record that has both
    report = partial.enrich(["B2"], progress=False)
    assert report.failed == 1 and "missing.tif" in str(report.errors)
    ds = report.collection.get_xarray(centre, ["B1", "B2"])
    assert list(ds["id"].values) == ["r0"]
    assert list(report.collection.get_xarray(centre, ["B1"])["id"].values) == ["r0", "r1"]


def test_a_record_without_epsg_code_is_read_in_its_custom_crs(files, tmp_path):
    """A CRS with no EPSG code (a custom transverse Mercator) is rebuilt from the GeoKeys and
    read as rasterio reads it (issue 15: it used to be refused)."""
    custom = ("+proj=tmerc +lat_0=0 +lon_0=15.2 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 "
              "+units=m +no_defs")
    path = write_cog(tmp_path / "custom.tif", width=400, height=300, crs=custom)
    alone = build([single(path, rid="custom")])
    metadata = alone.to_table()["B1_metadata"][0]
    assert metadata["crs_epsg"].as_py() is None and metadata["crs_wkt"].as_py()
    aoi = shapely.from_wkb(footprint_wkb(path)).centroid.buffer(0.002)
    plan = alone.explain(aoi, ["B1"])[0]
    ds = alone.get_xarray(aoi, ["B1"]).compute()
    assert plan["shape"] == (1, ds.sizes["y"], ds.sizes["x"]) and plan["crs_epsg"] is None
    with rasterio.open(path) as src:
        crs = src.crs.to_wkt()
    assert_matches(ds["B1"].values[0], expected(ds, path, 0, geometry=to_crs(aoi, WGS84, crs)))


def test_a_record_without_any_crs_is_a_clear_error(tmp_path):
    """A georeferenced file without GeoKeys: explain and get_xarray refuse it alike, naming
    record, band, href and the cause."""
    import tifffile

    path = tmp_path / "nocrs.tif"
    data = np.arange(300 * 200, dtype=np.uint16).reshape(200, 300)
    tifffile.imwrite(path, data, tile=(128, 128), compression="zlib", extratags=[
        (33550, 12, 3, (10.0, 10.0, 0.0), False),
        (33922, 12, 6, (0.0, 0.0, 0.0, 500000.0, 5000000.0, 0.0), False)])
    # the footprint is that of an EPSG:32633 file at the grid the CRS-less file states
    where = write_cog(tmp_path / "where.tif", width=300, height=200,
                      transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0))
    table = record_table([single(where, href=str(path), rid="bare")])
    collection = rd.build_collection_from_table(table, name="bare").enrich(
        progress=False).collection
    aoi = shapely.from_wkb(table["geometry"][0].as_py()).centroid.buffer(0.001)
    messages = []
    for call in (collection.get_xarray, collection.explain):
        with pytest.raises(ValueError) as info:
            call(aoi, ["B1"])
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert all(part in messages[0] for part in ("record 'bare'", "band 'B1'", str(path),
                                                 "no CRS in its header"))


def test_graph_of_1000_records_has_one_task_per_group_and_chunk(tmp_path):
    path = write_cog(tmp_path / "four.tif", width=700, height=600, blocksize=256,
                     dtype="uint16", count=4, predictor=2, seed=8)
    bands = {"B1": 0, "B2": 1, "B3": 2, "B4": 3}
    one = build([single(path, bands=bands)]).to_table()
    n = 1000
    table = one.take(np.zeros(n, dtype=np.int64))
    times = np.datetime64("2024-01-01T00:00:00", "us") + np.arange(n) * np.timedelta64(6, "h")
    table = table.set_column(table.schema.get_field_index("id"), "id",
                             pa.array([f"rec{i:04d}" for i in range(n)]))
    table = table.set_column(table.schema.get_field_index("datetime"), "datetime",
                             pa.array(times, pa.timestamp("us", tz="UTC")))
    collection = rd.build_collection_from_table(table, name="thousand")
    epsg, t, _ = file_info(path)
    box = pixel_box(t, 100.5, 90.5, 650.5, 560.5)
    plan = collection.explain(box, list(bands), geometry_crs=epsg)[0]
    ds = collection.get_xarray(box, list(bands), geometry_crs=epsg)
    assert plan["records"] == n and ds.sizes["time"] == n
    per_band = 2 * 3  # 470 x 550 pixels in regular 256-pixel chunks (3 x 3 tiles)
    assert plan["chunks"] == n * len(bands) * per_band
    assert len(ds.__dask_graph__()) == plan["fetch_groups"] + plan["chunks"]
    for band in bands:
        assert ds[band].data.npartitions == n * per_band
    sample = ds.isel(time=[0, n - 1]).compute()
    assert list(sample["id"].values) == ["rec0000", f"rec{n - 1:04d}"]
    for band, index in bands.items():
        want = expected(sample, path, index)
        for k in range(2):
            assert_matches(sample[band].values[k], want)
