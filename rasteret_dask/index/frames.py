"""GeoDataFrames of a collection's records: one per data file, for dask-geopandas partitions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from .. import schema as S
from .dataset import fragment_dataset

__all__ = ["FragmentReader", "to_geodataframe"]


class FragmentReader:
    """Reads one partition file into a GeoDataFrame inside a dask task (picklable)."""

    def __init__(self, schema: pa.Schema, dataset: ds.Dataset | None, columns: Sequence[str],
                 filter: ds.Expression | None) -> None:
        self.schema, self.dataset, self.columns, self.filter = schema, dataset, columns, filter

    def __call__(self, fragment: ds.Fragment | None):
        if fragment is None:
            table = self.dataset.to_table(columns=self.columns, filter=self.filter)
        else:
            one = fragment_dataset(fragment, self.schema)
            table = one.to_table(columns=self.columns, filter=self.filter)
        return to_geodataframe(table)


def to_geodataframe(table: pa.Table):
    """A GeoDataFrame (CRS84) of a collection table; null footprints stay missing."""
    import geopandas as gpd

    frame = table.drop_columns([S.GEOMETRY]).to_pandas()
    geometry = gpd.GeoSeries.from_wkb(
        np.asarray(table[S.GEOMETRY].to_numpy(zero_copy_only=False), dtype=object), crs="OGC:CRS84"
    )
    return gpd.GeoDataFrame(frame, geometry=geometry.values, crs="OGC:CRS84")
