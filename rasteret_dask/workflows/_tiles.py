"""One composite tile, start to finish, on whichever process runs it (a Dask worker or a
local thread): open the index (cached per process), query the records meeting the tile, read
them onto the tile's GeoBox through ``Collection.get_xarray`` (computed inside this task), drop
masked pixels, reduce each calendar month, write the tile's Zarr region and its marker.

The client ships one :class:`CompositeJob` (shared by every tile) and one small
:class:`~.composite_plan.Tile` per task; nothing here depends on what other tiles do, so a
tile rerun after a killed worker rewrites the same region with the same values.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import pyarrow as pa
import shapely
from odc.geo.geobox import GeoBox

from .. import schema as S
from ..plan.mask import geometry_mask
from ..read import select
from ..read.prefetch import prefetched_scheduler, start_fetches
from ._common import mark_done, memory_collection
from .composite_plan import Tile, lonlat_bbox
from .reducers import QualityMask, Reducer, ndvi_block
from .steps_reduce import reduce_steps

if TYPE_CHECKING:
    import xarray as xr

    from ..collection import Collection

__all__ = ["IndexRef", "CompositeJob", "TileOutcome", "run_tile", "open_index", "time_block",
           "TIME_BLOCK_BYTES", "MAX_TIME_BLOCK"]

TIME_BLOCK_BYTES = 64 << 20
"""About this many bytes of float32 pixels per read task of a tile (its time block)."""
MAX_TIME_BLOCK = 32
"""Time steps per read task at most."""


@dataclass(frozen=True)
class IndexRef:
    """How a worker opens the index: its path/URL, storage options, the name and data source
    the client's collection had, the version the client planned with and the collection's own
    filter; or, for an index that only lives in memory, the collection itself."""

    path: str | None
    version: int | None
    storage_options: str = "{}"  # JSON text, hashable for the per-process cache
    name: str | None = None
    data_source: str | None = None
    filter: Any = None  # a pyarrow.dataset.Expression or None
    collection: Any = None  # an in-memory Collection (path None)

    @classmethod
    def of(cls, collection: Collection) -> IndexRef:
        """The reference of ``collection`` (by path when it has one)."""
        if collection.path is None:
            return cls(None, None, collection=collection)
        options = json.dumps(collection.storage_options or {}, sort_keys=True, default=str)
        return cls(collection.path, collection.version, options, collection.name,
                   collection.data_source, collection.filter)

    def open(self, *, fresh: bool = False) -> Collection:
        """The collection (cached per process by path, options, name, data source and planned
        version); ``fresh`` opens the index again (its cached files were replaced)."""
        if self.path is None:
            return self.collection
        if fresh:
            open_index.cache_clear()
        collection = open_index(self.path, self.storage_options, self.name, self.data_source,
                                self.version)
        return collection if self.filter is None else collection.where(self.filter)


@functools.lru_cache(maxsize=8)
def open_index(path: str, storage_options: str, name: str | None, data_source: str | None,
               version: int | None) -> Collection:
    """``load(path)`` once per process and planned version (``version`` keys the cache: a run
    planned on a later version opens the index again). Tiles read the version current when
    this process first opened it."""
    from ..collection import load

    return load(path, name=name, data_source=data_source,
                storage_options=json.loads(storage_options) or None)


@dataclass(frozen=True)
class CompositeJob:
    """Everything a tile needs, shared by all tiles of a run (shipped once per worker)."""

    index: IndexRef
    bands: tuple[str, ...]
    reducer: Reducer
    mask: QualityMask | None
    ndvi: tuple[str, str] | None  # (red, nir) when the ndvi variable is written
    geobox: GeoBox
    aoi: shapely.Geometry  # in the output CRS
    query_bbox: tuple[float, float, float, float]  # CRS84 bbox of the grid
    months: tuple[str, ...]  # "YYYY-MM", the store's month axis
    metadata_columns: tuple[str, ...]  # {band}_metadata of the bands, then the mask band's
    out: str
    out_storage_options: dict | None = None
    date_range: tuple[Any, Any] | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    resampling: str = "nearest"
    groupby: str | None = "solar_day"
    rescale: bool = False
    all_touched: bool = False
    storage_options: dict | None = None
    threads_per_tile: int = 1

    @property
    def variables(self) -> tuple[str, ...]:
        """The store's variables: the bands, then ``ndvi`` when written."""
        return self.bands + (("ndvi",) if self.ndvi is not None else ())


@dataclass(frozen=True)
class TileOutcome:
    """What one tile did: empty (no record met it), time steps read, seconds."""

    key: str
    empty: bool
    steps: int
    seconds: float


def _inside(job: CompositeJob, geobox: GeoBox) -> np.ndarray:
    """(height, width) bool: True on the pixels of the tile the AOI holds (or touches)."""
    left, bottom, right, top = geobox.boundingbox.bbox
    half_x, half_y = abs(geobox.resolution.x) / 2, abs(geobox.resolution.y) / 2
    centres = shapely.box(left + half_x, bottom + half_y, right - half_x, top - half_y)
    if shapely.contains_properly(job.aoi, centres):
        return np.ones(geobox.shape, dtype=bool)  # every pixel centre inside: nothing to burn
    pad = 2 * max(abs(geobox.resolution.x), abs(geobox.resolution.y))
    clipped = shapely.clip_by_rect(job.aoi, left - pad, bottom - pad, right + pad, top + pad)
    if shapely.is_empty(clipped):
        return np.zeros(geobox.shape, dtype=bool)
    return geometry_mask([clipped], geobox.shape, geobox.transform,
                         all_touched=job.all_touched, invert=True)


def _query(job: CompositeJob, collection: Collection, geobox: GeoBox) -> pa.Table:
    """The index rows whose bbox meets the tile (and the grid), in the date range and
    filters: row groups whose bbox statistics miss the tile are never read."""
    west, south, east, north = lonlat_bbox(geobox)
    qw, qs, qe, qn = job.query_bbox
    bbox = (max(west, qw), max(south, qs), min(east, qe), min(north, qn))
    if bbox[0] > bbox[2] or bbox[1] > bbox[3]:
        return pa.table({})
    subset = collection.subset(bbox=bbox, date_range=job.date_range, **job.filters)
    columns = [c for c in subset.schema.names
               if not c.endswith(S.METADATA_SUFFIX) or c in job.metadata_columns]
    return subset.to_table(columns=columns)


def _selected(collection: Collection, geobox: GeoBox, bands: Sequence[str]) -> set[str]:
    """Ids of the enriched records a read of ``bands`` onto ``geobox`` would take."""
    shape = shapely.box(*geobox.boundingbox.bbox)
    (selection,) = select(collection, shape, list(bands), geometry_crs=geobox.crs.to_wkt())
    return {r.id for records in selection.records_by_band.values() for r in records}


def _with_quality(table: pa.Table, ids: set[str], column: str) -> bool:
    """Whether any of the records ``ids`` has metadata in ``column`` (the quality band's)."""
    if column not in table.column_names:
        return False
    chosen = [i in ids for i in table[S.ID].to_pylist()]
    return any(v is not None for v, c in zip(table[column].to_pylist(), chosen, strict=True) if c)


def _quality_steps(data: xr.Dataset, quality: xr.Dataset | None) -> list[int | None]:
    """For each time step of ``data``, the quality read's step of the same records (time and
    ids), or None when the quality band has none."""
    if quality is None:
        return [None] * data.sizes["time"]
    where = {(t, str(i)): k for k, (t, i) in enumerate(zip(quality["time"].values,
                                                             quality["id"].values, strict=True))}
    return [where.get((t, str(i))) for t, i in zip(data["time"].values, data["id"].values,
                                                   strict=True)]


def time_block(shape: tuple[int, int]) -> int:
    """Time steps per read task of a tile of ``shape``: about :data:`TIME_BLOCK_BYTES` of
    float32 pixels, at most :data:`MAX_TIME_BLOCK` (a task warps the revisits of a grid among
    its steps together)."""
    step = max(1, shape[0] * shape[1] * 4)
    return int(min(MAX_TIME_BLOCK, max(1, TIME_BLOCK_BYTES // step)))


def _reduce_month(job: CompositeJob, out: dict[str, np.ndarray], month: int,
                  held: list[tuple[dict[str, np.ndarray], np.ndarray | None]],
                  nodata: dict[str, Any]) -> None:
    """Reduce one month's steps (raw pixels per band, and the quality mask's dropped pixels
    or None) into ``out[band][month]``."""
    dropped = [flags for _, flags in held]
    for band in job.bands:
        out[band][month] = reduce_steps(job.reducer, [values[band] for values, _ in held],
                                        nodata[band], dropped)


def _hold(job: CompositeJob, held: dict[int, list], steps: list[int],
          paired: list[int | None], start: int, stop: int, part: xr.Dataset,
          q_part: xr.Dataset | None) -> None:
    """Keep the computed steps ``start:stop`` (raw pixels per band, dropped pixels or None)
    under their month in ``held``."""
    flags = None
    if q_part is not None:
        assert job.mask is not None
        flags = iter(job.mask.dropped(q_part[job.mask.band].values))
    for j, k in enumerate(range(start, stop)):
        dropped = next(flags) if flags is not None and paired[k] is not None else None
        if steps[k] != -1:
            held.setdefault(steps[k], []).append(
                ({band: part[band].values[j] for band in job.bands}, dropped))


def _reduce(job: CompositeJob, data: xr.Dataset, quality: xr.Dataset | None,
            shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """(month, y, x) arrays of every variable: the steps computed block by block (the read's
    time chunks), each month masked and reduced as soon as its last step is in."""
    reducer, n = job.reducer, len(job.months)
    month_of = {m: k for k, m in enumerate(job.months)}
    steps = [month_of.get(str(t)[:7], -1) for t in data["time"].values.astype("datetime64[M]")]
    last = {m: k for k, m in enumerate(steps)}
    paired = _quality_steps(data, quality)
    nodata = {band: data[band].attrs.get("nodata") for band in job.bands}
    out = {b: np.full((n, *shape), reducer.fill, reducer.dtype) for b in job.bands}
    blocks, start = [], 0
    for size in data.chunks["time"]:
        if any(steps[k] != -1 for k in range(start, start + size)):
            blocks.append((start, start + size))
        start += size

    def pieces(block: tuple[int, int]) -> tuple[xr.Dataset, xr.Dataset | None]:
        present = [q for q in paired[block[0]:block[1]] if q is not None]
        part = data.isel(time=slice(*block))
        q_part = quality.isel(time=present) if quality is not None and present else None
        return part, q_part

    held: dict[int, list] = {}
    # the next block's requests start before this one is computed: its bytes arrive while
    # this block decodes, on this task's one thread
    current = pieces(blocks[0]) if blocks else None
    started = start_fetches(*current) if current is not None else {}
    for k, block in enumerate(blocks):
        upcoming = pieces(blocks[k + 1]) if k + 1 < len(blocks) else None
        ahead = start_fetches(*upcoming, started=started) if upcoming is not None else {}
        part, q_part = dask.compute(*current, scheduler=prefetched_scheduler(
            started, job.threads_per_tile))
        current, started = upcoming, ahead
        _hold(job, held, steps, paired, block[0], block[1], part, q_part)
        for month in [m for m in held if last[m] < block[1]]:
            _reduce_month(job, out, month, held.pop(month), nodata)
    if job.ndvi is not None:
        red, nir = job.ndvi
        out["ndvi"] = ndvi_block(out[red], out[nir])
    return out


def _read(job: CompositeJob, collection: Collection, geobox: GeoBox
          ) -> tuple[dict[str, np.ndarray] | None, int]:
    """The tile's reduced arrays (None when no enriched record meets it) and steps read."""
    table = _query(job, collection, geobox)
    if table.num_rows == 0:
        return None, 0
    rows = memory_collection(collection, table)
    ids = _selected(rows, geobox, job.bands)
    if not ids:
        return None, 0
    options = {"geobox": geobox, "groupby": job.groupby, "storage_options": job.storage_options,
               "chunks": {"y": int(geobox.height), "x": int(geobox.width),
                          "time": time_block(geobox.shape)}}
    data = rows.get_xarray(None, list(job.bands), resampling=job.resampling,
                           rescale=job.rescale, **options)
    quality = None
    if job.mask is not None and _with_quality(table, ids, job.metadata_columns[-1]):
        quality = rows.get_xarray(None, [job.mask.band], resampling="nearest", **options)
    return _reduce(job, data, quality, geobox.shape), data.sizes["time"]


def _write(job: CompositeJob, tile: Tile, arrays: dict[str, np.ndarray]) -> None:
    """Write the tile's region of every variable (its own Zarr chunks: no other tile's)."""
    import zarr

    kwargs = {"storage_options": job.out_storage_options} if job.out_storage_options else {}
    group = zarr.open_group(job.out, mode="r+", **kwargs)
    rows = slice(tile.row, tile.row + tile.height)
    cols = slice(tile.col, tile.col + tile.width)
    for name, values in arrays.items():
        group[name][:, rows, cols] = values


def run_tile(tile: Tile, job: CompositeJob) -> TileOutcome:
    """Composite one tile and write it: read, mask, reduce, write its region, mark it done.

    A tile no enriched record meets (or outside the AOI) is written as the reducer's fill
    (NaN, or 0 for ``count``) without reading any COG. Raises what the read raises
    (``RasterReadError`` names the record, band and href); the tile is then not marked.
    """
    from .. import IndexChangedError

    started = time.perf_counter()
    geobox = tile.geobox(job.geobox)
    inside = _inside(job, geobox)
    arrays, steps = None, 0
    if inside.any():
        try:
            arrays, steps = _read(job, job.index.open(), geobox)
        except IndexChangedError:  # this process's cached version was replaced meanwhile
            arrays, steps = _read(job, job.index.open(fresh=True), geobox)
    reducer = job.reducer
    if arrays is None:
        arrays = {name: np.full((len(job.months), *geobox.shape), reducer.fill,
                                np.float32 if name == "ndvi" else reducer.dtype)
                  for name in job.variables}
    elif not inside.all():
        for name, values in arrays.items():
            values[:, ~inside] = np.float32(np.nan) if name == "ndvi" else reducer.fill
    _write(job, tile, arrays)
    mark_done(job.out, tile.key, job.out_storage_options,
              {"window": tile.window, "empty": steps == 0, "steps": steps})
    return TileOutcome(tile.key, steps == 0, steps, round(time.perf_counter() - started, 4))
