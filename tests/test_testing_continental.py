"""The synthetic continental archive (rasteret_dask.testing.continental): its layout (pure), and
small archives read end to end over HTTP (per-record URLs through server aliases) and S3."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyproj
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from rasteret_dask.testing.continental import (
    ARCHIVE_ALIASES,
    ContinentalArchive,
    continental_archive,
    served_folder,
)
from rasteret_dask.testing.continental_cogs import CLOUD_CLASSES, locate_cog
from rasteret_dask.testing.continental_layout import (
    ArchiveSpec,
    mgrs_tiles,
    passes,
    record_ids,
    solar_dates,
)
from rasteret_dask.testing.server_process import RangeServerProcess
from rasteret_dask.testing.servers import S3Server

SMALL = ArchiveSpec(bbox=(11.6, 47.9, 12.4, 48.2), zones=(32, 33), months=1, pixels=1098,
                    step=10_000.0, blocksize=256)
"""Tiles of 10.98 km every 10 km on both sides of 12 E (zones 32 and 33), January 2024."""


# -- layout (pure) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def europe():
    spec = ArchiveSpec()
    tiles = mgrs_tiles(spec)
    return spec, tiles, passes(spec, tiles)


def test_a_year_over_europe_is_about_300000_records(europe):
    spec, tiles, records = europe
    assert 1900 <= len(tiles) <= 2100
    assert 280_000 <= len(records) <= 330_000
    assert set(np.unique(tiles.zone)) == set(range(29, 39))
    ids = record_ids(spec, tiles, records)
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith(("S2A_", "S2B_")) and ids[0].endswith("_0_L2A")
    days = records.datetime.astype("datetime64[D]")
    assert days.min() == np.datetime64("2024-01-01") and days.max() == np.datetime64("2024-12-31")
    assert np.all(np.diff(records.datetime) >= np.timedelta64(0))


def test_footprints_meet_their_zone_and_europe(europe):
    spec, tiles, _ = europe
    west, south, east, north = spec.bbox
    for zone in range(29, 39):
        band = shapely.box(max(west, 6 * zone - 186), south, min(east, 6 * zone - 180), north)
        mine = tiles.footprint[tiles.zone == zone]
        assert shapely.intersects(mine, band).all()
        assert shapely.within(shapely.centroid(mine), shapely.box(
            6 * zone - 186 - 6, south - 1, 6 * zone - 180 + 6, north + 1)).all()


def test_footprints_are_the_images_outlines(europe):
    spec, tiles, _ = europe
    for i in range(0, len(tiles), 97):
        to_utm = pyproj.Transformer.from_crs(4326, int(tiles.epsg[i]), always_xy=True)
        back = shapely.transform(tiles.footprint[i], to_utm.transform, interleaved=False)
        image = shapely.box(tiles.x0[i], tiles.y0[i] - spec.side, tiles.x0[i] + spec.side,
                            tiles.y0[i])
        assert shapely.hausdorff_distance(back, image) < 1.0
        assert tiles.x0[i] % 10 == 0 and (tiles.x0[i] + 40) % spec.step == 0


def test_revisits_alternate_platforms_every_five_days(europe):
    spec, tiles, records = europe
    tile = int(np.argmin(np.abs(tiles.lat - 50.0)))
    mine = records.track[records.tile == tile]
    for track in np.unique(mine):
        on = (records.tile == tile) & (records.track == track)
        days = records.datetime[on].astype("datetime64[D]").astype(int)
        gaps = np.diff(days)
        assert set(gaps) <= {5, 10, 15} and (gaps == 5).mean() > 0.9  # 2% of passes missing
        platform = records.platform[on]
        consecutive = gaps == 5
        assert (platform[1:][consecutive] != platform[:-1][consecutive]).all()
    assert 2 <= len(np.unique(mine)) <= 3


def test_each_pass_is_one_solar_day_around_half_past_ten(europe):
    _, tiles, records = europe
    solar = solar_dates(tiles, records)
    np.testing.assert_array_equal(solar, records.datetime.astype("datetime64[D]"))
    local = (records.datetime + np.round(tiles.lon[records.tile] * 240e6).astype(
        "timedelta64[us]") - solar.astype("datetime64[us]")) / np.timedelta64(1, "m")
    assert local.min() > 9 * 60 + 45 and local.max() < 10 * 60 + 45
    # one tile, one day: one pass (neighbouring tracks fly on other days)
    keys = np.stack([records.tile, solar.astype(int)])
    assert np.unique(keys, axis=1).shape[1] == len(records)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"pixels": 1001}, "pixels"),
    ({"step": 200_000.0}, "step"),
    ({"zones": (0,)}, "zones"),
    ({"platforms": ("S2A", "S2A")}, "platforms"),
    ({"bbox": (10, -5, 20, 5)}, "bbox"),
    ({"months": 0}, "months"),
])
def test_spec_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArchiveSpec(**kwargs)


def test_a_bbox_without_tiles_is_an_error():
    with pytest.raises(ValueError, match="no tile"):
        mgrs_tiles(ArchiveSpec(bbox=(100.0, 40.0, 101.0, 41.0)))


# -- small archives, end to end --------------------------------------------------------------


@pytest.fixture(scope="module")
def served_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("continental")
    # out of process: GDAL (rasterio.open, odc-stac) holds the GIL while it opens a URL
    with RangeServerProcess(served_folder(root), aliases=ARCHIVE_ALIASES) as server:
        yield continental_archive(root, server.url, SMALL), server


def _window_aoi(archive: ContinentalArchive, record: dict, window: Window) -> shapely.Polygon:
    transform = rasterio.Affine(*record["B04_metadata"]["transform"])
    left, top = transform @ (window.col_off, window.row_off)
    right, bottom = transform @ (window.col_off + window.width, window.row_off + window.height)
    return shapely.box(left, bottom, right, top)


def test_small_archive_counts_and_columns(served_archive):
    archive, _ = served_archive
    collection = archive.load()
    table = collection.to_table()
    assert table.num_rows == archive.records > 300
    assert archive.tiles == len(mgrs_tiles(SMALL))
    assert set(archive.bands) == {"B02", "B03", "B04", "B08", "SCL"}
    assert {"platform", "s2:mgrs_tile", "eo:cloud_cover", "proj:epsg"} <= set(
        table.column_names)
    assert set(table["proj:epsg"].to_pylist()) == {32632, 32633}
    assert archive.times.total > 0


def test_transforms_place_each_image_on_its_footprint(served_archive):
    archive, _ = served_archive
    rows = archive.load().to_table(columns=["id", "geometry", "proj:epsg", "B04_metadata",
                                            "SCL_metadata"]).to_pylist()
    for row in rows[::37]:
        md, scl = row["B04_metadata"], row["SCL_metadata"]
        a, _, c, _, e, f = md["transform"]
        assert (a, e) == (10.0, -10.0) and md["crs_epsg"] == row["proj:epsg"]
        assert scl["transform"] == [20.0, 0.0, c, 0.0, -20.0, f]
        image = shapely.box(c, f + e * md["image_height"], c + a * md["image_width"], f)
        to_utm = pyproj.Transformer.from_crs(4326, row["proj:epsg"], always_xy=True)
        footprint = shapely.transform(shapely.from_wkb(row["geometry"]), to_utm.transform,
                                      interleaved=False)
        assert shapely.hausdorff_distance(footprint, image) < 1.0, row["id"]


def test_a_small_aoi_reads_the_cogs_bytes_where_the_record_is(served_archive):
    archive, server = served_archive
    collection = archive.load()
    record = collection.subset(**{"s2:mgrs_tile": collection.head(1)["s2:mgrs_tile"][0]
                                  .as_py()}).head(1).to_pylist()[0]
    window = Window(300, 200, 400, 250)  # not tile-aligned, across 256-pixel tiles
    aoi = _window_aoi(archive, record, window)
    server.reset()
    ds = collection.subset(id=record["id"]).get_xarray(aoi, ["B04", "SCL"],
                                                       geometry_crs=record["proj:epsg"])
    with rasterio.open(archive.cog_path(record["id"], "B04")) as src:
        expected = src.read(1, window=window)
    np.testing.assert_array_equal(ds["B04"].isel(time=0).values, expected)
    scl = ds["SCL"].isel(time=0).values
    assert set(np.unique(scl)) <= {0, 3, 4, 5, 6, 7, 8, 9, 10}
    paths = {r.path for r in server.requests}
    assert paths == {f"archive/{record['s2:mgrs_tile']}/2024/1/{record['id']}/{b}.tif"
                     for b in ("B04", "SCL")}


def test_scl_has_the_cloud_classes(served_archive):
    archive, _ = served_archive
    with rasterio.open(archive.cogs.paths["S2A", "SCL"]) as src:
        classes = set(np.unique(src.read(1)))
    assert set(CLOUD_CLASSES) <= classes and {4, 5, 6} <= classes


def test_located_copies_are_georeferenced_where_the_records_are(served_archive):
    archive, server = served_archive
    aoi = shapely.box(11.98, 48.0, 12.02, 48.02)  # across 12 E: both zones
    ours = archive.load().get_xarray(aoi, ["B04"], crs=32632, resolution=10,
                                     groupby="solar_day").compute()
    copies = archive.locate(aoi, ["B04"])
    assert copies and all(p.is_file() for p in copies)
    items = archive.items(aoi, ["B04"])
    assert 0 < len(archive.items(aoi, ["B04"], date_range=("2024-01-01", "2024-01-10"))) \
        < len(items)
    item = items[0]
    with rasterio.open(item.assets["B04"].href) as src:  # GDAL over HTTP: the located copy
        assert list(src.transform)[:6] == item.assets["B04"].extra_fields["proj:transform"]
        assert src.crs.to_epsg() == int(item.assets["B04"].extra_fields["proj:code"][5:])
        source = archive.cog_path(item.id, "B04")
        assert src.read(1, window=Window(0, 0, 300, 300)).tobytes() == rasterio.open(
            source).read(1, window=Window(0, 0, 300, 300)).tobytes()
    again = archive.load().get_xarray(aoi, ["B04"], crs=32632, resolution=10,
                                      groupby="solar_day").compute()
    np.testing.assert_array_equal(again["B04"].values, ours["B04"].values)

    import odc.stac

    theirs = odc.stac.load(items, bands=["B04"], geobox=ours.odc.geobox, groupby="solar_day",
                           resampling="nearest", chunks={}).compute()
    assert theirs["B04"].shape == ours["B04"].shape
    both = (theirs["B04"].values != 0) & (ours["B04"].values != 0)
    assert both.mean() > 0.9
    assert (theirs["B04"].values[both] == ours["B04"].values[both]).mean() > 0.99


def test_locate_cog_rewrites_only_the_georeferencing(tmp_path, served_archive):
    archive, _ = served_archive
    source = archive.cogs.paths["S2B", "B08"]
    copy = locate_cog(source, tmp_path / "c.tif", epsg=32637, origin=(299960.0, 6500040.0))
    assert copy.stat().st_size == source.stat().st_size
    with rasterio.open(copy) as a, rasterio.open(source) as b:
        assert a.crs.to_epsg() == 32637 and "37N" in a.crs.to_wkt()
        assert (a.transform.c, a.transform.f) == (299960.0, 6500040.0)
        assert a.overviews(1) == b.overviews(1)
        assert a.block_shapes == b.block_shapes
    with pytest.raises(ValueError, match="UTM north"):
        locate_cog(source, tmp_path / "d.tif", epsg=4326, origin=(0.0, 0.0))


def test_shared_layout_over_s3(tmp_path):
    with S3Server() as s3:
        s3.create_bucket("archive")
        small = ArchiveSpec(bbox=(11.9, 48.0, 12.1, 48.05), zones=(32, 33), months=1,
                            pixels=512, step=5_000.0, blocksize=256,
                            start=dt.date(2024, 6, 1))
        archive = continental_archive(tmp_path, "s3://archive", small, layout="shared")
        s3.upload_dir(archive.served / "cogs", "archive", "cogs")
        collection = archive.load()
        record = collection.head(1).to_pylist()[0]
        assert record["assets"]["B08"]["href"] == f"s3://archive/{record['id'][:3]}/B08.tif" \
            .replace("archive/", "archive/cogs/")
        window = Window(100, 50, 200, 120)
        ds = collection.subset(id=record["id"]).get_xarray(
            _window_aoi(archive, record, window), ["B08"], geometry_crs=record["proj:epsg"],
            storage_options=s3.storage_options)
        with rasterio.open(archive.cog_path(record["id"], "B08")) as src:
            np.testing.assert_array_equal(ds["B08"].isel(time=0).values,
                                          src.read(1, window=window))
        with pytest.raises(ValueError, match="per-record"):
            archive.locate(shapely.box(11.95, 48.0, 12.0, 48.02), ["B08"])
