"""Task counts of a continental read (issue 14, ``scale_bench.py`` part c, small): a lazy
``get_xarray`` over the synthetic archive, grouped by solar day with 2048-pixel chunks, has a
few tasks per output chunk x time group x band, however many records meet each chunk.

No I/O and no timing: the graph is built, never computed (the hrefs point nowhere).
"""

from __future__ import annotations

import math

import pytest
import shapely

from rasteret_dask.testing.continental import continental_archive
from rasteret_dask.testing.continental_layout import ArchiveSpec

BANDS = ["B02", "B03", "B04", "B08"]
CHUNK = 2048
AOI = shapely.Point(12.0, 48.0).buffer(0.25)  # ~37 km across 12 E: UTM zones 32 and 33
READ = dict(crs=3035, resolution=10, groupby="solar_day", chunks={"x": CHUNK, "y": CHUNK})
PER_FETCH_GROUP = 2
"""Tasks a fetch group may add beyond its chunks' own (its fetch task, its assembly)."""
FIXED = 16
"""Tasks of the Dataset itself (coordinates, masks), whatever its size."""


def _spec(step: float) -> ArchiveSpec:
    return ArchiveSpec(bbox=(11.0, 47.6, 13.0, 48.4), zones=(32, 33), months=1, pixels=1098,
                       step=step, blocksize=256)


def _counts(archive) -> tuple[int, int, int, int, dict]:
    """(tasks, chunks, time groups, bands, explain()) of the read."""
    collection = archive.load()
    ds = collection.get_xarray(AOI, BANDS, **READ)
    tasks = len(ds.__dask_graph__())
    chunks = math.ceil(ds.sizes["y"] / CHUNK) * math.ceil(ds.sizes["x"] / CHUNK)
    plan = collection.explain(AOI, BANDS, **READ)[0]
    return tasks, chunks, ds.sizes["time"], len(ds.data_vars), plan


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    """The read's counts over the same place and month with 10.98 km tiles every 10 km, and
    every 5.49 km (each point under about four times as many records)."""
    return {step: _counts(continental_archive(tmp_path_factory.mktemp(f"counts{int(step)}"),
                                              "http://127.0.0.1:9", _spec(step)))
            for step in (10_000.0, 5_490.0)}


def test_tasks_grow_with_chunks_groups_and_bands(counts):
    tasks, chunks, groups, bands, plan = counts[10_000.0]
    assert chunks >= 4 and groups >= 10 and bands == len(BANDS)
    blocks = chunks * groups * bands
    bound = 2 * blocks + PER_FETCH_GROUP * plan.get("fetch_groups", 0) + FIXED
    assert blocks <= tasks <= bound, (tasks, chunks, groups, bands, plan.get("fetch_groups"))


def test_tasks_do_not_grow_with_the_records_of_a_chunk(counts):
    sparse, dense = counts[10_000.0], counts[5_490.0]
    assert dense[4]["records"] > 2.5 * sparse[4]["records"]
    assert dense[4]["records_per_chunk"]["mean"] > 2.5 * sparse[4]["records_per_chunk"]["mean"]
    assert dense[1:4] == sparse[1:4]  # same grid, same groups (same passes)
    assert dense[0] <= sparse[0] + FIXED
