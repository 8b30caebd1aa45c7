"""A TorchGeo ``GeoDataset`` over a Collection: ``Collection.to_torchgeo_dataset``.

Needs the ``torchgeo`` extra (``pip install rasteret-dask[torchgeo]``, TorchGeo >= 0.8, whose
samplers index datasets with ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax]`` slices).

The layer's requirements (Rasteret's schema contract) are checked at construction: ``id``,
``datetime``, ``assets``, ``proj:epsg`` and ``{band}_metadata`` for each band (plus what
``iterate_rasters`` needs: ``geometry``, ``scene_bbox``). A record's time is its
``datetime``, else its ``start_datetime``-``end_datetime`` interval (``start_datetime``
alone: that instant); records with neither (an index normalisation did not check) are
dropped and counted in a warning. The records come from ``Collection.iterate_rasters``
(typed metadata, batch by batch); the dataset's index is a GeoDataFrame of their image
bounds in the dataset CRS with an ``IntervalIndex`` of their times, sorted by time then id.
A query's time range includes both ends (a record's time is often an instant).

A sample reads the query box from the records it meets through this project's read plan,
fetch groups and decoding (one ``plan_read`` over those records, computed at once), on the
records' own pixel grid: the dataset's CRS and resolution are the records' (one EPSG code and
one pixel size; a different ``crs=`` or ``res=`` is refused, nothing is reprojected or
resampled), and the query box is snapped to their pixels. ``image`` is (band, y, x): the
records mosaicked first-valid in index order (TorchGeo's merge rule), or (time, band, y, x)
with ``time_series=True``; pixels no record covers hold the band's nodata (0 without one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyproj
import shapely
import torch
from torchgeo.datasets import GeoDataset

from . import schema as S
from .collection import Collection
from .plan.grid import GridSpec
from .read.assemble import to_dataset
from .read.canvas import QueryGrid, first_valid, place, valid_mask
from .read.failures import check_errors
from .read.plan import plan_read
from .read.rasters import Raster
from .read.select import Selection
from .read.source import read_source

__all__ = ["CollectionGeoDataset", "LAYER_COLUMNS", "record_interval"]

logger = logging.getLogger("rasteret_dask.read")

LAYER_COLUMNS = (S.ID, S.DATETIME, S.ASSETS, "proj:epsg")
"""Columns the TorchGeo layer needs besides the bands' ``{band}_metadata``."""

_START, _END = "start_datetime", "end_datetime"


def _naive(value: Any) -> pd.Timestamp | None:
    """A UTC time without its zone (TorchGeo's samplers compare naive timestamps)."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        return None
    return stamp.tz_convert(None) if stamp.tzinfo is not None else stamp


def record_interval(raster: Raster) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """A record's time interval in the index (see the module), or None when it has none."""
    when = _naive(raster.datetime)
    if when is not None:
        return when, when
    start, end = _naive(raster.properties.get(_START)), _naive(raster.properties.get(_END))
    if start is None:
        return None
    return start, (start if end is None else end)


class CollectionGeoDataset(GeoDataset):
    """A TorchGeo GeoDataset whose samples are read by rasteret_dask (see the module).

    Parameters
    ----------
    collection
        The index (filtered views included).
    bands : sequence of str
        Bands, as the index or the data source's band map names them; the image's channels.
    crs : CRS-like, optional
        The dataset CRS; must be the records' (default: theirs).
    res : float or (float, float), optional
        The dataset resolution; must be the records' pixel size (default: theirs).
    time_series : bool, default False
        ``image`` as (time, band, y, x), every record the query meets, instead of a mosaic.
    is_image : bool, default True
        ``image`` (float32) or ``mask`` (int64, channel axis squeezed when there is one band).
    transforms : callable, optional
        Applied to each sample dict.
    storage_options, max_concurrent, max_tile_bytes, errors, data_source
        As ``Collection.get_xarray``.
    **filters
        ``Collection.subset`` arguments.

    Raises
    ------
    ValueError
        For a missing layer column, no record with a resolvable time, records in several
        CRSs or pixel sizes, or a ``crs``/``res`` other than the records'.
    """

    def __init__(self, collection: Collection, bands: Sequence[str], *, crs: Any = None,
                 res: float | tuple[float, float] | None = None, time_series: bool = False,
                 is_image: bool = True,
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 storage_options: dict | None = None, max_concurrent: int | None = None,
                 max_tile_bytes: int | str | None = None, errors: str = "raise",
                 data_source: Any = None, **filters: Any) -> None:
        check_errors(errors)
        bands = [bands] if isinstance(bands, str) else list(bands)
        if not bands:
            raise ValueError("to_torchgeo_dataset needs at least one band")
        names = collection.schema.names
        absent = [c for c in LAYER_COLUMNS if c not in names]
        if not absent:
            stored = read_source(collection, bands, data_source).stored_bands
            absent = [S.metadata_column(b) for b in stored if S.metadata_column(b) not in names]
        if absent:
            raise ValueError("to_torchgeo_dataset needs the columns id, datetime, assets, "
                             f"proj:epsg and {{band}}_metadata for each band; missing: {absent}"
                             + ("; run collection.enrich() first"
                                if any(c.endswith("_metadata") for c in absent) else ""))
        extra = [c for c in (_START, _END) if c in names]
        kept: list[tuple[tuple[pd.Timestamp, pd.Timestamp], Raster]] = []
        dropped = 0
        for raster in collection.iterate_rasters(bands, data_source=data_source,
                                                 columns=extra, **filters):
            interval = record_interval(raster)
            if interval is None:
                dropped += 1
            else:
                kept.append((interval, raster))
        if dropped:
            logger.warning("to_torchgeo_dataset dropped %d record(s) without a datetime or a "
                           "start_datetime/end_datetime pair", dropped)
        if not kept:
            raise ValueError("to_torchgeo_dataset found no record with a resolvable time and "
                             "metadata for every band")
        kept.sort(key=lambda item: (item[0][0], item[1].id))
        self._rasters = [r for _, r in kept]
        self._bands = tuple(bands)
        epsg, pixel = self._grid_rules(crs, res)
        grids = [GridSpec.from_metadata(next(iter(r.metadata.values()))) for r in self._rasters]
        index = pd.IntervalIndex.from_tuples([i for i, _ in kept], closed="both",
                                             name="datetime")
        self.index = gpd.GeoDataFrame({"id": [r.id for r in self._rasters],
                                       "position": range(len(self._rasters))},
                                      index=index, geometry=[shapely.box(*g.bounds) for g in grids],
                                      crs=pyproj.CRS.from_epsg(epsg))
        self._res = pixel
        self._epsg = epsg
        self.time_series = time_series
        self.is_image = is_image
        self.transforms = transforms
        self._read_options = (storage_options, max_concurrent, max_tile_bytes, errors)

    @property
    def bands(self) -> tuple[str, ...]:
        """The image's channels, as requested."""
        return self._bands

    def _grid_rules(self, crs: Any, res: Any) -> tuple[int, tuple[float, float]]:
        """The records' one EPSG code and one pixel size, checked against ``crs``/``res``."""
        codes = sorted({md.crs_epsg for r in self._rasters for md in r.metadata.values()},
                       key=lambda c: -1 if c is None else c)
        if None in codes or len(codes) != 1:
            shown = ", ".join("a custom CRS" if c is None else f"EPSG:{c}" for c in codes)
            raise ValueError(f"the records are in {shown}; a TorchGeo dataset reads one EPSG "
                             "CRS: subset(**{'proj:epsg': ...}) first")
        epsg = codes[0]
        if crs is not None and not pyproj.CRS.from_user_input(crs).equals(
                pyproj.CRS.from_epsg(epsg)):
            raise ValueError(f"crs={crs!r} differs from the records' EPSG:{epsg}; reads stay on "
                             "the records' grid (no reprojection): subset to records in that "
                             "CRS or leave crs unset")
        sizes = {(abs(md.transform.a), abs(md.transform.e))
                 for r in self._rasters for md in r.metadata.values()}
        if len(sizes) != 1:
            raise ValueError(f"the bands and records have several pixel sizes {sorted(sizes)}; "
                             "a TorchGeo dataset reads one (no resampling)")
        pixel = sizes.pop()
        if res is not None:
            asked = (float(res), float(res)) if np.isscalar(res) else tuple(map(float, res))
            if not np.allclose(asked, pixel):
                raise ValueError(f"res={res!r} differs from the records' pixel size {pixel}; "
                                 "reads are not resampled: leave res unset")
        return epsg, pixel

    def _hits(self, x: slice, y: slice, t: slice) -> list[Raster]:
        # both ends included: a record's time is often one instant (its interval [t, t])
        query = pd.Interval(t.start, t.stop, closed="both")
        index = self.index.iloc[self.index.index.overlaps(query)]
        index = index.iloc[:: t.step or 1]
        index = index.cx[x.start:x.stop, y.start:y.stop]
        box = shapely.box(x.start, y.start, x.stop, y.stop)
        index = index[index.geometry.intersection(box).area > 0]  # not only touching
        return [self._rasters[p] for p in index["position"]]

    def _read(self, rasters: Sequence[Raster], grid: QueryGrid, box: shapely.Geometry
              ) -> tuple[np.ndarray, np.ndarray]:
        """(time, band, y, x) chips of ``rasters`` on ``grid`` and where they are valid."""
        storage_options, max_concurrent, max_tile_bytes, errors = self._read_options
        source = rasters[0].source
        records = {b: tuple(r.records[b] for r in rasters) for b in source.stored_bands}
        grids = {(b, r.id): GridSpec.from_metadata(r.metadata)
                 for b, recs in records.items() for r in recs}
        selection = Selection(source, box, pyproj.CRS.from_epsg(self._epsg), records, grids,
                              (), pa.table({}))
        plan = plan_read(selection, max_tile_bytes=max_tile_bytes)
        reader = source.reader(storage_options, max_concurrent)
        ds = to_dataset(plan, reader, errors=errors).compute()
        stack = np.stack([ds[b].values for b in source.stored_bands], axis=1)
        row, col = grid.offset(float(ds["x"].values[0]), float(ds["y"].values[0]))
        fills = self._fills(rasters)
        chips, covered = place(stack, row, col, grid, 0)
        valid = np.zeros(chips.shape, dtype=bool)
        for t, raster in enumerate(rasters):
            for c, band in enumerate(self._bands):
                valid[t, c] = covered & valid_mask(chips[t, c], raster.metadata[band].nodata)
                chips[t, c][~covered] = fills[c]
        return chips, valid

    def _fills(self, rasters: Sequence[Raster]) -> np.ndarray:
        """Per band: the first record's nodata, else 0."""
        out = []
        for band in self._bands:
            nodata = rasters[0].metadata[band].nodata
            out.append(0 if nodata is None else nodata)
        return np.array(out, dtype=np.float64)

    def __getitem__(self, query: Any) -> dict[str, Any]:
        """The sample of a ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax]`` query.

        Raises
        ------
        IndexError
            When no record meets the query.
        ValueError
            When the query's resolution is not the dataset's (nothing is resampled).
        """
        x, y, t = self._disambiguate_slice(query)
        rasters = self._hits(x, y, t)
        if not rasters:
            raise IndexError(f"query {query} not found in the index with bounds {self.bounds}")
        step = (abs(x.step or self.res[0]), abs(y.step or self.res[1]))
        if not np.allclose(step, self.res):
            raise ValueError(f"query resolution {step} differs from the dataset's {self.res}; "
                             "samples are not resampled")
        grid = QueryGrid.from_bounds(x.start, y.start, x.stop, y.stop, *self.res)
        chips, valid = self._read(rasters, grid, shapely.box(x.start, y.start, x.stop, y.stop))
        data = chips if self.time_series else first_valid(chips, valid, self._fills(rasters))
        sample: dict[str, Any] = {"crs": self.crs, "bounds": query}
        if self.is_image:
            sample["image"] = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        else:
            sample["mask"] = torch.from_numpy(np.ascontiguousarray(data, dtype=np.int64)).squeeze(
                -3 if not self.time_series else 1)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample
