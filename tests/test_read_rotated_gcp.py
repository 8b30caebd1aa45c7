"""Rotated and sheared grids and GCP-only files (issue 15 item 4), read over local, HTTP and S3
onto north-up output grids as GDAL's warper reads them: without ``crs=``/``resolution=`` onto
the record's CRS at its pixel size, with them onto any grid. Each output chunk equals
``rasterio.warp.reproject`` of the dataset's band onto that chunk (GDAL warps a region as a
whole: a chunk is compared with the same region); with seven GCPs (a second-order polynomial)
interpolating kernels are within one level of it. A GCP-only file keeps its GCPs and their CRS
apart from the raster's CRS; ``explain()`` and ``get_xarray`` agree."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyproj
import pytest
import rasterio
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.control import GroundControlPoint
from rasterio.enums import Resampling
from rasterio.transform import GCPTransformer, from_gcps
from rasterio.warp import reproject

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.plan.reproject import chunk_windows, gcp_locator
from rasteret_dask.testing.cogs import synthetic_pixels, write_cog
from rasteret_dask.testing.servers import RangeServer

BUCKET = "rotated"
ROTATED = Affine.translation(500000, 5000000) @ Affine.rotation(20) @ Affine.scale(10, -10)
SHEARED = Affine(10.0, 3.0, 600000.0, 1.5, -10.0, 5100000.0)
GCPS = [GroundControlPoint(0, 0, 15.0, 45.0), GroundControlPoint(0, 300, 15.04, 45.002),
        GroundControlPoint(200, 0, 15.001, 44.98), GroundControlPoint(200, 300, 15.042, 44.981),
        GroundControlPoint(100, 150, 15.0203, 44.9905)]
# seven points: GDAL fits a second-order polynomial (curved)
CURVED = [*GCPS, GroundControlPoint(50, 250, 15.0345, 44.9972),
          GroundControlPoint(160, 40, 15.0061, 44.9838)]


def _gcp_file(path, gcps, width=300, height=200):
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="uint16", gcps=gcps, crs="EPSG:4326", tiled=True, blockxsize=128,
                       blockysize=128, compress="deflate") as dst:
        dst.write(synthetic_pixels(width, height, "uint16", seed=len(gcps)))
    return path


FILES = {
    "rotated.tif": lambda p: write_cog(p, width=300, height=200, transform=tuple(ROTATED)[:6],
                                       overviews=False, seed=1),
    "sheared.tif": lambda p: write_cog(p, width=260, height=240, transform=tuple(SHEARED)[:6],
                                       overviews=False, dtype="int16", nodata=-1, seed=2),
    "gcps.tif": lambda p: _gcp_file(p, GCPS),
    "curved.tif": lambda p: _gcp_file(p, CURVED),
}


@pytest.fixture(scope="module")
def rotated_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rotated")
    for name, writer in FILES.items():
        writer(root / name)
    return root


@pytest.fixture(scope="module")
def server(rotated_dir):
    with RangeServer(rotated_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def s3(s3_server, rotated_dir):
    s3_server.create_bucket(BUCKET)
    s3_server.upload_dir(rotated_dir, BUCKET)
    return {"s3": s3_server.storage_options}


def _georef(path) -> tuple[Affine, pyproj.CRS, tuple[int, int]]:
    """The file's transform (its GCPs' first-order fit for a GCP file), CRS and shape."""
    with rasterio.open(path) as src:
        gcps, gcp_crs = src.gcps
        if gcps:
            return from_gcps(gcps), pyproj.CRS.from_wkt(gcp_crs.to_wkt()), src.shape
        return src.transform, pyproj.CRS.from_wkt(src.crs.to_wkt()), src.shape


def _footprint(path) -> shapely.Geometry:
    """The image's outline in EPSG:4326 (its four corners, densified), a little buffered."""
    t, crs, (h, w) = _georef(path)
    ring = shapely.Polygon([t @ (c, r) for c, r in ((0, 0), (w, 0), (w, h), (0, h))])
    ring = shapely.segmentize(ring, ring.length / 80)
    to_lonlat = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)
    lonlat = shapely.transform(ring, lambda xy: np.column_stack(
        to_lonlat.transform(xy[:, 0], xy[:, 1])))
    return lonlat.buffer(0.0005)


def _collection(path, href: str | None = None, storage: dict | None = None,
                rid: str = "r0") -> rd.Collection:
    table = pa.table({
        "id": [rid],
        "datetime": pa.array([np.datetime64("2024-05-01T10:00:00", "us")], pa.timestamp("us")),
        "geometry": pa.array([shapely.to_wkb(_footprint(path))], pa.binary()),
        "assets": pa.array([{"B1": {"href": href or str(path), "band_index": 0}}],
                           pa.struct([pa.field("B1", S.ASSET_TYPE)])),
    })
    report = rd.build_collection_from_table(table, name=rid).enrich(
        progress=False, storage_options=storage)
    assert report.failed == 0, report.errors
    return report.collection


def _per_chunk_gdal(path, var, resampling: str) -> np.ndarray:
    """GDAL's warp of the dataset's band onto each chunk of ``var``'s output grid."""
    geobox = var.odc.geobox
    with rasterio.open(path) as src:
        nodata = src.nodata
        out = np.zeros(geobox.shape, src.dtypes[0])
        rows = np.cumsum((0, *var.chunks[1]))
        cols = np.cumsum((0, *var.chunks[2]))
        for r0, r1 in zip(rows[:-1], rows[1:], strict=True):
            for c0, c1 in zip(cols[:-1], cols[1:], strict=True):
                part = geobox[int(r0):int(r1), int(c0):int(c1)]
                block = np.full(part.shape, 0 if nodata is None else nodata, src.dtypes[0])
                reproject(rasterio.band(src, 1), block, dst_crs=part.crs.to_wkt(),
                          dst_transform=part.transform, resampling=Resampling[resampling],
                          dst_nodata=0 if nodata is None else nodata)
                out[int(r0):int(r1), int(c0):int(c1)] = block
    return out


def _aoi(path) -> shapely.Geometry:
    """A box in the file's CRS around its centre, reaching past two of its edges."""
    t, _, (h, w) = _georef(path)
    x0, y0 = t @ (w * 0.3, h * 0.35)
    x1, y1 = t @ (w * 1.1, h * 0.8)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _inside(var, box: shapely.Geometry) -> np.ndarray:
    """Output pixels whose centre the query box holds (the others read as nodata)."""
    x, y = np.meshgrid(var["x"].values, var["y"].values)
    return shapely.contains_xy(box, x, y)


@pytest.mark.parametrize("name", list(FILES))
def test_read_onto_a_north_up_grid_locally_over_http_and_s3(rotated_dir, server, s3, name):
    path = rotated_dir / name
    transform, crs, _ = _georef(path)
    aoi = _aoi(path)
    for href, storage in ((str(path), None), (server.href(name), None),
                          (f"s3://{BUCKET}/{name}", s3)):
        collection = _collection(path, href, storage)
        (plan,) = collection.explain(aoi, ["B1"], geometry_crs=crs, chunks={"x": 64, "y": 64})
        ds = collection.get_xarray(aoi, ["B1"], geometry_crs=crs, chunks={"x": 64, "y": 64},
                                   storage_options=storage)
        geobox = ds.odc.geobox
        assert geobox.axis_aligned and pyproj.CRS.from_wkt(geobox.crs.to_wkt()) == crs
        resolution = (np.hypot(transform.a, transform.d), np.hypot(transform.b, transform.e))
        assert plan["grid"]["resolution"] == pytest.approx(resolution, rel=1e-9)
        assert plan["grid"]["shape"] == geobox.shape and plan["shape"][1:] == ds["B1"].shape[1:]
        assert plan["grid"]["transform"] == pytest.approx(tuple(geobox.transform)[:6])
        got = ds["B1"].values[0]
        fill = ds["B1"].attrs.get("nodata", 0)
        want = np.where(_inside(ds, aoi), _per_chunk_gdal(path, ds["B1"], "nearest"), fill)
        assert np.array_equal(got, want), f"{(got != want).sum()} pixels differ"
        assert (got != fill).mean() > 0.4


def _inner_box(footprint: shapely.Geometry) -> tuple[float, float, float, float]:
    """A box inside the image: every chunk of a grid on it lies in the image, so each is
    warped as a whole (a chunk the image covers in part is warped on the part it reaches,
    as odc-stac does, which GDAL's warp of the whole chunk does not match pixel for pixel)."""
    inner = footprint.buffer(-0.0015)
    size = 0.02
    while True:
        box = shapely.box(*inner.centroid.buffer(size).bounds)
        if inner.contains(box):
            return box.bounds
        size *= 0.9


@pytest.mark.parametrize("resampling", ["bilinear", "cubic", "average"])
def test_read_onto_another_grid_equals_gdal(rotated_dir, resampling):
    for name in FILES:
        path = rotated_dir / name
        collection = _collection(path)
        geobox = GeoBox.from_bbox(_inner_box(_footprint(path)), "EPSG:4326",
                                  resolution=0.0001).to_crs(3857, resolution=17)
        ds = collection.get_xarray(None, ["B1"], geobox=geobox, resampling=resampling,
                                   chunks={"x": 48, "y": 48})
        got = ds["B1"].values[0].astype(int)
        want = _per_chunk_gdal(path, ds["B1"], resampling).astype(int)
        # seven GCPs: GDAL's second-order polynomial is fitted again on the window's points,
        # which moves a source position by a rounding error (interpolated values by 1 level)
        tolerance = 1 if name == "curved.tif" else 0
        assert np.abs(got - want).max() <= tolerance, \
            f"{name}: {(got != want).sum()} pixels differ"


def test_a_gcp_files_crs_is_its_gcps_not_the_rasters(rotated_dir):
    path = rotated_dir / "curved.tif"
    table = _collection(path).to_table()
    metadata = table[S.metadata_column("B1")][0].as_py()
    assert metadata["transform"] is None and metadata["crs_epsg"] is None
    assert metadata["crs_wkt"] is None and metadata["gcp_crs"] == "EPSG:4326"
    # proj:epsg is not stamped with the GCPs' CRS (the column is not even added)
    assert S.EPSG not in table.column_names or table[S.EPSG][0].as_py() is None
    with rasterio.open(path) as src:
        want = [(g.row, g.col, g.x, g.y, g.z or 0.0) for g in src.gcps[0]]
    assert [tuple(g.values()) for g in metadata["gcps"]] == want


def test_point_samples_on_rotated_and_gcp_records(rotated_dir):
    for name in FILES:
        path = rotated_dir / name
        transform, crs, (h, w) = _georef(path)
        pixels = [(10.5, 20.5), (h / 2 + 0.3, w / 3 + 0.6), (h - 5.5, w - 7.5)]
        points = [transform @ (c, r) for r, c in pixels]
        with rasterio.open(path) as src:
            values = src.read(1)
            if src.gcps[0]:
                with GCPTransformer(src.gcps[0]) as locate:
                    rows, cols = locate.rowcol([p[0] for p in points], [p[1] for p in points])
            else:
                rows, cols = rasterio.transform.rowcol(src.transform, *zip(*points, strict=True))
        collection = _collection(path)
        table = collection.sample_points([shapely.Point(p) for p in points], ["B1"],
                                         geometry_crs=crs)
        got = dict(zip(table["point_index"].to_pylist(), table["B1"].to_pylist(), strict=True))
        assert got == {k: int(values[r, c]) for k, (r, c) in enumerate(zip(rows, cols,
                                                                           strict=True))}


def test_too_few_gcps_are_refused_alike_by_explain_and_get_xarray(tmp_path):
    path = _gcp_file(tmp_path / "two.tif", GCPS[:2] + [GroundControlPoint(200, 0, 15.0, 44.98)])
    collection = _collection(path, rid="two")
    # drop to two points: what a file with two GCPs leaves in the index
    table = collection.to_table()
    column = table[S.metadata_column("B1")].to_pylist()
    column[0]["gcps"] = column[0]["gcps"][:2]
    table = table.set_column(table.schema.get_field_index(S.metadata_column("B1")),
                             S.metadata_column("B1"), pa.array(column, S.METADATA_TYPE))
    two = rd.build_collection_from_table(table, name="two")
    aoi = _footprint(path).centroid.buffer(0.003)
    messages = []
    for call in (two.get_xarray, two.explain):
        with pytest.raises(ValueError) as info:
            call(aoi, ["B1"])
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    for part in ("record 'two'", "band 'B1'", str(path), "2 ground control point",
                 "at least 3"):
        assert part in messages[0], messages[0]


def test_windows_cover_rotated_and_gcp_footprints():
    """Pure: every chunk's footprint lies in its window, for a rotated transform (four
    corners) and for GDAL's GCP transformer (outline sampled)."""
    bounds = np.array([[[500300.0, 4998600.0, 501100.0, 4999300.0]]])
    (window,) = chunk_windows(bounds, ROTATED, (200, 300), 0)[0]
    inverse = ~ROTATED
    for x in np.linspace(500300, 501100, 9):
        for y in np.linspace(4998600, 4999300, 9):
            col, row = inverse @ (x, y)
            if 0 <= row < 200 and 0 <= col < 300:
                assert window[0] <= row <= window[1] and window[2] <= col <= window[3]
    gcps = [(g.row, g.col, g.x, g.y, 0.0) for g in CURVED]
    box = np.array([[[15.01, 44.985, 15.03, 44.995]]])
    (window,) = chunk_windows(box, gcp_locator(gcps), (200, 300), 0, 8)[0]
    with GCPTransformer(CURVED) as locate:
        xs, ys = np.meshgrid(np.linspace(15.01, 15.03, 9), np.linspace(44.985, 44.995, 9))
        rows, cols = locate.rowcol(xs.ravel(), ys.ravel(), op=np.positive)
    assert (rows >= window[0]).all() and (rows <= window[1]).all()
    assert (cols >= window[2]).all() and (cols <= window[3]).all()
    half = chunk_windows(box, gcp_locator(gcps, (0.5, 0.5)), (100, 150), 0, 8)[0, 0]
    assert abs(half[1] - window[1] / 2) <= 1 and abs(half[3] - window[3] / 2) <= 1


def test_a_large_read_planned_on_the_workers(rotated_dir):
    """More than 64 chunks: each chunk task plans its rotated or GCP windows itself."""
    for name in ("rotated.tif", "curved.tif"):
        path = rotated_dir / name
        collection = _collection(path)
        _, crs, _ = _georef(path)
        geobox = GeoBox.from_bbox(_inner_box(_footprint(path)), "EPSG:4326",
                                  resolution=0.0001).to_crs(crs.to_wkt())
        (plan,) = collection.explain(None, ["B1"], geobox=geobox, chunks={"x": 16, "y": 16})
        assert plan["planned_on"] == "workers"
        ds = collection.get_xarray(None, ["B1"], geobox=geobox, chunks={"x": 16, "y": 16})
        got = ds["B1"].values[0]
        want = _per_chunk_gdal(path, ds["B1"], "nearest")
        assert np.array_equal(got, want), f"{name}: {(got != want).sum()} pixels differ"


def test_a_coarser_read_of_a_gcp_file_uses_its_overview(tmp_path):
    """GDAL's overview of a GCP file is located by the GCPs scaled to its size."""
    path = tmp_path / "gcp_overviews.tif"
    with rasterio.open(path, "w", driver="GTiff", width=1200, height=800, count=1,
                       dtype="uint16", crs="EPSG:4326", tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate",
                       gcps=[GroundControlPoint(g.row * 4, g.col * 4, g.x, g.y)
                             for g in GCPS]) as dst:
        dst.write(synthetic_pixels(1200, 800, "uint16"))
        dst.build_overviews([2, 4], Resampling.average)
    collection = _collection(path)
    geobox = GeoBox.from_bbox(_inner_box(_footprint(path)), "EPSG:4326", resolution=0.00025)
    (plan,) = collection.explain(None, ["B1"], geobox=geobox)
    assert plan["overview_levels"] == {"B1": {2: 1}}  # 7.4x coarser: the 4x overview
    got = collection.get_xarray(None, ["B1"], geobox=geobox,
                                chunks={"x": 1024, "y": 1024})["B1"].values[0]
    with rasterio.open(path, overview_level=1) as src:
        want = np.zeros(geobox.shape, "uint16")
        reproject(rasterio.band(src, 1), want, dst_crs="EPSG:4326",
                  dst_transform=geobox.transform, dst_nodata=0)
    assert np.array_equal(got, want), f"{(got != want).sum()} pixels differ"
