"""The versioned index on local disk: manifests, commits, ownership, legacy indexes, vacuum."""

from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.build import validate_name
from rasteret_dask.enrich import EnrichTaskError
from rasteret_dask.index import storage
from rasteret_dask.index.datafiles import is_owned_data_file, parse_partition
from rasteret_dask.index.geoparquet import CollectionInfo
from rasteret_dask.index.objectstore import open_store, put_if_absent
from rasteret_dask.index.storage import (
    ConcurrentWriteError,
    PartitionChange,
    PartitionConflict,
    commit_changes,
    prepare_export,
    write_partitioned,
)
from rasteret_dask.index.versions import (
    FileEntry,
    Manifest,
    VersionConflict,
    commit_manifest,
    latest_manifest,
    list_versions,
    partition_dir,
)
from rasteret_dask.testing.tables import synthetic_table

from .index_helpers import cog_table, data_files, tree

MARCH = (("year", 2024), ("month", 3))
APRIL = (("year", 2024), ("month", 4))


def _schema() -> pa.Schema:
    info = CollectionInfo(name="t", bands=("B04",))
    return pa.schema([("id", pa.string()), ("x", pa.int32())],
                     metadata={b"rasteret_dask": info.to_json(), b"geo": b"{}"})


def _manifest(version: int, files: tuple[FileEntry, ...]) -> Manifest:
    return Manifest(version=version, files=files, schema=_schema(),
                    partition_by=("year", "month"), operation="test", txn="t1")


# --- pure logic -------------------------------------------------------------------------


def test_manifest_json_round_trip_keeps_schema_metadata_and_files():
    entries = (FileEntry("year=2024/month=3/part-" + "a" * 32 + ".parquet", MARCH, 10, 999),
               FileEntry("year=2024/month=4/part-" + "b" * 32 + ".parquet", APRIL, 5, 512))
    manifest = _manifest(7, entries)
    back = Manifest.from_json(manifest.to_json())
    assert back == manifest and back.schema.metadata == manifest.schema.metadata
    assert back.info.name == "t" and back.rows == 15
    assert back.dataset_schema().names == ["id", "x", "year", "month"]
    assert back.partitions() == {MARCH: (entries[0],), APRIL: (entries[1],)}
    document = json.loads(manifest.to_json())
    assert document["version"] == 7 and document["files"][0]["partition"] == {"year": 2024,
                                                                             "month": 3}
    with pytest.raises(ValueError, match="not a valid version manifest"):
        Manifest.from_json(b'{"version": 1}', where="x.json")
    newer = dict(document, log_format=99)
    with pytest.raises(ValueError, match="newer rasteret-dask"):
        Manifest.from_json(json.dumps(newer).encode())


def test_partition_paths_and_owned_file_names():
    assert partition_dir(MARCH) == "year=2024/month=3"
    assert parse_partition("year=2024/month=3/part-0.parquet") == MARCH
    assert parse_partition("notes/part-0.parquet") is None
    hexname = "year=2024/month=3/part-" + "0123456789abcdef" * 2 + ".parquet"
    assert is_owned_data_file(hexname, ("year", "month"))
    assert not is_owned_data_file("year=2024/month=3/part-0.parquet", ("year", "month"))
    assert not is_owned_data_file("year=2024/month=3/mine.parquet", ("year", "month"))
    assert not is_owned_data_file("extra/part-" + "a" * 32 + ".parquet", ("year", "month"))
    assert not is_owned_data_file("month=3/part-" + "a" * 32 + ".parquet", ("year", "month"))


@pytest.mark.parametrize("name", ["", "../x", "/abs", "a/b", "a\\b", ".", "..", " s2", "C:x"])
def test_invalid_index_names(name):
    with pytest.raises(ValueError, match="invalid index name"):
        validate_name(name)


def test_valid_index_names():
    assert validate_name("s2-bangalore_2024.v1") == "s2-bangalore_2024.v1"


def test_merging_a_change_keeps_the_other_writers_partitions_and_fields():
    latest = _manifest(3, (FileEntry("year=2024/month=3/a.parquet", MARCH, 1, 1),
                           FileEntry("year=2024/month=4/b.parquet", APRIL, 2, 2)))
    mine = pa.schema([("x", pa.int64()), ("B04_metadata", pa.int8())])
    change = PartitionChange(APRIL, (FileEntry("year=2024/month=4/c.parquet", APRIL, 2, 3),),
                             latest.files_of(APRIL))
    info = CollectionInfo(name="merged")
    merged = storage._apply(latest, [change], mine, info, "enrich", ("year", "month"))
    assert merged.version == 4
    assert merged.paths() == {"year=2024/month=3/a.parquet", "year=2024/month=4/c.parquet"}
    assert merged.schema.names == ["id", "x", "B04_metadata"]
    assert merged.schema.field("x").type == pa.int64() and merged.info.name == "merged"
    assert merged.schema.metadata[b"geo"] == b"{}"


# --- local disk -------------------------------------------------------------------------


def test_put_if_absent_and_commit_are_exclusive(tmp_path):
    store = open_store(tmp_path / "idx")
    put_if_absent(store, "a/b.json", b"1")
    with pytest.raises(FileExistsError):
        put_if_absent(store, "a/b.json", b"2")
    assert (tmp_path / "idx/a/b.json").read_bytes() == b"1"
    assert not [p for p in (tmp_path / "idx/a").iterdir() if p.name != "b.json"]
    commit_manifest(store, _manifest(1, ()))
    with pytest.raises(VersionConflict):
        commit_manifest(store, _manifest(1, ()))
    assert list_versions(store) == [1]


def test_build_from_table_rejects_bad_names_before_writing(tmp_path):
    table = synthetic_table(20, months=2)
    workspace = tmp_path / "ws"
    (workspace / "other").mkdir(parents=True)
    rd.build_collection_from_table(table, name="o").export(workspace / "other")
    (workspace / "mine.parquet").write_bytes(b"PAR1 user data")
    before = tree(tmp_path)
    for name in ["", "../x", str(tmp_path / "abs"), "a/b"]:
        with pytest.raises(ValueError, match="invalid index name"):
            rd.build_from_table(table, name=name, workspace_dir=workspace, enrich_cog=False)
        with pytest.raises(ValueError, match="invalid index name"):
            rd.build_from_stac(name=name, stac_api="http://127.0.0.1:9/", collection="c",
                               date_range=("2024-01-01", "2024-01-31"), workspace_dir=workspace)
    assert tree(tmp_path) == before
    assert rd.load(workspace / "other").to_table().num_rows == 20


def test_export_refuses_a_folder_that_is_not_an_index(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    pq.write_table(pa.table({"a": [1, 2]}), target / "user.parquet")
    collection = rd.build_collection_from_table(synthetic_table(30, months=2), name="c")
    with pytest.raises(rd.NotAnIndexError, match="not a rasteret-dask index.*user.parquet"):
        collection.export(target)
    with pytest.raises(rd.NotAnIndexError):
        collection.export(target, overwrite=True)
    assert sorted(os.listdir(target)) == ["user.parquet"]
    assert pq.read_table(target / "user.parquet")["a"].to_pylist() == [1, 2]
    with pytest.raises(rd.NotAnIndexError, match="is a file"):
        collection.export(target / "user.parquet", overwrite=True)


def test_reexport_needs_overwrite_and_removes_only_its_own_files(tmp_path):
    root = tmp_path / "idx"
    first = rd.build_collection_from_table(synthetic_table(300, months=6, seed=1), name="a")
    first.export(root)
    (root / "notes").mkdir()
    pq.write_table(pa.table({"a": [1]}), root / "notes" / "user.parquet")
    (root / "year=2024" / "month=1" / "README.txt").write_text("mine")
    before = tree(root)
    second = rd.build_collection_from_table(synthetic_table(50, months=2, seed=2), name="b")
    with pytest.raises(rd.IndexExistsError, match="overwrite=True"):
        second.export(root)
    assert tree(root) == before
    loaded = second.export(root, overwrite=True)
    assert loaded.name == "b" and len(loaded) == 50 and loaded.version == 2
    assert (root / "notes" / "user.parquet").exists()
    assert (root / "year=2024" / "month=1" / "README.txt").read_text() == "mine"
    listed = {e.path for e in latest_manifest(open_store(root)).files}
    assert set(data_files(root)) == listed | {"notes/user.parquet"}


def test_stale_export_base_fails_and_changes_nothing(tmp_path):
    root = tmp_path / "idx"
    rd.build_collection_from_table(synthetic_table(100, months=3), name="a").export(root)
    store = open_store(root)
    base = prepare_export(store, overwrite=True)
    rd.build_collection_from_table(synthetic_table(80, months=3), name="b").export(
        root, overwrite=True)
    before = tree(root)
    table = rd.build_collection_from_table(synthetic_table(60, months=3), name="c").to_table()
    with pytest.raises(ConcurrentWriteError, match=r"changed \(version 1 -> 2\).*nothing was"):
        write_partitioned(table, store, CollectionInfo(name="c"), base=base)
    assert tree(root) == before
    assert rd.load(root).name == "b" and len(rd.load(root)) == 80


def test_collection_of_an_old_version_says_the_index_changed(tmp_path):
    root = tmp_path / "idx"
    old = rd.build_collection_from_table(synthetic_table(100, months=3), name="a").export(root)
    rd.build_collection_from_table(synthetic_table(80, months=3, seed=4), name="b").export(
        root, overwrite=True)
    with pytest.raises(rd.IndexChangedError, match="changed since this collection was loaded"):
        old.to_table()
    with pytest.raises(ConcurrentWriteError, match=r"version 1 -> 2"):
        old.subset(month=2).export(root, overwrite=True)
    assert len(rd.load(root)) == 80


def test_commits_on_different_partitions_merge_and_on_the_same_one_conflict(tmp_path):
    root = tmp_path / "idx"
    rd.build_collection_from_table(synthetic_table(90, months=3, seed=3), name="a").export(root)
    store = open_store(root)
    base = latest_manifest(store)
    jan, feb = sorted(base.partitions())[:2]
    tables = {p: pq.read_table(root / base.files_of(p)[0].path) for p in (jan, feb)}
    from rasteret_dask.index.datafiles import write_data_file

    def change(partition):
        entry = write_data_file(store, partition, tables[partition])
        return PartitionChange(partition, (entry,), base.files_of(partition))

    def keep(info):
        return info

    first = commit_changes(store, [change(jan)], schema=base.schema, update_info=keep,
                           operation="a")
    second = commit_changes(store, [change(feb)], schema=base.schema, update_info=keep,
                            operation="b")  # computed from version 1: merges on top of 2
    assert (first.version, second.version) == (2, 3)
    assert second.files_of(jan) == first.files_of(jan)
    assert second.files_of(feb) != base.files_of(feb)
    loser = change(jan)
    with pytest.raises(PartitionConflict) as info:
        commit_changes(store, [loser], schema=base.schema, update_info=keep, operation="c")
    assert info.value.partitions == (jan,) and info.value.latest.version == 3
    assert len(rd.load(root)) == 90 and list_versions(store) == [1, 2, 3]
    assert not (root / base.files_of(jan)[0].path).exists()  # replaced, so removed


def _legacy_index(root, table) -> None:
    """An index as the previous format left it: part-0.parquet files, no version log."""
    rd.build_collection_from_table(table, name="legacy").export(root)
    for entry in latest_manifest(open_store(root)).files:
        (root / entry.path).rename(root / entry.path.rsplit("/", 1)[0] / "part-0.parquet")
    for path in sorted((root / "_rasteret").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "_rasteret").rmdir()


def test_a_previous_format_index_loads_without_writes_and_migrates_on_write(tmp_path, cog_dir):
    root = tmp_path / "legacy"
    table = cog_table(f"{cog_dir}/", n=24, months=3)
    _legacy_index(root, table)
    # a commit the previous format left half applied: month 1 renamed, month 2 not yet
    month2 = root / "year=2024" / "month=2"
    changed = pq.read_table(month2 / "part-0.parquet")
    changed = changed.set_column(changed.schema.get_field_index("platform"), "platform",
                                 pa.array(["rolled-forward"] * changed.num_rows))
    pq.write_table(changed, month2 / ".part-0.parquet.txn1.tmp")
    (root / "_rasteret_txn.json").write_text(json.dumps({
        "txn": "txn1", "renames": [["year=2024/month=2/.part-0.parquet.txn1.tmp",
                                    "year=2024/month=2/part-0.parquet"]], "deletes": []}))
    before = tree(root)
    loaded = rd.load(root)
    assert loaded.version == 0 and loaded.name == "legacy" and len(loaded) == 24
    platforms = set(loaded.subset(month=2).to_table()["platform"].to_pylist())
    assert platforms == {"rolled-forward"}
    assert tree(root) == before  # load wrote nothing, rolled nothing forward
    report = loaded.enrich(["B04"], progress=False)
    assert report.enriched == 24 and report.collection.version == 1
    after = rd.load(root).to_table()
    assert after.num_rows == 24 and after["B04_metadata"].null_count == 0
    assert set(after.filter(pa.compute.equal(after["month"], 2))["platform"].to_pylist()) == {
        "rolled-forward"}
    assert not (root / "_rasteret_txn.json").exists()
    assert not list(root.rglob("part-0.parquet")) and not list(root.rglob("*.tmp"))


def test_load_never_writes(tmp_path):
    root = tmp_path / "idx"
    rd.build_collection_from_table(synthetic_table(100, months=3), name="a").export(root)
    orphan = root / "year=2024" / "month=1" / ("part-" + "f" * 32 + ".parquet")
    orphan.write_bytes(b"half a file")
    (root / "year=2024" / "month=1" / ".part-x.parquet.y.tmp").write_bytes(b"tmp")
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    before = tree(root)
    for _ in range(3):
        collection = rd.load(root)
        collection.to_table()
        collection.describe()
    assert tree(root) == before


def test_writers_remove_only_old_orphans_and_vacuum_on_demand(tmp_path):
    root = tmp_path / "idx"
    rd.build_collection_from_table(synthetic_table(100, months=3), name="a").export(root)
    folder = root / "year=2024" / "month=1"
    old_orphan, young_orphan = folder / ("part-" + "a" * 32 + ".parquet"), folder / (
        "part-" + "b" * 32 + ".parquet")
    user_file = folder / "user.parquet"
    for path in (old_orphan, young_orphan, user_file):
        path.write_bytes(b"x")
    old = time.time() - 2 * storage.ORPHAN_AGE
    os.utime(old_orphan, (old, old))
    os.utime(user_file, (old, old))
    rd.load(root).export(root, overwrite=True)
    assert not old_orphan.exists() and young_orphan.exists() and user_file.exists()
    assert rd.vacuum(root, older_than=3600) == []
    removed = rd.vacuum(root, older_than=0)
    assert removed == [str(young_orphan.relative_to(root))]
    assert user_file.exists() and len(rd.load(root)) == 100


def test_the_log_keeps_the_last_20_versions(tmp_path):
    root = tmp_path / "idx"
    collection = rd.build_collection_from_table(synthetic_table(40, months=2), name="a")
    for _ in range(23):
        collection.export(root, overwrite=True)
    versions = list_versions(open_store(root))
    assert versions == list(range(4, 24))
    assert len(rd.load(root)) == 40 and len(data_files(root)) == 2


def test_plain_readers_after_export_and_enrichment(tmp_path, cog_dir):
    import duckdb
    import geopandas

    root = tmp_path / "idx"
    table = cog_table(f"{cog_dir}/", n=40, months=4)
    rd.build_collection_from_table(table, name="plain").export(root)
    for stage in ("exported", "enriched"):
        frame = geopandas.read_parquet(root)
        assert len(frame) == 40 and frame.crs.to_string() == "OGC:CRS84"
        rows = duckdb.connect().sql(
            f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{root}/**/*.parquet', "
            "hive_partitioning=true)").fetchall()
        assert rows == [(40, 40)], stage
        whole = pq.read_table(root)
        assert whole.num_rows == 40
        if stage == "enriched":
            assert whole["B04_metadata"].null_count == 0
            enriched = duckdb.connect().sql(
                f"SELECT count(B04_metadata) FROM read_parquet('{root}/**/*.parquet', "
                "hive_partitioning=true, union_by_name=true)").fetchall()
            assert enriched == [(40,)]
        else:
            report = rd.load(root).enrich(["B04"], progress=False)
            assert report.enriched == 40 and report.partitions_rewritten == 4
    schema = pq.read_schema(root / "_common_metadata")
    assert S.metadata_column("B04") in schema.names and b"rasteret_dask" in schema.metadata


def test_failed_tasks_commit_the_other_partitions_then_raise(tmp_path, cog_dir):
    root = tmp_path / "idx"
    rd.build_collection_from_table(cog_table(f"{cog_dir}/", n=40, months=4), name="f").export(
        root)
    broken = latest_manifest(open_store(root)).files[1]
    (root / broken.path).write_bytes(b"not parquet at all")
    with pytest.raises(EnrichTaskError, match=(
            r"1 partition\(s\) \(the others were committed\).*year=2024/month=2.*"
            + broken.path.rsplit("/", 1)[-1])):
        rd.load(root).enrich(["B04"], progress=False)
    manifest = latest_manifest(open_store(root))
    assert manifest.version == 2 and broken in manifest.files
    enriched = [e for e in manifest.files if e != broken]
    for entry in enriched:
        assert pq.read_table(root / entry.path)["B04_metadata"].null_count == 0


def test_an_enrichment_racing_another_one_redoes_only_the_partitions_both_touched(
        tmp_path, cog_dir, monkeypatch):
    from rasteret_dask.enrich import partitions

    root = tmp_path / "idx"
    rd.build_collection_from_table(cog_table(f"{cog_dir}/", n=40, months=4), name="r").export(
        root)
    real, rivals = partitions.commit_changes, []

    def racing(store, changes, **kwargs):
        if not rivals:  # another writer commits first: B08 of January only
            rivals.append("running")
            rivals[0] = rd.load(root).subset(month=1).enrich(["B08"], progress=False)
        return real(store, changes, **kwargs)

    monkeypatch.setattr(partitions, "commit_changes", racing)
    report = rd.load(root).enrich(["B04"], progress=False)
    assert rivals[0].partitions_rewritten == 1
    assert report.enriched == 40 and report.partitions_rewritten == 4
    table = rd.load(root).to_table()
    assert table["B04_metadata"].null_count == 0
    january = table.filter(pa.compute.equal(table["month"], 1))
    assert january["B08_metadata"].null_count == 0
    assert table["B08_metadata"].null_count == 40 - january.num_rows
    assert list_versions(open_store(root)) == [1, 2, 3]
    listed = {e.path for e in latest_manifest(open_store(root)).files}
    assert set(data_files(root)) == listed  # the lost round's files are gone


def test_cli_build_table_overwrites_only_when_asked(tmp_path, capsys):
    from rasteret_dask.cli import main

    source = tmp_path / "items.parquet"
    pq.write_table(synthetic_table(30, months=2), source)
    argv = ["build-table", str(source), "--name", "t", "--workspace", str(tmp_path / "ws"),
            "--no-enrich", "--quiet"]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "pass overwrite=True" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert rd.load(tmp_path / "ws" / "t").version == 2
    assert main([*argv[:3], "../t", *argv[4:]]) == 2
    assert "invalid index name" in capsys.readouterr().err


def test_a_long_run_whose_files_were_taken_for_orphans_redoes_them(tmp_path):
    root = tmp_path / "idx"
    rd.build_collection_from_table(synthetic_table(60, months=2), name="a").export(root)
    store = open_store(root)
    base = latest_manifest(store)
    from rasteret_dask.index.datafiles import write_data_file

    partition = sorted(base.partitions())[0]
    entry = write_data_file(store, partition, pq.read_table(root / base.files_of(partition)[0].path))
    (root / entry.path).unlink()  # what another writer's orphan cleanup does after an hour
    change = PartitionChange(partition, (entry,), base.files_of(partition))
    with pytest.raises(PartitionConflict) as info:
        commit_changes(store, [change], schema=base.schema, update_info=lambda i: i,
                       operation="late", written_since=time.time() - storage.ORPHAN_AGE)
    assert info.value.partitions == (partition,)
    assert list_versions(store) == [1] and len(rd.load(root)) == 60


def test_stac_ingest_refuses_a_folder_that_is_not_an_index(tmp_path):
    folder = tmp_path / "ws" / "s2"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(rd.NotAnIndexError, match="notes.txt"):
        rd.build_from_stac(name="s2", stac_api="http://127.0.0.1:9/", collection="c",
                           date_range=("2024-01-01", "2024-01-31"), workspace_dir=tmp_path / "ws")
    assert os.listdir(folder) == ["notes.txt"]
