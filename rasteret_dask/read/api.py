"""The read entry points behind ``Collection.get_xarray`` / ``get_numpy``: filter, plan, assemble."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyproj
import xarray as xr

from .. import schema as S
from ..plan.geometry import coerce_geometries, geometry_crs, reproject_geometries
from ..redact import redact_url
from .assemble import to_dataset
from .failures import check_errors
from .plan import ReadPlan, align_records, plan_read, records_for_band
from .skipped import check_on_missing, missing_records, settle_missing
from .source import read_source

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["plan_reads", "get_xarray", "get_numpy"]


def plan_reads(
    collection: Collection,
    geometries: Any,
    bands: Sequence[str],
    *,
    geometry_crs: Any = 4326,
    all_touched: bool = False,
    chunks: int | None = None,
    data_source: Any = None,
    max_tile_bytes: int | str | None = None,
    on_missing: str = "skip",
    errors: str = "raise",
    **filters: Any,
) -> list[ReadPlan]:
    """One read plan per geometry (pure planning: reads only index columns, never a COG).

    Bands are planned under the names the index stores (see ``read.source``). Tiles declaring
    more than ``max_tile_bytes`` (default: dask config ``rasteret_dask.max_tile_bytes``, else
    256 MiB) are not fetched and fail their chunks (see ``read.plan.plan_read``); ``get_xarray``,
    ``get_numpy``, ``get_gdf`` and ``explain`` pass it on through their keyword arguments.
    Matching records whose band has no metadata are left out and listed in each plan's
    ``skipped``, with a warning (``on_missing="skip"``), or raise ``MissingRecordsError``
    (``"raise"``). ``errors`` is only checked here (it acts when the read computes).
    """
    check_on_missing(on_missing)
    check_errors(errors)
    bands = read_source(collection, bands, data_source).stored_bands
    missing = [b for b in bands if b not in collection.enriched_bands]
    if missing:
        raise ValueError(f"band(s) {missing} have no COG metadata; run collection.enrich() first")
    shapes = coerce_geometries(geometries)
    src_crs = pyproj.CRS.from_user_input(geometry_crs_of(geometries, geometry_crs))
    subset = collection.subset(**filters) if filters else collection
    plans = []
    for shape in shapes:
        lonlat = reproject_geometries([shape], src_crs, pyproj.CRS.from_epsg(4326))[0]
        hits = subset.subset(geometries=lonlat)
        columns = [S.ID, S.DATETIME, S.ASSETS] + [S.metadata_column(b) for b in bands]
        columns += [c for c in S.CLOUD_COVER_COLUMNS if c in hits.schema.names][:1]
        columns += [S.ENRICH_ERRORS] if S.ENRICH_ERRORS in hits.schema.names else []
        table = hits.to_table(columns=columns)
        skipped = [r for b in bands for r in missing_records(table, b)]
        if on_missing == "raise":
            settle_missing(skipped, on_missing, "the read")
        per_band = align_records({b: records_for_band(table, b) for b in bands}, bands)
        if not per_band[bands[0]]:
            note = (f" ({len(skipped)} matching record(s) have no metadata, e.g. {skipped[0]})"
                    if skipped else "")
            raise ValueError(f"no enriched record intersects the geometry{note}")
        for band, recs in per_band.items():
            for r in recs:
                if r.metadata.get("crs_epsg") is None:
                    raise ValueError(f"record {r.id!r}, band {band!r}, href {redact_url(r.href)}: "
                                     "no EPSG code in its header (a custom CRS); reading needs "
                                     "an EPSG CRS")
        epsg = {r.metadata.get("crs_epsg") for recs in per_band.values() for r in recs}
        if len(epsg) > 1:
            names = ", ".join(f"EPSG:{e}" for e in sorted(e for e in epsg if e is not None))
            raise ValueError(f"the records are in several CRSs ({names}); subset to one CRS "
                             "(e.g. subset(**{'proj:epsg': ...})) before reading")
        dst = pyproj.CRS.from_epsg(next(iter(epsg)))
        native = reproject_geometries([shape], src_crs, dst)[0]
        plans.append(plan_read(per_band, native, all_touched=all_touched,
                               tiles_per_chunk=chunks or 1, max_tile_bytes=max_tile_bytes,
                               skipped=skipped))
    return plans


def geometry_crs_of(geometries: Any, default: Any) -> Any:
    """The CRS carried by the geometries (GeoSeries, GeoParquet table), else ``default``."""
    crs = geometry_crs(geometries)
    return crs if crs is not None else default


def get_xarray(collection: Collection, geometries: Any, bands: Sequence[str], *,
               geometry_crs: Any = 4326, all_touched: bool = False, chunks: int | None = None,
               max_concurrent: int | None = None, storage_options: dict | None = None,
               data_source: Any = None, on_missing: str = "skip", errors: str = "raise",
               **filters: Any) -> xr.Dataset | list[xr.Dataset]:
    """Lazy Dataset(s): one for a single geometry, a list (input order) for several.

    Parameters
    ----------
    data_source
        A descriptor or its id; overrides the collection's for band names, storage options
        and URL signing.
    on_missing
        ``"skip"``: records matching the read whose band has no COG metadata (enrichment
        failed or never ran) are left out with a warning on the ``rasteret_dask.read`` logger
        and listed in ``attrs["skipped_records"]``; ``"raise"``: ``MissingRecordsError``.
    errors
        ``"raise"``: a tile that cannot be fetched or decoded fails the computation
        (``RasterReadError`` naming record, band, href); ``"nodata"``: it is read as nodata,
        logged, and listed in ``attrs["read_errors"]`` as chunks compute (see
        ``read.failures``).
    """
    source = read_source(collection, bands, data_source)
    reader = source.reader(storage_options, max_concurrent)
    plans = plan_reads(collection, geometries, source.stored_bands, geometry_crs=geometry_crs,
                       all_touched=all_touched, chunks=chunks, data_source=source.descriptor,
                       on_missing=on_missing, errors=errors, **filters)
    settle_missing((r for plan in plans for r in plan.skipped), on_missing, "get_xarray")
    datasets = [to_dataset(plan, reader, errors=errors).rename(source.renames) for plan in plans]
    return datasets[0] if len(datasets) == 1 else datasets


def get_numpy(collection: Collection, geometries: Any, bands: Sequence[str], **kwargs: Any):
    """Computed arrays [time, band, y, x]: one array for one geometry, a list for several.

    Takes :func:`get_xarray`'s arguments (``on_missing``, ``errors`` included); skipped records
    and tiles read as nodata are reported on the ``rasteret_dask.read`` logger only."""
    result = get_xarray(collection, geometries, bands, **kwargs)
    bands = [bands] if isinstance(bands, str) else list(bands)

    def stack(ds: xr.Dataset) -> np.ndarray:
        return np.stack([ds[b].values for b in bands], axis=1)

    return stack(result) if isinstance(result, xr.Dataset) else [stack(d) for d in result]
