"""The read entry points behind ``Collection.get_xarray`` / ``get_numpy``: filter, plan, assemble."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .assemble import to_dataset
from .failures import check_errors
from .plan import ReadPlan, plan_read
from .select import Selection, select
from .skipped import settle_missing

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["prepare_reads", "plan_reads", "get_xarray", "get_numpy"]


def prepare_reads(
    collection: Collection,
    geometries: Any,
    bands: Sequence[str] | str,
    *,
    geometry_crs: Any = 4326,
    all_touched: bool = False,
    chunks: int | None = None,
    data_source: Any = None,
    max_tile_bytes: int | str | None = None,
    on_missing: str = "skip",
    errors: str = "raise",
    **filters: Any,
) -> tuple[list[Selection], list[ReadPlan]]:
    """The selections and read plans of an array read (see :func:`plan_reads`), one of each
    per geometry; ``get_xarray`` and ``get_gdf`` build on them."""
    check_errors(errors)
    selections = select(collection, geometries, bands, geometry_crs=geometry_crs,
                        data_source=data_source, on_missing=on_missing, **filters)
    plans = []
    for selection in selections:
        if selection.is_empty:
            raise selection.empty_error()
        plans.append(plan_read(selection, all_touched=all_touched, tiles_per_chunk=chunks or 1,
                               max_tile_bytes=max_tile_bytes))
    return selections, plans


def plan_reads(
    collection: Collection,
    geometries: Any,
    bands: Sequence[str] | str,
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
    """One read plan per geometry: pure planning, reading only index columns, never a COG.

    ``Collection.explain`` returns each plan's :meth:`ReadPlan.explain` dict (records,
    bands, output shape, CRS, chunks, fetch groups, tiles, compressed bytes, skipped records).

    Parameters
    ----------
    collection
        The index to read from.
    geometries
        One or several geometries: shapely, WKB, WKT, GeoJSON, a bbox tuple, a sequence of
        those, a GeoSeries/GeoDataFrame or Arrow WKB (see ``plan.geometry.coerce_geometries``).
    bands : sequence of str or str
        Bands to read, as the index names them or as the data source's band map does; plans
        name them as the index does.
    geometry_crs : CRS-like, default 4326
        CRS of ``geometries`` (anything ``pyproj`` accepts), unless they carry their own.
    all_touched : bool, default False
        Keep every pixel the geometry touches, not only those whose centre it holds.
    chunks : int, optional
        Tiles per output chunk side (default 1: one chunk per tile).
    data_source : DatasetDescriptor or str, optional
        Overrides the collection's data source (band names, storage options, URL signing).
    max_tile_bytes : int or str, optional
        Tiles declaring more (decoded, unless sparse, or compressed) are never fetched and
        fail their chunks; default: dask config ``rasteret_dask.max_tile_bytes``, else 256 MiB.
    on_missing : {"skip", "raise"}, default "skip"
        Matching records whose band has no metadata: left out and listed in each plan's
        ``skipped`` (without a warning here), or ``MissingRecordsError``.
    errors : {"raise", "nodata"}, default "raise"
        Only checked here; it acts when a read computes (see :func:`get_xarray`).
    **filters
        ``Collection.subset`` arguments (e.g. ``date_range``, ``cloud_cover_lt``).

    Returns
    -------
    list of ReadPlan
        One per geometry, in input order.

    Raises
    ------
    ValueError
        For an unknown ``on_missing``, ``errors`` or ``max_tile_bytes``, an unknown or
        unenriched band, a geometry that meets no enriched record, records in several CRSs
        or without an EPSG code (named with band and href), or grids that do not line up.
    MissingRecordsError
        With ``on_missing="raise"``, when a matching record has no metadata for a band.
    """
    return prepare_reads(collection, geometries, bands, geometry_crs=geometry_crs,
                         all_touched=all_touched, chunks=chunks, data_source=data_source,
                         max_tile_bytes=max_tile_bytes, on_missing=on_missing, errors=errors,
                         **filters)[1]


def get_xarray(collection: Collection, geometries: Any, bands: Sequence[str] | str, *,
               geometry_crs: Any = 4326, all_touched: bool = False, chunks: int | None = None,
               max_concurrent: int | None = None, storage_options: dict | None = None,
               data_source: Any = None, max_tile_bytes: int | str | None = None,
               on_missing: str = "skip", errors: str = "raise",
               **filters: Any) -> xr.Dataset | list[xr.Dataset]:
    """Lazy Dataset(s) of ``bands`` over ``geometries``: nothing is fetched until computed.

    Each Dataset has one (time, y, x) dask variable per band (named as requested) on the
    records' own pixel grid, masked to the geometry, with ``time``, ``y``, ``x``, ``id``,
    ``cloud_cover`` (when the index has it) and a ``spatial_ref`` CRS coordinate.

    Parameters
    ----------
    collection
        The index to read from.
    geometries
        One or several geometries (see :func:`plan_reads`).
    bands : sequence of str or str
        Bands to read, as the index or the data source's band map names them.
    geometry_crs : CRS-like, default 4326
        CRS of ``geometries`` unless they carry their own.
    all_touched : bool, default False
        Keep every pixel the geometry touches, not only those whose centre it holds.
    chunks : int, optional
        Tiles per output chunk side (default 1).
    max_concurrent : int, optional
        Requests in flight per process (default 64).
    storage_options : dict, optional
        fsspec options for the COGs (default: the data source's).
    data_source : DatasetDescriptor or str, optional
        A descriptor or its id; overrides the collection's for band names, storage options
        and URL signing.
    max_tile_bytes : int or str, optional
        Size limit of one tile (see :func:`plan_reads`).
    on_missing : {"skip", "raise"}, default "skip"
        ``"skip"``: records matching the read whose band has no COG metadata (enrichment
        failed or never ran) are left out with a warning on the ``rasteret_dask.read`` logger
        and listed in ``attrs["skipped_records"]``; ``"raise"``: ``MissingRecordsError``.
    errors : {"raise", "nodata"}, default "raise"
        ``"raise"``: a tile that cannot be fetched or decoded fails the computation
        (``RasterReadError`` naming record, band, href); ``"nodata"``: it is read as nodata,
        logged, and listed in ``attrs["read_errors"]`` as chunks compute (see
        ``read.failures``).
    **filters
        ``Collection.subset`` arguments.

    Returns
    -------
    xarray.Dataset or list of xarray.Dataset
        One Dataset for a single geometry, a list (input order) for several.

    Raises
    ------
    ValueError, MissingRecordsError
        As :func:`plan_reads`; ``RasterReadError`` is raised later, by ``compute``.
    """
    selections, plans = prepare_reads(
        collection, geometries, bands, geometry_crs=geometry_crs, all_touched=all_touched,
        chunks=chunks, data_source=data_source, max_tile_bytes=max_tile_bytes,
        on_missing=on_missing, errors=errors, **filters)
    source = selections[0].source
    reader = source.reader(storage_options, max_concurrent)
    settle_missing((r for plan in plans for r in plan.skipped), on_missing, "get_xarray")
    datasets = [to_dataset(plan, reader, errors=errors).rename(source.renames) for plan in plans]
    for dataset in datasets:
        dataset.attrs.update(_provenance(collection, list(source.bands), geometry_crs, filters))
    return datasets[0] if len(datasets) == 1 else datasets


def _provenance(collection: Collection, bands: list[str], geometry_crs: Any,
                filters: dict[str, Any]) -> dict[str, Any]:
    """What produced a Dataset: the package, the collection, the bands and the query."""
    from .. import __version__

    query = {"geometry_crs": str(geometry_crs), **{k: str(v) for k, v in filters.items()}}
    return {"source": f"rasteret_dask {__version__}", "collection": collection.name,
            "data_source": collection.data_source or "", "bands": ",".join(bands),
            "query": json.dumps(query, sort_keys=True)}


def get_numpy(collection: Collection, geometries: Any, bands: Sequence[str] | str,
              **kwargs: Any) -> np.ndarray | list[np.ndarray]:
    """Computed arrays of ``bands`` over ``geometries``.

    Parameters
    ----------
    collection, geometries, bands
        As :func:`get_xarray`.
    **kwargs
        :func:`get_xarray`'s keyword arguments (``on_missing`` and ``errors`` included);
        skipped records and tiles read as nodata are reported on the ``rasteret_dask.read``
        logger only.

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        (time, band, y, x) in the bands' order: one array for one geometry, a list for
        several.

    Raises
    ------
    ValueError, MissingRecordsError, RasterReadError
        As :func:`get_xarray` and its computation.
    """
    result = get_xarray(collection, geometries, bands, **kwargs)
    bands = [bands] if isinstance(bands, str) else list(bands)

    def stack(ds: xr.Dataset) -> np.ndarray:
        return np.stack([ds[b].values for b in bands], axis=1)

    return stack(result) if isinstance(result, xr.Dataset) else [stack(d) for d in result]
