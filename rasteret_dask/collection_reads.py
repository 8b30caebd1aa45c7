"""The read methods of ``Collection``: each delegates to its function in
:mod:`rasteret_dask.read` (or :mod:`rasteret_dask.torchgeo`), where its parameters are
documented."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

__all__ = ["CollectionReads"]


class CollectionReads:
    """Pixel reads of a collection's records; mixed into :class:`rasteret_dask.Collection`."""

    def get_xarray(self, geometries: Any, bands: Sequence[str], **kwargs: Any):
        """Lazy dask-backed Dataset (time, y, x) per geometry.

        Parameters, return value and errors: :func:`rasteret_dask.read.api.get_xarray`.
        """
        from .read import get_xarray

        return get_xarray(self, geometries, bands, **kwargs)

    def get_numpy(self, geometries: Any, bands: Sequence[str], **kwargs: Any):
        """Computed array [time, band, y, x] per geometry.

        Parameters, return value and errors: :func:`rasteret_dask.read.api.get_numpy`.
        """
        from .read import get_numpy

        return get_numpy(self, geometries, bands, **kwargs)

    def get_gdf(self, geometries: Any, bands: Sequence[str], **kwargs: Any):
        """GeoDataFrame, one row per record x geometry x band, with array and transform.

        Parameters, return value and errors: :func:`rasteret_dask.read.tables.get_gdf`.
        """
        from .read.tables import get_gdf

        return get_gdf(self, geometries, bands, **kwargs)

    def sample_points(self, points: Any, bands: Sequence[str], **kwargs: Any) -> pa.Table:
        """Arrow table of pixel values at points (only the tiles under them are fetched).

        Parameters, return value and errors: :func:`rasteret_dask.read.tables.sample_points`.
        """
        from .read.tables import sample_points

        return sample_points(self, points, bands, **kwargs)

    def iterate_rasters(self, bands: Sequence[str] | str | None = None, **kwargs: Any):
        """One ``Raster`` per record (id, time, footprint, typed metadata, lazy reads), read
        batch by batch; the layer's columns are checked at the call.

        Parameters, return value and errors: :func:`rasteret_dask.read.rasters.iterate_rasters`.
        """
        from .read.rasters import iterate_rasters

        return iterate_rasters(self, bands, **kwargs)

    def to_torchgeo_dataset(self, bands: Sequence[str], **kwargs: Any):
        """A TorchGeo ``GeoDataset`` whose samples are read by this project's read path
        (needs the ``torchgeo`` extra).

        Parameters, return value and errors: :class:`rasteret_dask.torchgeo.CollectionGeoDataset`.
        """
        try:
            from .torchgeo import CollectionGeoDataset
        except ImportError as exc:
            raise ImportError("to_torchgeo_dataset needs TorchGeo: pip install "
                              "'rasteret-dask[torchgeo]'") from exc
        return CollectionGeoDataset(self, bands, **kwargs)

    def explain(self, geometries: Any, bands: Sequence[str], **kwargs: Any) -> list[dict]:
        """Dry-run a read: records, output shape, chunks, tiles and bytes, without any I/O.

        Takes :func:`rasteret_dask.read.api.plan_reads`' arguments; one ``ReadPlan.explain``
        dict per geometry.
        """
        from .read import plan_reads

        return [plan.explain() for plan in plan_reads(self, geometries, bands, **kwargs)]
