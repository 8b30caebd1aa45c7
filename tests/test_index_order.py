"""Index file layout: Hilbert order of records, byte-sized row groups, pruning by bbox stats."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.index import datafiles as storage
from rasteret_dask.index import filters as F
from rasteret_dask.index.order import hilbert_index, spatial_sort
from rasteret_dask.testing.tables import synthetic_table


@pytest.mark.parametrize("order", [1, 2, 3, 6])
def test_hilbert_index_is_a_path_through_every_cell(order):
    side = 1 << order
    xs, ys = (a.ravel() for a in np.meshgrid(np.arange(side), np.arange(side)))
    d = hilbert_index(xs, ys, order=order)
    assert sorted(d.tolist()) == list(range(side * side))
    at = np.empty((side * side, 2), np.int64)
    at[d] = np.column_stack([xs, ys])
    steps = np.abs(np.diff(at, axis=0)).sum(axis=1)
    assert (steps == 1).all()  # consecutive indices are neighbouring cells
    assert hilbert_index(np.array([0]), np.array([0]), order=order)[0] == 0


def _scenes(centres: list[tuple[float, float]], visits: int) -> pa.Table:
    """``visits`` records of each footprint, interleaved in time (as a month file is)."""
    rows = []
    for v in range(visits):
        for k, (lon, lat) in enumerate(centres):
            rows.append((f"s{k}-{v:03d}", np.datetime64("2024-05-01T10:00") + np.timedelta64(
                v * len(centres) + k, "m"), shapely.box(lon - 0.5, lat - 0.5, lon + 0.5, lat + 0.5)))
    ids, when, shapes = zip(*rows, strict=True)
    table = synthetic_table(len(rows))
    table = table.set_column(table.schema.get_field_index(S.ID), S.ID, pa.array(ids))
    table = table.set_column(table.schema.get_field_index(S.DATETIME), S.DATETIME,
                             pa.array(np.array(when, "datetime64[us]")).cast(S.DATETIME_TYPE))
    return table.set_column(table.schema.get_field_index(S.GEOMETRY), S.GEOMETRY,
                            pa.array(shapely.to_wkb(np.array(shapes)), pa.binary()))


def test_spatial_sort_groups_neighbours_and_keeps_time_order_within():
    centres = [(-5.0, 40.0), (25.0, 60.0), (-4.0, 40.5), (24.0, 60.0)]
    table = rd.build_collection_from_table(_scenes(centres, 5), name="t").to_table()
    ordered = spatial_sort(table)
    site = [i.split("-")[0] for i in ordered[S.ID].to_pylist()]
    # the two Iberian footprints come together, as do the two Finnish ones
    halves = {frozenset(site[:10]), frozenset(site[10:])}
    assert halves == {frozenset({"s0", "s2"}), frozenset({"s1", "s3"})}
    for name in ("s0", "s1", "s2", "s3"):
        ids = [i for i in ordered[S.ID].to_pylist() if i.startswith(name + "-")]
        assert ids == sorted(ids)  # time order within one footprint
    assert ordered.sort_by(S.ID).equals(table.sort_by(S.ID))  # same rows
    bare = pa.table({"id": ["b", "a"]})
    assert spatial_sort(bare) is bare  # nothing to sort by


def test_written_files_prune_row_groups_by_bbox(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "ROW_GROUP_ROWS", (64, 65_536))
    monkeypatch.setattr(storage, "ROW_GROUP_BYTES", 1)  # the lower bound: 64 rows per group
    centres = [(lon, lat) for lon in (-8.0, 2.0, 12.0, 22.0) for lat in (38.0, 48.0, 58.0)]
    root = tmp_path / "index"
    rd.build_collection_from_table(_scenes(centres, 32), name="t").export(root)
    (file,) = root.rglob("*.parquet")
    meta = pq.ParquetFile(file).metadata
    assert meta.num_row_groups == 6 and meta.num_rows == 12 * 32
    collection = rd.load(root)
    dataset = collection._dataset
    expression = F.bbox_expression([1.8, 47.8, 2.2, 48.2])
    kept = [g for f in dataset.get_fragments()
            for g in f.split_by_row_group(expression, schema=dataset.schema)]
    assert len(kept) == 1  # the other five groups' bbox statistics lie elsewhere
    hits = collection.subset(bbox=[1.8, 47.8, 2.2, 48.2]).to_table(columns=[S.ID])
    assert sorted(hits[S.ID].to_pylist()) == [f"s4-{v:03d}" for v in range(32)]


def test_tile_offsets_are_delta_encoded_without_dictionaries(tmp_path):
    table = synthetic_table(50, months=1)
    counts = np.random.default_rng(1).integers(1000, 9000, (50, 16))
    metadata = pa.array([{"tile_offsets": (500 + np.cumsum(c) - c).tolist(),
                          "tile_byte_counts": c.tolist()} for c in counts], S.METADATA_TYPE)
    table = table.append_column(S.metadata_column("B04"), metadata)
    root = tmp_path / "index"
    collection = rd.build_collection_from_table(table, name="t")
    collection.export(root)
    back = rd.load(root).to_table(columns=[S.ID, S.metadata_column("B04")]).sort_by(S.ID)
    assert back[S.metadata_column("B04")].to_pylist() == metadata.to_pylist()
    (file, *_) = sorted(root.rglob("*.parquet"))
    group = pq.ParquetFile(file).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i).encodings
               for i in range(group.num_columns)}
    heavy = [p for p in columns if p.endswith(("tile_offsets.list.element",
                                               "tile_byte_counts.list.element"))]
    assert heavy
    for path in heavy:
        assert "DELTA_BINARY_PACKED" in columns[path] and "PLAIN_DICTIONARY" not in columns[path]
        assert "RLE_DICTIONARY" not in columns[path]
