"""The index layer: contract validation, partitioned GeoParquet round trips, pruning, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.testing.tables import synthetic_table


@pytest.fixture(scope="module")
def table_10k() -> pa.Table:
    return synthetic_table(10_000, months=24, seed=1)


@pytest.fixture(scope="module")
def exported(table_10k, tmp_path_factory):
    root = tmp_path_factory.mktemp("idx") / "index"
    collection = rd.build_collection_from_table(table_10k, name="s2", data_source="earth-search")
    return collection, collection.export(root), root


def test_round_trip_is_identical(exported):
    collection, loaded, root = exported
    original = collection.to_table()
    back = loaded.to_table().sort_by("id")
    assert back.schema == original.schema
    assert back.equals(original)
    folders = sorted(p.relative_to(root).as_posix() for p in root.glob("year=*/month=*"))
    assert len(folders) == 24 and folders[0].startswith("year=2024/month=")
    assert all(len(list((root / f).glob("part-*.parquet"))) == 1 for f in folders)
    assert loaded.name == "s2" and loaded.data_source == "earth-search"
    assert loaded.info.date_range is not None and loaded.info.format_version == S.FORMAT_VERSION


def test_files_carry_geoparquet_and_collection_metadata(exported):
    _, _, root = exported
    file = next(root.glob("year=*/month=*/part-*.parquet"))
    metadata = pq.read_schema(file).metadata
    geo = json.loads(metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert len(column["bbox"]) == 4
    info = json.loads(metadata[b"rasteret_dask"])
    assert info["name"] == "s2" and info["format_version"] == S.FORMAT_VERSION
    assert pq.ParquetFile(file).metadata.row_group(0).column(0).compression == "ZSTD"


def test_other_readers_recognise_the_geometry(exported):
    import dask_geopandas
    import duckdb
    import geopandas

    _, _, root = exported
    frame = geopandas.read_parquet(root)
    assert len(frame) == 10_000 and frame.crs.to_string() == "OGC:CRS84"
    assert frame.geometry.iloc[0].geom_type == "Polygon"
    dframe = dask_geopandas.read_parquet(root)
    assert dframe.crs.to_string() == "OGC:CRS84" and len(dframe.compute()) == 10_000
    con = duckdb.connect()
    kinds = con.sql(
        f"SELECT DISTINCT typeof(geometry) FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert kinds == [("GEOMETRY('OGC:CRS84')",)]


def test_one_month_subset_touches_one_fragment(exported):
    collection, loaded, _ = exported
    march = loaded.subset(date_range=("2024-03-01", "2024-03-31"))
    files = [f.path for f in march.fragments()]
    assert len(files) == 1 and "year=2024/month=3/" in files[0]
    table = collection.to_table()
    stamps = table["datetime"].to_numpy()
    expected = int(((stamps >= np.datetime64("2024-03-01")) & (stamps < np.datetime64("2024-04-01"))).sum())
    assert len(march) == expected > 0
    small = march.subset(bbox=(6, 46, 8, 48), cloud_cover_lt=50)
    assert len(small.fragments()) == 1
    rows = small.to_table()
    assert all(r < 50 for r in rows["eo:cloud_cover"].to_pylist())
    assert pc.all(pc.greater_equal(rows["bbox_maxx"], 6)).as_py()


def test_subset_by_equals_split_and_geometry(exported):
    _, loaded, _ = exported
    s2a = loaded.subset(platform="sentinel-2a")
    assert set(s2a.to_table()["platform"].to_pylist()) == {"sentinel-2a"}
    aoi = shapely.Point(10, 50).buffer(0.2)
    hits = loaded.subset(geometries=aoi).to_table()
    footprints = shapely.from_wkb(hits["geometry"].to_numpy(zero_copy_only=False))
    assert len(hits) > 0 and shapely.intersects(footprints, aoi).all()
    everything = loaded.to_table()
    all_fp = shapely.from_wkb(everything["geometry"].to_numpy(zero_copy_only=False))
    assert int(shapely.intersects(all_fp, aoi).sum()) == len(hits)
    with pytest.raises(ValueError, match="unknown column"):
        loaded.subset(split="train")
    with pytest.raises(ValueError, match="before start"):
        loaded.subset(date_range=("2024-05-01", "2024-04-01"))


def test_where_and_summary(exported):
    _, loaded, _ = exported
    cloudy = loaded.where(pc.field("eo:cloud_cover") > 90)
    assert 0 < len(cloudy) < len(loaded)
    summary = loaded.describe()
    assert summary["records"] == 10_000 and summary["partitions"] == 24
    assert summary["bands"] == ["B04", "B08"] and summary["epsg"] == [32633]
    assert loaded.head(3).num_rows == 3
    assert len(loaded.to_dask_geopandas().compute()) == 10_000
    assert loaded.to_dask_geopandas().npartitions == 24


def _walkthrough(collection: rd.Collection, tmp_path):
    """The seed's enriched-Parquet walkthrough, with rasteret replaced by rasteret_dask."""
    import duckdb
    import geopandas as gpd
    from shapely.geometry import Polygon, box

    enriched = collection.dataset.to_table()
    n = enriched.num_rows
    aoi = Polygon([(77.55, 13.01), (77.58, 13.01), (77.58, 13.08), (77.55, 13.08), (77.55, 13.01)])
    enriched = enriched.append_column("aoi", pa.array([shapely.to_wkb(aoi)] * n, type=pa.binary()))
    rng = np.random.default_rng(42)
    splits = rng.choice(["train", "val", "test"], size=n, p=[0.7, 0.15, 0.15])
    enriched = enriched.append_column("split", pa.array(splits))
    labels = rng.integers(0, 5, size=n)
    enriched = enriched.append_column("label", pa.array(labels, type=pa.int32()))
    path = tmp_path / "experiment_v1.parquet"
    pq.write_table(enriched, path)

    collection = rd.load(path)
    enriched = collection.dataset.to_table()
    con = duckdb.connect()
    result = con.sql(
        """SELECT DISTINCT aoi FROM enriched WHERE split = 'train' AND "eo:cloud_cover" < 15"""
    ).fetch_arrow_table()
    assert result.num_rows == 1 and result.column("aoi")[0].as_py() == shapely.to_wkb(aoi)
    mask = pc.and_(pc.equal(enriched.column("split"), "train"),
                   pc.less(enriched.column("eo:cloud_cover"), 15.0))
    filtered = enriched.filter(mask)
    assert len(filtered.column("aoi").unique()) == 1
    train = collection.subset(split="train", cloud_cover_lt=15)
    assert len(train) == filtered.num_rows > 0
    assert train.to_table()["label"].type == pa.int32()
    gdf = gpd.GeoDataFrame(enriched.to_pandas(),
                           geometry=gpd.GeoSeries.from_wkb(enriched.column("aoi").to_pandas()))
    hits = gdf[gdf.intersects(box(77.55, 13.01, 77.60, 13.05))]
    assert len(hits) == n
    monthly = con.sql(
        """SELECT split, month, count(*) AS scenes, round(avg("eo:cloud_cover"), 1) AS avg_cloud
           FROM enriched GROUP BY split, month ORDER BY split, month"""
    ).fetchall()
    assert sum(r[2] for r in monthly) == n
    # the same enriched table, exported partitioned, keeps the user columns and their types
    partitioned = rd.build_collection_from_table(enriched, name="exp").export(tmp_path / "exp")
    again = partitioned.subset(split="train", cloud_cover_lt=15)
    assert len(again) == filtered.num_rows
    table = partitioned.to_table()
    assert table["label"].type == pa.int32() and table["aoi"].type == pa.binary()


def test_seed_walkthrough_single_file_and_partitioned(tmp_path):
    table = synthetic_table(400, months=6, bbox=(77.4, 12.8, 77.8, 13.2), footprint_deg=0.3, seed=3)
    _walkthrough(rd.build_collection_from_table(table, name="bangalore"), tmp_path)
    exported = rd.build_collection_from_table(table, name="bangalore").export(tmp_path / "part")
    (tmp_path / "second").mkdir()
    _walkthrough(exported, tmp_path / "second")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.drop_columns(["assets"]), "missing required column 'assets'"),
        (lambda t: t.drop_columns(["geometry", "id"]), "missing required column 'id'"),
        (lambda t: t.set_column(0, "id", pa.array(["a", None, "c", "d"])), "null id at row 1"),
        (lambda t: t.set_column(0, "id", pa.array(["a", "b", "a", "d"])), "duplicate id 'a'"),
        (lambda t: t.set_column(2, "geometry", pa.array([b"xx", None, b"1", b"2"])), "unparsable geometry at 'S2_00000000'"),
        (lambda t: t.set_column(1, "datetime", pa.nulls(4, pa.timestamp("us"))), "no usable timestamp"),
        (lambda t: t.set_column(1, "datetime", pa.array([1.0] * 4)), "'datetime' must be a timestamp"),
        (lambda t: t.set_column(3, "assets", pa.array([1, 2, 3, 4])), "'assets' must be a struct"),
    ],
)
def test_malformed_tables_raise(mutate, message):
    table = synthetic_table(4, months=1)
    with pytest.raises(ValueError, match=message):
        rd.build_collection_from_table(mutate(table), name="bad")


def test_alternative_input_encodings():
    base = synthetic_table(6, months=2)
    hrefs = base["assets"].combine_chunks().field("B04").field("href").to_pylist()
    as_json = [json.dumps({"B04": {"href": h, "band_index": 1}, "B08": h}) for h in hrefs]
    table = base.set_column(3, "assets", pa.array(as_json))
    out = rd.build_collection_from_table(table, name="j").to_table()
    assert out["assets"].type == S.assets_type(["B04", "B08"])
    assert out["assets"][0].as_py()["B04"] == {"href": hrefs[0], "band_index": 1}
    as_map = pa.array([[("B04", h)] for h in hrefs], pa.map_(pa.string(), pa.string()))
    out = rd.build_collection_from_table(base.set_column(3, "assets", as_map), name="m").to_table()
    assert out["assets"][2].as_py() == {"B04": {"href": hrefs[2], "band_index": 0}}
    import geopandas as gpd

    frame = gpd.GeoDataFrame(
        base.drop_columns(["geometry", "assets"]).to_pandas().assign(assets=as_json),
        geometry=gpd.GeoSeries.from_wkb(base["geometry"].to_pylist()),
    )
    out = rd.build_collection_from_table(frame, name="g").to_table()
    assert out["geometry"].type == pa.binary() and out["eo:cloud_cover"].type == pa.float64()
    geoarrow = pa.field("geometry", pa.binary(), metadata={"ARROW:extension:name": "geoarrow.wkb"})
    table = base.set_column(2, geoarrow, base["geometry"])
    assert rd.build_collection_from_table(table, name="ga").to_table()["geometry"].type == pa.binary()
    strings = base.set_column(1, "datetime", pa.array(["2024-01-05T10:00:00Z"] * 6))
    out = rd.build_collection_from_table(strings, name="s").to_table()
    assert out["datetime"].type == S.DATETIME_TYPE and out["month"][0].as_py() == 1


def test_start_end_datetime_without_datetime():
    base = synthetic_table(3, months=1)
    table = base.drop_columns(["datetime"]).append_column("start_datetime", base["datetime"])
    table = table.append_column("end_datetime", base["datetime"])
    out = rd.build_collection_from_table(table, name="r").to_table()
    assert out["datetime"].null_count == 3 and out["year"].to_pylist() == [2024] * 3


_EXPORT_SCRIPT = textwrap.dedent(
    """
    import sys
    import rasteret_dask as rd
    from rasteret_dask.index import storage
    from rasteret_dask.testing.tables import synthetic_table
    root, phase = sys.argv[1], sys.argv[2]
    if phase == "committed":
        def dying_cleanup(store, previous, new):
            import os
            os.kill(os.getpid(), 9)
        storage.after_commit = dying_cleanup
    table = synthetic_table(60_000, months=24, seed=7)
    print("ready", flush=True)
    rd.build_collection_from_table(table, name="new").export(root, overwrite=True)
    """
)


def _kill_during_export(root, phase: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _EXPORT_SCRIPT, str(root), phase],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    if phase == "write":
        before = set(root.rglob("*.parquet"))
        deadline = time.monotonic() + 60
        while set(root.rglob("*.parquet")) == before and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_while_writing_leaves_previous_export(tmp_path):
    root = tmp_path / "index"
    before = rd.build_collection_from_table(synthetic_table(3000, months=24, seed=5), name="old")
    before.export(root)
    expected = rd.load(root).to_table().sort_by("id")
    _kill_during_export(root, "write")
    after = rd.load(root)
    assert after.name == "old" and after.version == 1
    assert after.to_table().sort_by("id").equals(expected)
    # the dead writer's files are orphans: vacuum removes them (once old enough, here now)
    removed = rd.vacuum(root, older_than=0)
    assert removed and all(r.startswith("year=") or "/." in f"/{r}" for r in removed)
    assert len(ds.dataset(root, format="parquet", partitioning="hive").files) == 24
    assert rd.load(root).to_table().sort_by("id").equals(expected)


def test_sigkill_after_commit_leaves_the_new_version(tmp_path):
    root = tmp_path / "index"
    rd.build_collection_from_table(synthetic_table(3000, months=24, seed=5), name="old").export(root)
    _kill_during_export(root, "committed")
    after = rd.load(root)
    assert after.name == "new" and len(after) == 60_000 and after.version == 2
    # the replaced files were left by the dead writer; the next write or vacuum removes them
    assert len(ds.dataset(root, format="parquet", partitioning="hive").files) == 48
    rd.vacuum(root)
    assert len(ds.dataset(root, format="parquet", partitioning="hive").files) == 24
    assert os.path.exists(root / "_common_metadata")
    assert rd.load(root).to_table().num_rows == 60_000
