"""``composite``: monthly composites (median by default; mean, min, max, count, percentiles;
NDVI of the reduced red and near-infrared) over any output grid and any area, written to Zarr
tile by tile on the workers, resumable.

The client plans only what grows with the output: the anchored output grid, its month axis
(from the index's partition columns) and one small value per tile the AOI meets. It writes the
store's template (metadata, coordinates, CRS), then runs one task per tile; each task opens the
index on its worker (cached per process), queries the records meeting its tile, reads them
onto the tile's GeoBox with ``Collection.get_xarray`` (any CRSs, resolutions, overview
levels), masks, reduces, writes its Zarr region and marks itself finished
(``workflows._tiles``). A rerun with the same arguments skips finished tiles; other arguments
raise; a killed worker's tiles run again elsewhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import shapely
import xarray as xr

from .. import schema as S
from ..plan.output_grid import grid_request
from ..read import query_geometries, read_bands, spatial_ref
from ..read.grouping import GROUPBY
from ._common import WorkflowStore, as_collection
from ._tiles import CompositeJob, IndexRef, run_tile
from .composite_plan import CompositeGrid, geobox_json, month_axis, output_grid, plan_tiles
from .reducers import Reducer, parse_mask, parse_reducer
from .tile_runs import run_tiles

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["composite", "CompositeReport", "default_report_path"]


@dataclass(frozen=True)
class CompositeReport:
    """What a composite run did.

    ``tiles_total`` tiles of the grid meet the AOI (``tiles_outside`` do not: never written,
    read as the fill value); of those, ``tiles_skipped`` were already finished, the rest were
    submitted, and ``tiles_written`` finished (``tiles_empty`` of them met no record) while
    ``tiles_failed`` did not (``errors``: the first ones; a rerun does them again).
    """

    out: str
    tiles_total: int
    tiles_written: int
    tiles_skipped: int
    tiles_empty: int
    tiles_failed: int
    tiles_submitted: int
    tiles_outside: int
    months: tuple[str, ...]
    variables: tuple[str, ...]
    shape: tuple[int, int]
    crs: str
    crs_epsg: int | None
    resolution: tuple[float, float]
    reducer: str
    seconds: float
    plan_seconds: float
    errors: tuple[dict[str, str], ...] = ()
    report_path: str | None = None

    @property
    def exit_code(self) -> int:
        """1 when tiles failed (rerun to do them), else 0."""
        return 1 if self.tiles_failed else 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the report (``exit_code`` included)."""
        out = {k: list(v) if isinstance(v, tuple) else v
               for k, v in dataclasses.asdict(self).items()}
        out["exit_code"] = self.exit_code
        return out


def _template(grid: CompositeGrid, months: Sequence[np.datetime64], variables: list[str],
              reducer: Reducer, tile_size: int) -> tuple[xr.Dataset, dict]:
    geobox = grid.geobox
    height, width = int(geobox.height), int(geobox.width)
    t = geobox.transform
    x = t.c + t.a * (np.arange(width) + 0.5)
    y = t.f + t.e * (np.arange(height) + 0.5)
    chunks = (1, min(tile_size, height), min(tile_size, width))
    data, encoding = {}, {}
    for name in variables:
        if name == "ndvi":
            dtype, fill = np.dtype(np.float32), np.float32(np.nan)
            what = f"NDVI of the monthly {reducer.label} of the red and near-infrared bands"
        else:
            dtype, fill, what = reducer.dtype, reducer.fill, reducer.describe(name)
        data[name] = xr.DataArray(
            da.full((len(months), height, width), fill, dtype=dtype, chunks=chunks),
            dims=("month", "y", "x"), attrs={"grid_mapping": "spatial_ref", "long_name": what,
                                             "reducer": reducer.label})
        # a count's 0 is a value, not missing: the array's fill is 0, but no CF _FillValue
        encoding[name] = {"chunks": chunks,
                          "_FillValue": None if dtype.kind == "u" else fill}
    coords = {"month": ("month", np.array(months, dtype="datetime64[M]").astype("datetime64[ns]")),
              "y": ("y", y), "x": ("x", x), "spatial_ref": spatial_ref(grid.crs, t)}
    return xr.Dataset(data, coords=coords), encoding


def _check(bands: Sequence[str] | str, tile_size: Any, groupby: Any, threads_per_tile: Any,
           aoi: Any, geobox: Any) -> list[str]:
    bands = [bands] if isinstance(bands, str) else list(bands)
    if not bands:
        raise ValueError("bands is empty; name the bands to composite")
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"tile_size must be a whole number of pixels >= 1, got {tile_size!r}")
    if groupby is not None and groupby not in GROUPBY:
        raise ValueError(f"groupby={groupby!r} is not a grouping a composite records; use None "
                         f"or one of {', '.join(map(repr, GROUPBY))}")
    if (isinstance(threads_per_tile, bool) or not isinstance(threads_per_tile, int)
            or threads_per_tile < 1):
        raise ValueError(f"threads_per_tile must be an int >= 1, got {threads_per_tile!r}")
    if aoi is None and geobox is None:
        raise ValueError("aoi= is required (or geobox=, to composite a whole grid)")
    return bands


def _write_report(report: CompositeReport, path: str | os.PathLike,
                  storage_options: dict | None) -> CompositeReport:
    from ..index.objectstore import put_atomic_url

    report = dataclasses.replace(report, report_path=os.fspath(path))
    put_atomic_url(report.report_path, json.dumps(report.to_dict(), indent=2,
                                                  default=str).encode(), storage_options)
    return report


def default_report_path(out: str | os.PathLike) -> str:
    """Where the command line writes a run's report: beside the store,
    ``<out>.composite-<UTC time>.json``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{os.fspath(out).rstrip('/')}.composite-{stamp}.json"


def composite(
    collection_or_path: Collection | str | os.PathLike,
    *,
    bands: Sequence[str],
    out: str | os.PathLike,
    aoi: Any = None,
    aoi_crs: Any = 4326,
    tile_size: int = 512,
    date_range: Sequence[Any] | None = None,
    crs: Any = None,
    resolution: Any = None,
    resampling: str = "nearest",
    geobox: Any = None,
    reducer: str = "median",
    mask: Any = None,
    groupby: str | None = "solar_day",
    rescale: bool = False,
    red: str | None = "B04",
    nir: str | None = "B08",
    ndvi: bool = True,
    all_touched: bool = False,
    client: Any = None,
    storage_options: dict | None = None,
    out_storage_options: dict | None = None,
    in_flight: int | None = None,
    threads_per_tile: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    report_path: str | os.PathLike | None = None,
    **filters: Any,
) -> CompositeReport:
    """Monthly composite of ``bands`` (+ ``ndvi``) over ``aoi`` on any grid, into Zarr ``out``.

    The output grid (``crs``, ``resolution``; default the CRS of most records and the finest
    native resolution) is anchored (pixel edges on multiples of the resolution) and cut into
    ``tile_size`` tiles, also the Zarr chunks. Each tile the AOI meets is one task on a worker:
    it queries the records meeting it, reads them onto its grid (``resampling``; quality band
    nearest), drops masked pixels, reduces each calendar month, writes its region and marks
    itself done, so a rerun with the same arguments skips finished tiles and a killed worker
    loses nothing.

    Parameters
    ----------
    collection_or_path : Collection, str or os.PathLike
        The index, or its path/URL. Workers open it again by path (once per process); a
        Collection that only lives in memory is sent to them whole.
    bands : sequence of str
        Bands to composite (enriched; any CRSs and resolutions among the records).
    out : str or os.PathLike
        The Zarr store to write (a path or an fsspec URL).
    aoi : geometry, optional
        Anything ``get_xarray`` accepts as a geometry (shapely, WKT, GeoJSON, bbox tuple);
        pixels outside it are NaN (0 for ``count``). Optional with ``geobox``.
    aoi_crs : CRS-like, default 4326
        CRS of ``aoi``'s coordinates.
    tile_size : int, default 512
        Output pixels per tile side (and per Zarr chunk side).
    date_range : (start, end), optional
        Only records in this range (ISO dates or datetimes, both included).
    crs, resolution, resampling, geobox
        The output grid, as ``get_xarray`` takes them (``geobox`` excludes ``crs`` and
        ``resolution``).
    reducer : str, default "median"
        ``"median"``, ``"mean"``, ``"min"``, ``"max"`` (NaN-ignoring, float32), ``"count"``
        (valid observations, uint16, 0 where none; no ``ndvi``) or a percentile ``"p<q>"``
        (e.g. ``"p90"``; numpy's linear interpolation).
    mask : dict or QualityMask, optional
        ``{"band": "SCL", "drop": [3, 8, 9, 10]}``: pixels whose quality band (read on the same
        grid with nearest resampling) holds one of these values are dropped before reducing.
    groupby : {"solar_day", "time", "id", None}, default "solar_day"
        Observations: one per satellite pass (records of a solar day fused first-valid), per
        equal datetime, per id, or one per record (None). A step counts in the calendar month
        (UTC) of its first record.
    rescale : bool, default False
        Reduce physical values (STAC scale/offset) instead of raw counts.
    red, nir : str or None, default "B04", "B08"
        Bands for the ``ndvi`` variable.
    ndvi : bool, default True
        Write ``ndvi`` of the reduced red and nir when both are among ``bands`` (not with
        ``count``).
    all_touched : bool, default False
        Keep every pixel the AOI touches, not only those whose centre it holds.
    client : distributed.Client, optional
        Where to run; default the active client, else local threads.
    storage_options, out_storage_options : dict, optional
        fsspec options for reading the COGs and for writing ``out``.
    in_flight : int, optional
        Tiles submitted at once (default: twice the cluster's threads; the cores locally).
    threads_per_tile : int, default 1
        Threads computing one tile's reads inside its task (1: the synchronous scheduler, on
        the task's own thread, as Dask gives one core per task). The next time block's
        requests always start before the current block decodes, so one thread does not wait
        for bytes; more threads only pay off on workers with idle cores.
    overwrite : bool, default False
        Replace an existing store; without it a store written with other arguments raises.
    progress : bool, default False
        A progress bar of tiles finished (with submitted and failed).
    report_path : str or os.PathLike, optional
        Also write the report as JSON there (the command line writes one by default).
    **filters
        Passed to ``Collection.subset`` (e.g. ``cloud_cover_lt=30``).

    Returns
    -------
    CompositeReport
        Tile counts (total, written, skipped, empty, failed, submitted, outside), months,
        variables, grid, reducer and times; ``exit_code`` 1 when tiles failed.

    Raises
    ------
    ValueError
        Naming the value: bad ``tile_size``, ``reducer``, ``mask``, ``groupby``, grid
        arguments, unknown or unenriched bands (the mask band too), an AOI that meets no
        record, or an existing store written with other arguments.
    """
    started = time.perf_counter()
    bands = _check(bands, tile_size, groupby, threads_per_tile, aoi, geobox)
    chosen = parse_reducer(reducer)
    quality = parse_mask(mask)
    request = grid_request(crs, resolution, resampling, geobox)
    collection = as_collection(collection_or_path)
    wanted = bands + ([quality.band] if quality is not None else [])
    source = read_bands(collection, wanted)
    stored = [source.bands[b] for b in bands]
    shape, src = None, None
    if aoi is not None:
        shapes, src = query_geometries(aoi, aoi_crs)
        shape = shapely.union_all(shapes)
    subset_args = {**({"date_range": date_range} if date_range is not None else {}), **filters}
    grid = output_grid(collection, shape, src, request, stored, subset_args)
    months = month_axis(collection.subset(bbox=grid.query_bbox, **subset_args))
    if not months:
        raise ValueError("no record meets the output grid (after the date range and filters)")
    with_ndvi = bool(ndvi and red in bands and nir in bands and not chosen.is_count)
    variables = bands + (["ndvi"] if with_ndvi else [])
    tiles = plan_tiles(grid.geobox, grid.aoi, tile_size)
    params = {
        "bands": bands, "aoi": None if shape is None else shapely.to_wkt(shape,
                                                                          rounding_precision=-1),
        "aoi_crs": None if src is None else src.to_string(), "tile_size": tile_size,
        "date_range": None if date_range is None else [str(v) for v in date_range],
        "red": red, "nir": nir, "ndvi": with_ndvi, "all_touched": all_touched,
        "filters": filters, "crs": None if request.crs is None else request.crs.to_wkt(),
        "resolution": request.resolution, "resampling": request.resampling,
        "geobox": None if geobox is None else geobox_json(geobox), "reducer": chosen.label,
        "mask": None if quality is None else quality.to_dict(), "groupby": groupby,
        "rescale": rescale,
    }
    month_labels = [str(m) for m in months]
    layout = {"grid": geobox_json(grid.geobox), "months": month_labels, "variables": variables}
    store = WorkflowStore(out, "composite", params, layout, out_storage_options)
    template, encoding = _template(grid, months, variables, chosen, tile_size)
    store.prepare(template, encoding, overwrite=overwrite)
    finished = store.done()
    # largest first (then row-major): the partial tiles at the grid's edges come last, so
    # the workers' last tasks are short and none waits long for the other
    todo = sorted((t for t in tiles if t.key not in finished),
                  key=lambda t: -t.height * t.width)
    job = CompositeJob(
        index=IndexRef.of(collection), bands=tuple(bands), reducer=chosen, mask=quality,
        ndvi=(red, nir) if with_ndvi else None, geobox=grid.geobox, aoi=grid.aoi,
        query_bbox=grid.query_bbox, months=tuple(month_labels),
        metadata_columns=tuple(S.metadata_column(source.bands[b]) for b in wanted),
        out=store.url, out_storage_options=out_storage_options,
        date_range=None if date_range is None else tuple(date_range),
        filters=dict(filters), resampling=request.resampling, groupby=groupby,
        rescale=rescale, all_touched=all_touched, storage_options=storage_options,
        threads_per_tile=threads_per_tile)
    planned = time.perf_counter() - started
    run = run_tiles(run_tile, todo, job, client=client, in_flight=in_flight,
                    progress=progress, name="composite")
    grid_tiles = (-(-int(grid.geobox.height) // tile_size)) * (-(-int(grid.geobox.width)
                                                                  // tile_size))
    res = grid.geobox.resolution
    report = CompositeReport(
        out=store.url, tiles_total=len(tiles), tiles_written=run.finished,
        tiles_skipped=len(tiles) - len(todo), tiles_empty=sum(o.empty for o in run.outcomes),
        tiles_failed=run.failed, tiles_submitted=run.submitted,
        tiles_outside=grid_tiles - len(tiles), months=tuple(month_labels),
        variables=tuple(variables), shape=(int(grid.geobox.height), int(grid.geobox.width)),
        crs=grid.crs.to_string(), crs_epsg=grid.crs.to_epsg(),
        resolution=(abs(float(res.x)), abs(float(res.y))), reducer=chosen.label,
        seconds=round(time.perf_counter() - started, 3), plan_seconds=round(planned, 3),
        errors=tuple(run.errors))
    if report_path is not None:
        report = _write_report(report, report_path, out_storage_options)
    return report
