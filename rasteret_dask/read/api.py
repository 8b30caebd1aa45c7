"""The read entry points behind ``Collection.get_xarray`` / ``get_numpy``: filter, plan, assemble."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import shapely
import xarray as xr

from ..plan.geometry import reproject_geometries
from ..plan.output_grid import GridRequest, describe_geobox, grid_request
from .assemble import to_dataset
from .deferred import DeferredPlan, plan_deferred_read, should_defer
from .failures import check_errors
from .grouping import check_groupby
from .plan import ReadPlan, plan_read
from .properties import attach_properties, property_columns
from .rescale import rescaling
from .route import is_native, native_chunks
from .select import Selection, query_geometries, read_bands, select
from .skipped import settle_missing
from .warp_assemble import warped_dataset
from .warp_plan import WarpPlan, plan_warped_read

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["prepare_reads", "plan_reads", "get_xarray", "get_numpy", "ReadPlanLike"]

logger = logging.getLogger("rasteret_dask.read")


ReadPlanLike = ReadPlan | WarpPlan | DeferredPlan
"""A read's plan: on the records' own grid (:class:`ReadPlan`), warped (:class:`WarpPlan`), or
warped and planned on the workers (:class:`DeferredPlan`, large output grids)."""


def prepare_reads(
    collection: Collection,
    geometries: Any,
    bands: Sequence[str] | str,
    *,
    geometry_crs: Any = 4326,
    all_touched: bool = False,
    chunks: Any = None,
    data_source: Any = None,
    max_tile_bytes: int | str | None = None,
    on_missing: str = "skip",
    errors: str = "raise",
    crs: Any = None,
    resolution: Any = None,
    resampling: Any = "nearest",
    geobox: Any = None,
    groupby: Any = None,
    rescale: bool = False,
    **filters: Any,
) -> tuple[list[Selection], list[ReadPlanLike]]:
    """The selections and read plans of an array read (see :func:`plan_reads`), one of each
    per geometry; ``get_xarray`` and ``get_gdf`` build on them."""
    check_errors(errors)
    request = grid_request(crs, resolution, resampling, geobox)
    check_groupby(groupby)
    if geometries is None:
        if request.geobox is None:
            raise ValueError("geometries=None reads a whole output grid: pass geobox=")
        geometries = shapely.geometry.box(*request.geobox.boundingbox.bbox)
        geometry_crs = request.geobox.crs.to_wkt()
    large = _large_reads(collection, geometries, bands, geometry_crs, request, groupby,
                         chunks, all_touched, rescale, max_tile_bytes, data_source, filters)
    if large is not None:
        return large
    selections = select(collection, geometries, bands, geometry_crs=geometry_crs,
                        data_source=data_source, on_missing=on_missing, **filters)
    plans: list[ReadPlanLike] = []
    for selection in selections:
        if selection.is_empty:
            if request.geobox is not None:
                raise ValueError(f"geobox={describe_geobox(request.geobox)} misses every "
                                 "record of the "
                                 f"read: {selection.empty_error()}")
            raise selection.empty_error()
        if is_native(selection, request, groupby, rescale):
            native = native_chunks(chunks)
            plans.append(plan_read(selection, all_touched=all_touched,
                                   tiles_per_chunk=native.tiles, chunk_pixels=native.pixels,
                                   max_tile_bytes=max_tile_bytes))
        else:
            plans.append(plan_warped_read(
                selection, request, groupby=groupby, chunks=chunks, all_touched=all_touched,
                rescale=rescale, scaling=rescaling(selection) if rescale else None,
                max_tile_bytes=max_tile_bytes))
    return selections, plans


def _large_reads(collection: Collection, geometries: Any, bands: Sequence[str] | str,
                 geometry_crs: Any, request: GridRequest, groupby: Any, chunks: Any,
                 all_touched: bool, rescale: bool, max_tile_bytes: int | str | None,
                 data_source: Any, filters: dict[str, Any]
                 ) -> tuple[list[Selection], list[ReadPlanLike]] | None:
    """Deferred plans (one per geometry) when the output grids are large, else None."""
    if request.geobox is None and (request.crs is None or request.resolution is None):
        return None
    shapes, crs = query_geometries(geometries, geometry_crs)
    out = request.crs if request.geobox is None else None
    if request.geobox is None and not any(
            should_defer(request, reproject_geometries([s], crs, out, densify=0)[0].bounds,
                         chunks) for s in shapes):
        return None
    if request.geobox is not None and not should_defer(request, None, chunks):
        return None
    source = read_bands(collection, bands, data_source)
    plans: list[ReadPlanLike] = [
        plan_deferred_read(collection, shape, crs, source.stored_bands, request,
                           groupby=groupby, chunks=chunks, all_touched=all_touched,
                           rescale=rescale, max_tile_bytes=max_tile_bytes, filters=filters)
        for shape in shapes]
    selections = [Selection(source, shape, crs, {}, {}, (), pa.table({}))
                  for shape in shapes]
    return selections, plans


def plan_reads(
    collection: Collection,
    geometries: Any,
    bands: Sequence[str] | str,
    *,
    geometry_crs: Any = 4326,
    all_touched: bool = False,
    chunks: Any = None,
    data_source: Any = None,
    max_tile_bytes: int | str | None = None,
    on_missing: str = "skip",
    errors: str = "raise",
    crs: Any = None,
    resolution: Any = None,
    resampling: Any = "nearest",
    geobox: Any = None,
    groupby: Any = None,
    rescale: bool = False,
    **filters: Any,
) -> list[ReadPlanLike]:
    """One read plan per geometry: pure planning, reading only index columns, never a COG.

    ``Collection.explain`` returns each plan's ``explain()`` dict (records, bands, output
    shape, CRS, chunk shape, chunks, fetch groups, tiles (each fetched and decoded once, also
    when it straddles chunk edges), shared tiles, compressed bytes, skipped records; for a warped
    read also the output grid, the overview level each band reads and records per chunk).

    Parameters
    ----------
    collection
        The index to read from.
    geometries
        One or several geometries: shapely, WKB, WKT, GeoJSON, a bbox tuple, a sequence of
        those, a GeoSeries/GeoDataFrame or Arrow WKB (see ``plan.geometry.coerce_geometries``);
        None with ``geobox=`` reads the whole geobox.
    bands : sequence of str or str
        Bands to read, as the index names them or as the data source's band map does; plans
        name them as the index does.
    geometry_crs : CRS-like, default 4326
        CRS of ``geometries`` (anything ``pyproj`` accepts), unless they carry their own.
    all_touched : bool, default False
        Keep every pixel the geometry touches, not only those whose centre it holds.
    chunks : int, dict or (int, int), optional
        An int: tiles per output chunk side (default 1 on the records' grid: chunks of the
        first record's tile size; a warped read's output tiles are 512 pixels, default 2). A
        dict ``{"y": px, "x": px}`` (odc-stac's form) or a (y, x) pair: pixels, exactly.
        Chunks are regular from the output window's origin (every chunk that size but the
        last along each axis, so ``to_zarr`` takes the result as it is); on the records' grid
        a tile straddling chunk edges is still fetched and decoded once.
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
    crs : CRS-like, optional
        Output CRS (anything pyproj accepts, WKT included). Default: the records' CRS when
        they share one, else the CRS of most records (odc-stac's rule; logged).
    resolution : float or (float, float), optional
        Output pixel size (x, y) in ``crs`` units. Default: the finest native resolution
        among the bands. Pixel edges sit on integer multiples of it.
    resampling : str, default "nearest"
        GDAL's kernel names: nearest, bilinear, cubic, cubic_spline, lanczos, average, mode,
        min, max, median, q1, q3, sum, rms.
    geobox : odc.geo.geobox.GeoBox, optional
        The whole output grid (instead of ``crs``/``resolution`` and the geometry's bounds).
    groupby : None, "time", "solar_day", "id" or callable, optional
        One time step per record (None), or per group of records fused first-valid (records
        ordered by datetime then id; see ``read.grouping``).
    rescale : bool, default False
        float32 physical values (``raw * scale + offset`` from STAC ``raster:bands``), nodata
        as NaN (stackstac's semantics); default raw values.
    **filters
        ``Collection.subset`` arguments (e.g. ``date_range``, ``cloud_cover_lt``).

    Returns
    -------
    list of ReadPlan or WarpPlan
        One per geometry, in input order: a ``ReadPlan`` when the output grid is the records'
        own (its tiles copied into regular chunks), a ``WarpPlan`` otherwise.

    Raises
    ------
    ValueError
        For an unknown ``on_missing``, ``errors``, ``max_tile_bytes``, ``resampling`` or
        ``groupby``, a ``resolution`` that is not a positive number, a ``crs`` pyproj cannot
        parse, an unknown or unenriched band, a geometry or geobox that meets no enriched
        record, records without an EPSG code (named with band and href), or ``rescale=True``
        on a band without scale and offset.
    MissingRecordsError
        With ``on_missing="raise"``, when a matching record has no metadata for a band.
    """
    return prepare_reads(collection, geometries, bands, geometry_crs=geometry_crs,
                         all_touched=all_touched, chunks=chunks, data_source=data_source,
                         max_tile_bytes=max_tile_bytes, on_missing=on_missing, errors=errors,
                         crs=crs, resolution=resolution, resampling=resampling, geobox=geobox,
                         groupby=groupby, rescale=rescale, **filters)[1]


def get_xarray(collection: Collection, geometries: Any, bands: Sequence[str] | str, *,
               geometry_crs: Any = 4326, all_touched: bool = False, chunks: Any = None,
               max_concurrent: int | None = None, storage_options: dict | None = None,
               data_source: Any = None, max_tile_bytes: int | str | None = None,
               on_missing: str = "skip", errors: str = "raise", crs: Any = None,
               resolution: Any = None, resampling: Any = "nearest", geobox: Any = None,
               groupby: Any = None, rescale: bool = False,
               properties: bool | Sequence[str] | str | None = None,
               **filters: Any) -> xr.Dataset | list[xr.Dataset]:
    """Lazy Dataset(s) of ``bands`` over ``geometries``: nothing is fetched until computed.

    Each Dataset has one (time, y, x) dask variable per band (named as requested), masked to
    the geometry, with ``time``, ``y``, ``x``, ``id``, ``cloud_cover`` (native reads, when
    the index has it) and a ``spatial_ref`` CRS coordinate describing the output grid (read
    by rioxarray and ``.odc.geobox``). Without ``crs``/``resolution``/``geobox``/``groupby``
    the output is the records' own pixel grid in regular chunks from the window's origin
    (Zarr-ready; by default the first record's tile size, each tile fetched and decoded
    once even where it straddles chunk edges); otherwise records
    of any CRSs, resolutions and overview levels are resampled onto the output grid
    (GDAL's warper, as odc-stac) in regular chunks, one task per chunk and time step.

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
    chunks : int, dict or (int, int), optional
        Chunk size (see :func:`plan_reads`).
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
    crs, resolution, resampling, geobox, groupby, rescale
        The output grid, time grouping and rescaling (see :func:`plan_reads`).
    properties : bool, str or sequence of str, optional
        Index columns to put on the time axis as coordinates (stackstac's ``properties=``):
        ``True`` for every scalar user column (``platform``, ``eo:cloud_cover``, ...), or
        their names. A time step of several records takes its first record's value.
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
        on_missing=on_missing, errors=errors, crs=crs, resolution=resolution,
        resampling=resampling, geobox=geobox, groupby=groupby, rescale=rescale, **filters)
    source = selections[0].source
    reader = source.reader(storage_options, max_concurrent)
    settle_missing((r for plan in plans for r in plan.skipped), on_missing, "get_xarray")
    datasets = [(to_dataset(plan, reader, errors=errors) if isinstance(plan, ReadPlan)
                 else warped_dataset(plan, reader, errors=errors)).rename(source.renames)
                for plan in plans]
    columns = property_columns(collection.schema, properties)
    if columns:
        datasets = [attach_properties(ds, collection, columns, _first_ids(plan))
                    for ds, plan in zip(datasets, plans, strict=True)]
    for dataset, plan in zip(datasets, plans, strict=True):
        dataset.attrs.update(_provenance(collection, list(source.bands), geometry_crs, filters))
        _log_grid(dataset, "native" if isinstance(plan, ReadPlan) else "warped")
    return datasets[0] if len(datasets) == 1 else datasets


def _first_ids(plan: ReadPlanLike) -> list[str]:
    """Each time step's first record (fusion order)."""
    if isinstance(plan, ReadPlan):
        return list(plan.ids)
    return [ids[0] for ids in plan.ids]


def _log_grid(dataset: xr.Dataset, kind: str) -> None:
    """One INFO line on the ``rasteret_dask.read`` logger: the grid a read chose."""
    if not logger.isEnabledFor(logging.INFO) or "spatial_ref" not in dataset.coords:
        return
    import pyproj

    attrs = dataset["spatial_ref"].attrs
    crs = pyproj.CRS.from_wkt(attrs["crs_wkt"])
    code = crs.to_authority()
    _, xres, _, _, _, yres = (float(v) for v in attrs["GeoTransform"].split())
    logger.info("read %s on the %s grid %s at %g x %g: %s", ", ".join(dataset.data_vars), kind,
                ":".join(code) if code else crs.name, abs(xres), abs(yres),
                " x ".join(f"{k}={v}" for k, v in dataset.sizes.items()))


def _provenance(collection: Collection, bands: list[str], geometry_crs: Any,
                filters: dict[str, Any]) -> dict[str, Any]:
    """What produced a Dataset: the package, the collection, the bands and the query."""
    from .. import __version__

    query = {"geometry_crs": str(geometry_crs), **{k: str(v) for k, v in filters.items()}}
    return {"source": f"rasteret_dask {__version__}", "collection": collection.name,
            "data_source": collection.data_source or "", "bands": ",".join(bands),
            "query": json.dumps(query, sort_keys=True)}


def get_numpy(collection: Collection, geometries: Any, bands: Sequence[str] | str, *,
              progress: bool = False, **kwargs: Any) -> np.ndarray | list[np.ndarray]:
    """Computed arrays of ``bands`` over ``geometries``.

    Parameters
    ----------
    collection, geometries, bands
        As :func:`get_xarray`.
    progress : bool, default False
        Show a progress bar while computing (``rasteret_dask.runner.compute``: ``tqdm`` on
        local threads, a widget in a notebook, ``distributed.progress`` on a cluster).
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
    from ..runner import compute  # the one place that runs work with a progress display

    result = get_xarray(collection, geometries, bands, **kwargs)
    bands = [bands] if isinstance(bands, str) else list(bands)
    datasets = [result] if isinstance(result, xr.Dataset) else result
    # the band arrays themselves, so each computes whole (into its shared buffer, .buffers)
    computed = compute([d[b].data for d in datasets for b in bands], progress=progress,
                       description="get_numpy")
    arrays = [np.stack(computed[i:i + len(bands)], axis=1)
              for i in range(0, len(computed), len(bands))]
    return arrays[0] if isinstance(result, xr.Dataset) else arrays
