"""Overview tile tables through enrichment over HTTP: request counts, levels decoded with the
full-resolution decode path against rasterio's overview reads, and old indexes still read."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.decode import DecodeSpec, decode_tile
from rasteret_dask.io import ByteRange, RangeReader
from rasteret_dask.testing.cogs import write_cog
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.tiff.cog_metadata import CogMetadata

FILES = {
    "deflate.tif": dict(width=1300, height=1000, predictor=2, nodata=0),
    "planar.tif": dict(width=900, height=700, interleave="band", count=2, predictor=2),
    "jpeg.tif": dict(width=1000, height=800, compress="jpeg", dtype="uint8"),
    "tables.tif": dict(width=2000, height=1500, blocksize=16, dtype="uint8"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("ovr")
    for name, options in FILES.items():
        write_cog(root / name, **{"blocksize": 256, "seed": len(name), **options})
    with RangeServer(root, latency=0.0) as server:
        yield root, server


def _table(hrefs: list[str], band_index: int = 0) -> pa.Table:
    n = len(hrefs)
    asset = pa.StructArray.from_arrays([pa.array(hrefs), pa.array([band_index] * n, pa.int32())],
                                       fields=list(S.ASSET_TYPE))
    return pa.table({
        "id": [f"r{i}" for i in range(n)],
        "datetime": pa.array([dt.datetime(2024, 1, 1 + i, tzinfo=dt.UTC) for i in range(n)],
                             S.DATETIME_TYPE),
        "geometry": pa.nulls(n, pa.binary()),
        "assets": pa.StructArray.from_arrays([asset], names=["B04"]),
    })


def _enrich(server, name: str, band_index: int = 0) -> CogMetadata:
    server.reset()
    table = rd.enrich_table_with_cog_metadata(_table([server.href(name)], band_index))
    return CogMetadata.from_struct(table["B04_metadata"][0], context=f"{name}, B04")


def test_a_gdal_cog_with_overviews_costs_one_get(served):
    _, server = served
    md = _enrich(server, "deflate.tif")
    assert server.count(method=None) == 1 and server.count("GET") == 1
    assert len(md.overviews) == 3 and md.has_overview_tiles


def test_tables_beyond_the_prefix_cost_one_more_get(served):
    _, server = served
    md = _enrich(server, "tables.tif")
    assert server.count(method=None) == 2  # the prefix, then every IFD's tables in one range
    assert len(md.tile_offsets) == 125 * 94 and len(md.overviews) == 7
    assert md.has_overview_tiles


def _decode_level(md: CogMetadata, href: str, band_index: int) -> np.ndarray:
    """Level ``md``'s whole image decoded tile by tile, as read/chunks.py decodes a tile."""
    spec = DecodeSpec.from_metadata(md)
    ranges = [ByteRange(href, *md.tile_range(i)) for i in range(len(md.tile_offsets))]
    payloads = RangeReader().fetch(ranges)
    canvas = np.empty((md.tiles_down * md.tile_height, md.tiles_across * md.tile_width),
                      md.native_dtype)
    for index, payload in enumerate(payloads):
        row, col = divmod(index, md.tiles_across)
        tile = decode_tile(payload, spec)
        canvas[row * md.tile_height:(row + 1) * md.tile_height,
               col * md.tile_width:(col + 1) * md.tile_width] = tile[:, :, md.sample_plane(band_index)]
    return canvas[:md.image_height, :md.image_width]


@pytest.mark.parametrize(("name", "band_index", "tolerance"), [
    ("deflate.tif", 0, 0), ("planar.tif", 1, 0), ("jpeg.tif", 0, 1)])
def test_levels_decode_like_rasterios_overview_reads(served, name, band_index, tolerance):
    root, server = served
    md = _enrich(server, name, band_index)
    assert md.level(0) is md
    for k in range(1, len(md.overviews) + 1):
        level = md.level(k)
        got = _decode_level(level, server.href(name), band_index)
        with rasterio.open(root / name, overview_level=k - 1) as src:
            want = src.read(band_index + 1)
            assert level.transform.almost_equals(src.transform, precision=1e-9)
        assert got.shape == want.shape
        difference = np.abs(got.astype(np.int32) - want.astype(np.int32)).max()
        assert difference <= tolerance, (name, k, difference)
        if tolerance == 0:
            np.testing.assert_array_equal(got, want)


def test_an_index_enriched_before_overview_tables_still_reads(served, tmp_path):
    root, server = served
    enriched = rd.enrich_table_with_cog_metadata(_table([server.href("deflate.tif")]))
    old_overview = pa.struct(list(S.OVERVIEW_TYPE)[:4])
    old_type = pa.struct([pa.field("overviews", pa.list_(old_overview)) if f.name == "overviews"
                          else f for f in S.METADATA_TYPE])
    column = enriched["B04_metadata"].cast(old_type)
    old = enriched.set_column(enriched.schema.get_field_index("B04_metadata"), "B04_metadata",
                              column)
    pq.write_table(old, tmp_path / "old.parquet")
    collection = rd.load(tmp_path / "old.parquet")
    stored = collection.to_table()["B04_metadata"]
    assert stored.type == old_type
    (md,) = CogMetadata.from_arrow(stored)
    assert len(md.overviews) == 3 and not md.has_overview_tiles and md.choose_level(40.0) == 0
    with rasterio.open(root / "deflate.tif") as src:
        left, top = src.xy(100, 200, offset="ul")
        right, bottom = src.xy(180, 330, offset="ul")
        want = src.read(1, window=((100, 180), (200, 330)))
    box = shapely.box(left, bottom, right, top)
    ds = collection.get_xarray(box, ["B04"], geometry_crs=32633).compute()
    np.testing.assert_array_equal(ds["B04"].values[0], want)


def test_enriching_more_records_of_an_old_layout_index(served, tmp_path, monkeypatch):
    """A data file written before the overview tables gets a record enriched with them: its
    other rows keep the old layout on disk until then, and the rewrite holds both."""
    from rasteret_dask.enrich.partitions import enrich_collection

    root, server = served
    old_overview = pa.struct(list(S.OVERVIEW_TYPE)[:4])
    old_type = pa.struct([pa.field("overviews", pa.list_(old_overview)) if f.name == "overviews"
                          else f for f in S.METADATA_TYPE])
    table = _table([server.href("deflate.tif"), server.href("late.tif")])
    with monkeypatch.context() as patched:
        patched.setattr(S, "METADATA_TYPE", old_type)
        built = rd.build_from_table(table, name="old", workspace_dir=tmp_path, enrich_cog=False)
        report = built.enrich(progress=False)
    assert report.enriched == 1 and report.failed == 1
    stored = rd.load(tmp_path / "old")
    assert stored.to_table()["B04_metadata"].type == old_type
    (root / "late.tif").write_bytes((root / "jpeg.tif").read_bytes())
    try:
        report = enrich_collection(stored, chunk_rows=1)
    finally:
        (root / "late.tif").unlink()
    assert report.enriched == 1 and report.failed == 0
    rows = report.collection.to_table().sort_by("id")["B04_metadata"]
    assert rows.type == S.METADATA_TYPE
    first, second = CogMetadata.from_arrow(rows)
    assert not first.has_overview_tiles and second.has_overview_tiles


def test_an_ingest_append_keeps_overview_tables_beside_old_layout_files(tmp_path):
    """A partition whose files hold both metadata layouts (one rewritten by a newer
    enrichment, one not): appending new items keeps the newer file's tables."""
    from rasteret_dask.index.datafiles import file_table, read_data_file, write_data_file
    from rasteret_dask.index.geoparquet import CollectionInfo
    from rasteret_dask.index.normalize import normalize_table
    from rasteret_dask.index.objectstore import open_store
    from rasteret_dask.ingest.stac_build import _append
    from rasteret_dask.testing.tables import synthetic_table

    old_type = pa.struct([pa.field("overviews", pa.list_(pa.struct(list(S.OVERVIEW_TYPE)[:4])))
                          if f.name == "overviews" else f for f in S.METADATA_TYPE])
    base = normalize_table(synthetic_table(3, months=1, bands=("B04",)))
    (year,), (month,) = set(base["year"].to_pylist()), set(base["month"].to_pylist())
    partition = (("year", year), ("month", month))
    md = {name: None for name in S.METADATA_FIELDS}
    md.update(image_width=512, image_height=512, tile_width=256, tile_height=256,
              dtype="uint16", transform=[10.0, 0, 500000.0, 0, -10.0, 5000000.0],
              tile_offsets=[1, 2, 3, 4], tile_byte_counts=[1, 1, 1, 1],
              overviews=[{"width": 256, "height": 256, "tile_width": 256, "tile_height": 256,
                          "tile_offsets": [9], "tile_byte_counts": [7]}])
    store = open_store(tmp_path / "idx")
    info = CollectionInfo(name="mixed", bands=("B04",))
    files = []
    for row, type_ in ((0, S.METADATA_TYPE), (1, old_type)):
        rows = base.slice(row, 1)
        rows = rows.append_column("B04_metadata", pa.array([md], type_))
        files.append(write_data_file(store, partition, file_table(rows, ("year", "month"), info)))
    new = base.slice(2, 1)
    schema = new.drop_columns(["year", "month"]).schema
    outcome = _append(store, partition, tuple(files), [new], schema, info, None)
    merged = read_data_file(store, outcome.written.path).sort_by("id")
    assert merged.num_rows == 3 and merged["B04_metadata"].type == S.METADATA_TYPE
    overviews = [None if m is None else m["overviews"][0]["tile_offsets"]
                 for m in merged["B04_metadata"].to_pylist()]
    ids = merged["id"].to_pylist()
    assert overviews[ids.index(base["id"][0].as_py())] == [9]
    assert overviews[ids.index(base["id"][1].as_py())] is None
