"""get_gdf and sample_points: same plan and fetch path as get_xarray, checked against rasterio."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.windows import Window

import rasteret_dask as rd
from rasteret_dask import schema as S


@pytest.fixture(scope="module")
def scenes(cog_dir, http_server):
    """Three records (scenes 0-2, bands B04/B08) served over HTTP, enriched."""
    with rasterio.open(cog_dir / "scene0_B04.tif") as src:
        bounds, crs = src.bounds, src.crs
    to_lonlat = Transformer.from_crs(crs, 4326, always_xy=True)
    box = shapely.box(*bounds).segmentize(500)
    footprint = shapely.transform(box, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))
    bands = []
    for band in ("B04", "B08"):
        hrefs = [http_server.href(f"scene{i}_{band}.tif") for i in range(3)]
        bands.append(pa.StructArray.from_arrays(
            [pa.array(hrefs), pa.array([0] * 3, pa.int32())], fields=list(S.ASSET_TYPE)))
    table = pa.table({
        "id": ["a", "b", "c"],
        "datetime": pa.array(np.array(["2024-01-03", "2024-01-01", "2024-02-01"],
                                      dtype="datetime64[us]")),
        "geometry": [shapely.to_wkb(footprint)] * 3,
        "assets": pa.StructArray.from_arrays(bands, names=["B04", "B08"]),
    })
    collection = rd.build_collection_from_table(table, name="t").enrich(progress=False).collection
    return collection, bounds


def test_sample_points_match_rasterio_and_fetch_only_their_tiles(scenes, cog_dir, http_server):
    collection, b = scenes
    points = [shapely.Point(b.left + 1555, b.top - 2345), shapely.Point(b.left + 6001, b.top - 4999),
              shapely.Point(b.left - 50, b.top - 10)]
    http_server.reset()
    table = collection.sample_points(points, ["B04", "B08"], geometry_crs=32633)
    assert http_server.count("GET") <= 2 * 3 * 2  # at most one tile per point x record x band
    assert table.num_rows == 6 and table["B04"].type == pa.uint16()
    files = {"a": 0, "b": 1, "c": 2}
    for row in table.to_pylist():
        p = points[row["point_index"]]
        for band in ("B04", "B08"):
            with rasterio.open(cog_dir / f"scene{files[row['id']]}_{band}.tif") as src:
                assert next(src.sample([(p.x, p.y)]))[0] == row[band]
    assert table["id"].to_pylist()[:3] == ["b", "a", "c"]  # time order per point


def test_get_gdf_rows_arrays_and_transforms(scenes, cog_dir):
    collection, b = scenes
    aoi = shapely.box(b.left + 105, b.top - 905, b.left + 805, b.top - 105)
    frame = collection.get_gdf(aoi, ["B04", "B08"], geometry_crs=32633)
    assert len(frame) == 3 * 2 and set(frame["band"]) == {"B04", "B08"}
    files = {"a": 0, "b": 1, "c": 2}
    for row in frame.itertuples():
        a, _, c, _, e, f = row.transform
        col, r = round((c - b.left) / a), round((b.top - f) / -e)
        h, w = row.array.shape
        with rasterio.open(cog_dir / f"scene{files[row.id]}_{row.band}.tif") as src:
            assert np.array_equal(row.array, src.read(1, window=Window(col, r, w, h)))


def test_sample_points_fetch_each_tile_of_a_multiband_file_once(tmp_path):
    """Three bands of one pixel-interleaved file, several points per tile: every tile under
    the points is fetched once, and nothing else; values are rasterio's."""
    from rasteret_dask.testing.cogs import write_cog
    from rasteret_dask.testing.servers import RangeServer

    from .test_read_helpers import build, single

    path = write_cog(tmp_path / "three.tif", width=700, height=600, blocksize=256, count=3,
                     dtype="uint16", predictor=2, seed=5)
    with rasterio.open(path) as src:
        t, epsg = src.transform, src.crs.to_epsg()
    # rows/cols: three points in tile 0, one in tile 8 (the last), one outside the image
    pixels = [(3.5, 7.5), (200.5, 100.5), (255.5, 0.5), (590.5, 690.5), (-5.0, 10.0)]
    points = [shapely.Point(*(t @ (c, r))) for r, c in pixels]
    bands = {"B1": 0, "B2": 1, "B3": 2}
    with RangeServer(tmp_path) as server:
        collection = build([single(path, href=server.href("three.tif"), bands=bands)])
        md = collection.to_table()[S.metadata_column("B1")][0].as_py()
        offsets, counts = md["tile_offsets"], md["tile_byte_counts"]
        assert offsets[8] - (offsets[0] + counts[0]) > 32 * 1024  # no merged request spans them
        server.reset()
        table = collection.sample_points(points, list(bands), geometry_crs=epsg)
        assert server.bytes_sent == counts[0] + counts[8] and server.count("GET") == 2
    assert table["point_index"].to_pylist() == [0, 1, 2, 3]
    with rasterio.open(path) as src:
        want = [list(v) for v in src.sample([(p.x, p.y) for p in points[:4]])]
    got = [[row[b] for b in bands] for row in table.to_pylist()]
    assert got == [[int(x) for x in w] for w in want]
