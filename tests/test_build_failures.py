"""No silent failures: a build whose every header failed raises; one where some failed warns."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.testing.cogs import write_cog


def _table(hrefs: list[str]) -> pa.Table:
    footprint = shapely.to_wkb(shapely.box(14.0, 44.0, 16.0, 46.0))
    return pa.table({
        "id": [f"r{i}" for i in range(len(hrefs))],
        "datetime": pa.array([1704067200_000000] * len(hrefs), pa.timestamp("us", tz="UTC")),
        "geometry": [footprint] * len(hrefs),
        "red": hrefs,
    })


def test_every_header_failing_raises_and_names_the_first_errors(tmp_path):
    table = _table([str(tmp_path / "missing0.tif"), str(tmp_path / "missing1.tif")])
    with pytest.raises(rd.EnrichmentFailedError) as info:
        rd.build_from_table(table, name="bad", workspace_dir=tmp_path, href_column="red",
                            progress=False)
    message = str(info.value)
    assert "all 2 headers failed" in message and "missing0.tif" in message
    index = rd.load(tmp_path / "bad")  # the index was written, without metadata
    errors = index.to_table(columns=[S.ENRICH_ERRORS])[S.ENRICH_ERRORS]
    assert pc.sum(pc.is_valid(errors)).as_py() == 2


def test_some_headers_failing_warn_with_the_count(tmp_path):
    good = write_cog(tmp_path / "good.tif", width=64, height=64, blocksize=32, dtype="uint16")
    table = _table([str(good), str(tmp_path / "missing.tif")])
    with pytest.warns(UserWarning, match=r"1 of 2 headers failed.*enrich_errors"):
        collection = rd.build_from_table(table, name="half", workspace_dir=tmp_path,
                                         href_column="red", progress=False)
    assert len(collection) == 2
