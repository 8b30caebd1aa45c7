"""Read preparation and point planning, pure: in-memory indexes with hand-made metadata, no COG
is read (select, Selection, band_records, plan_points, FetchGroups, CogMetadata.from_arrow)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyproj
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.decode import DEFAULT_MAX_TILE_BYTES
from rasteret_dask.io import ByteRange
from rasteret_dask.plan.grid import GridSpec
from rasteret_dask.read import MissingRecordsError, band_records, query_geometries, select
from rasteret_dask.read.plan import NO_GROUP, FetchGroup, FetchGroups
from rasteret_dask.read.points import plan_points, sample_order
from rasteret_dask.tiff.cog_metadata import CogMetadata, MetadataError

X0, Y1 = 500000.0, 4200000.0  # top-left corner of every image, EPSG:32633
TILE = 256
WORLD = shapely.box(-180, -90, 180, 90)


def struct(width: int = 1000, height: int = 600, *, epsg: int | None = 32633,
           x0: float = X0, y1: float = Y1, samples: int = 1, tile: int = TILE,
           counts: list[int] | None = None, **changes) -> dict:
    """A ``{band}_metadata`` struct of a uint16 deflate image with 10 m pixels."""
    tiles = -(-width // tile) * -(-height // tile)
    md = dict.fromkeys(S.METADATA_FIELDS)
    md.update(image_width=width, image_height=height, tile_width=tile, tile_height=tile,
              dtype="uint16", transform=[10.0, 0.0, x0, 0.0, -10.0, y1],
              tile_offsets=[1000 + 100_000 * i for i in range(tiles)],
              tile_byte_counts=counts if counts is not None else [5000] * tiles,
              compression=8, predictor=2, samples_per_pixel=samples, planar_configuration=1,
              photometric=1, crs_epsg=epsg)
    md.update(changes)
    return md


def footprint(md: dict) -> bytes:
    """The image's footprint in EPSG:4326 (a little larger: rows meet every query inside)."""
    t = md["transform"] or struct()["transform"]
    box = shapely.box(t[2] - 50, t[5] - 10 * md["image_height"] - 50,
                      t[2] + 10 * md["image_width"] + 50, t[5] + 50)
    to_lonlat = pyproj.Transformer.from_crs(md["crs_epsg"] or 32633, 4326, always_xy=True)
    return shapely.to_wkb(shapely.transform(
        box, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))))


def index(rows: list[dict]) -> rd.Collection:
    """An in-memory collection; a row is {"id", "day", "bands": {band: (href, index, md)}}."""
    bands = list(rows[0]["bands"])
    assets, metadata = [], {}
    for band in bands:
        values = [r["bands"][band] for r in rows]
        assets.append(pa.StructArray.from_arrays(
            [pa.array([v[0] for v in values], pa.string()),
             pa.array([v[1] for v in values], pa.int32())], fields=list(S.ASSET_TYPE)))
        metadata[S.metadata_column(band)] = pa.array([v[2] for v in values], S.METADATA_TYPE)
    shapes = [footprint(next(v[2] for v in r["bands"].values() if v[2] is not None))
              for r in rows]
    table = pa.table({
        S.ID: [r["id"] for r in rows],
        S.DATETIME: pa.array(np.array([f"2024-05-{r['day']:02d}" for r in rows],
                                      dtype="datetime64[us]")),
        S.GEOMETRY: pa.array(shapes, pa.binary()),
        S.ASSETS: pa.StructArray.from_arrays(assets, names=bands),
        **metadata,
    })
    return rd.build_collection_from_table(table, name="select")


def box(col0: float, row0: float, col1: float, row1: float) -> shapely.Polygon:
    """A box in pixel coordinates of the images' grid, in EPSG:32633."""
    return shapely.box(X0 + 10 * col0, Y1 - 10 * row1, X0 + 10 * col1, Y1 - 10 * row0)


def three() -> rd.Collection:
    """r0 (day 3) and r2 (day 1) with B1 and B2; r1 (day 2) without B2 metadata."""
    return index([
        {"id": "r0", "day": 3, "bands": {"B1": ("h0.tif", 0, struct()),
                                         "B2": ("h0b.tif", 0, struct())}},
        {"id": "r1", "day": 2, "bands": {"B1": ("h1.tif", 0, struct()),
                                         "B2": ("h1b.tif", 0, None)}},
        {"id": "r2", "day": 1, "bands": {"B1": ("h2.tif", 0, struct(x0=X0 + 2560)),
                                         "B2": ("h2b.tif", 0, struct(x0=X0 + 2560))}},
    ])


def test_selection_aligns_bands_lists_skipped_and_unions_grids():
    collection = three()
    (selection,) = select(collection, box(10, 10, 500, 300), ["B1", "B2"], geometry_crs=32633)
    assert selection.bands == ["B1", "B2"]
    assert [r.id for r in selection.records] == ["r2", "r0"]  # time order, r1 left out
    assert [r.id for r in selection.records_by_band["B2"]] == ["r2", "r0"]
    (skipped,) = selection.skipped
    assert (skipped.id, skipped.band, skipped.href) == ("r1", "B2", "h1b.tif")
    assert selection.crs_epsg == 32633 and not selection.is_empty
    assert selection.grids[("B1", "r2")] == GridSpec.from_metadata(
        selection.records[0].metadata)
    union, offsets = selection.union()
    assert (union.width, union.height) == (1256, 600)
    assert offsets[("B1", "r0")] == (0, 0) and offsets[("B2", "r2")] == (0, 256)
    record = selection.records[0]
    assert record.label == "record 'r2', band 'B1', href h2.tif"
    assert record.metadata.tiles_across == 4 and record.band == "B1"
    # unaligned: every band keeps its own records, in index order
    (loose,) = select(collection, box(10, 10, 500, 300), "B1", geometry_crs=32633, align=False)
    assert [r.id for r in loose.records] == ["r0", "r1", "r2"] and loose.skipped == ()
    # the same rows, asked to raise
    with pytest.raises(MissingRecordsError, match="'r1'"):
        select(collection, box(10, 10, 500, 300), ["B1", "B2"], geometry_crs=32633,
               on_missing="raise")
    # a geometry per selection, in input order; nothing there: an empty selection
    lonlat = shapely.box(100.0, -40.0, 100.1, -39.9)
    near, far = select(collection, [box(1, 1, 2, 2), lonlat], ["B1"], geometry_crs=4326)
    assert near.is_empty and far.is_empty
    with pytest.raises(ValueError, match="no enriched record intersects"):
        raise far.empty_error()


def test_the_one_crs_rule_and_the_epsg_rule_name_what_is_wrong():
    mixed = index([
        {"id": "a", "day": 1, "bands": {"B1": ("a.tif", 0, struct())}},
        {"id": "b", "day": 2, "bands": {"B1": ("b.tif", 0, struct(epsg=32632))}},
    ])
    (selection,) = select(mixed, WORLD, ["B1"])
    assert [r.id for r in selection.records] == ["a", "b"]
    for call in (lambda: selection.crs_epsg, selection.union):
        with pytest.raises(ValueError, match=r"several CRSs \(EPSG:32632, EPSG:32633\)"):
            call()
    custom = index([{"id": "c", "day": 1,
                     "bands": {"B1": ("https://x/c.tif?sig=SECRET", 0, struct(epsg=None))}}])
    with pytest.raises(ValueError, match=r"record 'c', band 'B1', href https://x/c.tif.*"
                                         r"no EPSG code") as info:
        select(custom, WORLD, ["B1"])
    assert "SECRET" not in str(info.value)


def test_incomplete_metadata_names_record_band_and_href():
    broken = index([{"id": "r9", "day": 1,
                     "bands": {"B1": ("s3://bucket/r9.tif", 0, struct(transform=None))}}])
    with pytest.raises(MetadataError, match=r"^record 'r9', band 'B1', href s3://bucket/r9.tif: "
                                            r"metadata lacks transform"):
        select(broken, WORLD, ["B1"])
    table = broken.to_table()
    with pytest.raises(MetadataError, match="record 'r9', band 'B1'.*lacks transform"):
        band_records(table, "B1")


def test_bands_are_checked_before_any_query():
    collection = three()
    with pytest.raises(ValueError, match=r"unknown band\(s\) \['B9'\]"):
        select(collection, box(1, 1, 2, 2), ["B1", "B9"], geometry_crs=32633)
    with pytest.raises(ValueError, match="on_missing must be one of"):
        select(collection, box(1, 1, 2, 2), ["B1"], on_missing="ignore")
    bare = rd.build_collection_from_table(collection.to_table().drop_columns(["B2_metadata"]),
                                          name="bare")
    with pytest.raises(ValueError, match=r"\['B2'\] have no COG metadata"):
        select(bare, box(1, 1, 2, 2), ["B2"], geometry_crs=32633)


def test_query_geometries_take_the_crs_they_carry():
    gpd = pytest.importorskip("geopandas")
    shapes, crs = query_geometries(gpd.GeoSeries([box(1, 1, 2, 2)], crs=32633))
    assert crs.to_epsg() == 32633 and len(shapes) == 1
    shapes, crs = query_geometries([(1.0, 2.0, 3.0, 4.0), "POINT (1 2)"], 3857)
    assert crs.to_epsg() == 3857 and [s.geom_type for s in shapes] == ["Polygon", "Point"]


def test_from_arrow_is_from_struct_per_row():
    rows = [struct(), None, struct(width=300, height=300, samples=3, planar_configuration=2)]
    column = pa.chunked_array([pa.array(rows[:2], S.METADATA_TYPE),
                               pa.array(rows[2:], S.METADATA_TYPE)])
    built = CogMetadata.from_arrow(column)
    assert built[1] is None
    assert built[0] == CogMetadata.from_struct(rows[0])
    assert built[2] == CogMetadata.from_struct(rows[2]) and built[2].samples_per_tile == 1
    bad = pa.array([struct(), struct(tile_offsets=[1, 2])], S.METADATA_TYPE)
    with pytest.raises(MetadataError, match=r"^row 1: 2 tile offsets and 12 byte counts"):
        CogMetadata.from_arrow(bad, lambda k: f"row {k}")


def test_fetch_groups_close_when_full_and_hold_each_tile_once():
    groups = FetchGroups(group_tiles=3, group_bytes=1000)
    groups.open_chunk(2)
    assert [groups.add("a", t, 10 * t, 5, "A") for t in (0, 1, 0)] == [0, 1, 0]
    groups.open_chunk(2)  # 2 + 2 > 3: a new group
    assert groups.current == 1 and groups.add("a", 0, 0, 5, "A") == 0
    groups.open_chunk(1)
    assert groups.add("b", 0, 0, 2000, "B") == 1  # the group now holds its byte budget
    groups.open_chunk(1)
    assert groups.current == 2
    closed = groups.close()
    assert closed == (FetchGroup((ByteRange("a", 0, 5), ByteRange("a", 10, 15)), ("A", "A")),
                      FetchGroup((ByteRange("a", 0, 5), ByteRange("b", 0, 2000)), ("A", "B")))


def points_index(counts: list[int] | None = None, **changes) -> rd.Collection:
    """One two-band pixel-interleaved file (B1 and B2 share the href) and a second record."""
    shared = struct(samples=2, counts=counts, **changes)
    return index([
        {"id": "p0", "day": 2, "bands": {"B1": ("p0.tif", 0, shared), "B2": ("p0.tif", 1, shared)}},
        {"id": "p1", "day": 1, "bands": {"B1": ("p1.tif", 0, struct()),
                                         "B2": ("p1b.tif", 0, struct())}},
    ])


def points_at(*pixels: tuple[float, float]) -> shapely.MultiPoint:
    return shapely.MultiPoint([(X0 + 10 * c, Y1 - 10 * r) for r, c in pixels])


def test_point_plans_fetch_each_tile_once_and_read_the_box_of_its_points():
    # points 0 and 2 share tile 0, point 1 is in tile 5 (row 1, col 1), point 3 is outside
    points = points_at((10.5, 20.5), (300.5, 400.5), (200.5, 5.5), (-3.0, 5.0))
    (selection,) = select(points_index(), points, ["B1", "B2"], geometry_crs=32633,
                          align=False)
    plan = plan_points(selection)
    # tiles: p0 (0, 5) shared by both bands, p1 (0, 5) in B1's file and B2's file
    (group,) = plan.groups
    assert [(r.href, r.start) for r in group.ranges] == [
        ("p0.tif", 1000), ("p0.tif", 501000), ("p1.tif", 1000), ("p1.tif", 501000),
        ("p1b.tif", 1000), ("p1b.tif", 501000)]
    assert len(plan.chunks) == 8  # one per band, record and tile
    group_of, first = plan.chunks[0]
    assert group_of == 0 and first.shape == (191, 16)  # rows 10-200, cols 5-20 of tile 0
    (read,) = first.tiles
    assert read.src == (10, 201, 5, 21) and read.dst == (0, 191, 0, 16)
    b2 = [work for _, work in plan.chunks if "band 'B2'" in work.label and "p0" in work.label]
    assert {w.sample for w in b2} == {1} and {w.tiles[0].payload for w in b2} == {0, 1}
    samples = {(s.record.band, s.record.id, s.point): (s.chunk, s.row, s.col)
               for s in plan.samples}
    assert samples[("B1", "p0", 0)] == (0, 0, 15) and samples[("B1", "p0", 2)] == (0, 190, 0)
    assert samples[("B1", "p0", 1)][1:] == (0, 0)  # alone in its tile: a 1 x 1 chunk
    assert plan.chunks[samples[("B1", "p0", 1)][0]][1].tiles[0].src == (44, 45, 144, 145)
    assert not any(point == 3 for _, _, point in samples)
    rows = sample_order(plan)
    assert [(k, rid) for k, rid, _ in rows] == [(0, "p1"), (0, "p0"), (1, "p1"), (1, "p0"),
                                                (2, "p1"), (2, "p0")]
    assert plan.explain()["tiles"] == 6 and plan.explain()["samples"] == 12


def test_point_plans_refuse_tiles_over_the_limit_and_allocate_nothing_for_them():
    # p0's tiles: tile 0 sparse, tile 1 over the limit
    counts = [0, DEFAULT_MAX_TILE_BYTES + 1] + [5000] * 10
    points = points_at((1.5, 1.5), (200.5, 250.5), (5.5, 300.5), (250.5, 500.5))
    (selection,) = select(points_index(counts), points, ["B1"], geometry_crs=32633,
                          align=False)
    plan = plan_points(selection)
    p0 = [(group, work) for group, work in plan.chunks if "p0" in work.label]
    (sparse_group, sparse), (refused_group, refused) = p0[:2]
    assert sparse.shape != (1, 1) and sparse_group == 0 and sparse.error is None
    assert refused_group == NO_GROUP and refused.shape == (1, 1) and not refused.tiles
    assert "declares" in refused.error and "compressed" in refused.error
    assert not any(r.href == "p0.tif" and r.start == 101000 for g in plan.groups
                   for r in g.ranges)
    points_in_refused = [s for s in plan.samples if s.chunk == p0.index((refused_group, refused))]
    assert [(s.point, s.row, s.col) for s in points_in_refused] == [(2, 0, 0), (3, 0, 0)]
    # a huge sparse tile: one pixel stands for all its points, whatever they span
    huge = index([{"id": "h", "day": 1, "bands": {"B1": ("h.tif", 0, struct(
        width=60000, height=60000, tile=60000, counts=[0]))}}])
    (selection,) = select(huge, points_at((1.5, 1.5), (50000.5, 59000.5)), ["B1"],
                          geometry_crs=32633, align=False)
    plan = plan_points(selection)
    ((group, work),) = plan.chunks
    assert work.shape == (1, 1) and work.error is None and group == 0
    assert [(s.row, s.col) for s in plan.samples] == [(0, 0), (0, 0)]
