"""One warped output chunk on a worker: fetch its tiles, decode each record's window, put the
window onto the chunk (a copy when aligned, GDAL's warper otherwise), fuse first-valid.

Resampling is GDAL's warper on in-memory arrays (``rasterio.warp.reproject``, its default
options), run as odc-stac runs it so that values agree with odc-stac's: the part of the chunk a
record reaches is odc-geo's ``compute_reproject_roi`` of the record's image and the chunk, a
record on the chunk's grid up to a sub-pixel shift (any shift for nearest, 0.05 pixel
otherwise) is pasted, every other one is warped into that part only. Every tile of the chunk is requested at once; each record's
window is decoded as soon as its own tiles are in (the next records' bytes keep arriving).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import shapely
from affine import Affine

from ..decode.spec import fill_value
from ..io import ByteRange, RangeReader
from ..io.fetch import Payload
from ..plan.mask import geometry_mask
from .chunks import RasterReadError, decode_chunk, mask_validity
from .failures import TileFailures
from .pending import PendingPayloads
from .plan import ChunkWork
from .warp_index import gather_nearest, index_map
from .warp_sources import SourceRead, WarpChunk, WarpParams

__all__ = ["read_warped_chunk", "decode_window", "source_region", "warp_window",
           "area_of_interest", "fill_chunk", "stack_steps", "block_task", "time_blocks",
           "fetch_warp_group", "GroupView"]


def fetch_warp_group(reader: RangeReader, ranges: tuple[ByteRange, ...],
                     labels: tuple[str, ...]) -> PendingPayloads:
    """Task: start fetching the byte ranges of several warped chunks at once and return
    without waiting (each chunk's task waits for its own ranges only)."""
    nbytes = sum(r.end - r.start for r in ranges)
    return PendingPayloads(reader.submit(ranges), labels, nbytes)


class GroupView:
    """One chunk's view of its fetch group: the chunk's range ``i`` is the group's
    ``index[i]`` (tiles shared by neighbouring chunks are fetched once)."""

    __slots__ = ("payloads", "index")

    def __init__(self, payloads: PendingPayloads, index: tuple[int, ...]) -> None:
        self.payloads = payloads
        self.index = index

    def get(self, i: int) -> Payload:
        return self.payloads.get(self.index[i])


def fill_chunk(shape: tuple[int, int], dtype: str, fill: float, steps: int = 1) -> np.ndarray:
    """A (steps, h, w) chunk no record reaches."""
    return np.full((steps, *shape), fill, np.dtype(dtype))


def stack_steps(steps: list[np.ndarray]) -> np.ndarray:
    """Task: the (n, h, w) chunk of n time steps computed one by one."""
    return steps[0] if len(steps) == 1 else np.concatenate(steps, axis=0)


def block_task(steps: list[tuple | None], shape: tuple[int, int], dtype: str,
               fill: float) -> tuple:
    """The task of one (time block, row, col) chunk from its time steps' tasks (None: a step
    no record reaches): one fill when no step has work, else the steps stacked."""
    if len(steps) == 1:
        return (fill_chunk, shape, dtype, fill) if steps[0] is None else steps[0]
    if all(step is None for step in steps):
        return (fill_chunk, shape, dtype, fill, len(steps))
    return (stack_steps, [(fill_chunk, shape, dtype, fill) if step is None else step
                          for step in steps])


def time_blocks(groups: int, size: int) -> list[range]:
    """The groups of each time chunk: ``size`` consecutive groups (the last may be fewer)."""
    return [range(start, min(start + size, groups)) for start in range(0, groups, size)]


def _missing(out: np.ndarray, fill: float, into: np.ndarray | None = None) -> np.ndarray:
    """Where ``out`` holds ``fill`` (NaN for a NaN fill), into ``into`` when given."""
    if np.isnan(fill):
        return np.isnan(out, out=into) if into is not None else np.isnan(out)
    return np.equal(out, fill, out=into) if into is not None else out == fill


def _present(values: np.ndarray, fill: float) -> np.ndarray:
    """A new bool array: True where ``values`` does not hold ``fill``."""
    present = _missing(values, fill)
    return np.logical_not(present, out=present)


def decode_window(payloads: GroupView, source: SourceRead, failures: TileFailures | None
                  ) -> tuple[np.ndarray, float, np.ndarray | None]:
    """The source's window decoded (h, w), its nodata fill, and its pixels' validity by the
    record's internal mask (None without one). With a nodata value, masked pixels are set to
    it (so the warper leaves them out as nodata)."""
    dtype = np.dtype(source.spec.dtype).newbyteorder("=")
    fill = fill_value(dtype, source.nodata)
    work = ChunkWork(source.spec, source.shape, fill, source.sample, source.tiles, source.label)
    window = decode_chunk(payloads, work, None, failures)[0]
    if source.mask is None:
        return window, fill, None
    valid = mask_validity(payloads, source.mask, source.shape, source.label, failures)
    if source.nodata is not None:
        window[~valid] = fill
    return window, fill, valid


@functools.lru_cache(maxsize=512)
def _reproject_roi(image: tuple[int, int, tuple[float, ...]], crs: str,
                   shape: tuple[int, int], transform: tuple[float, ...], dst_crs: str,
                   ttol: float) -> Any:
    """odc-geo's ``compute_reproject_roi`` of a record's image onto a chunk, once per process
    for every record of the same image grid (a tile's revisits) and chunk."""
    from odc.geo.geobox import GeoBox
    from odc.geo.overlap import compute_reproject_roi

    height, width, image_transform = image
    return compute_reproject_roi(GeoBox((height, width), Affine(*image_transform), crs),
                                 GeoBox(shape, Affine(*transform), dst_crs), ttol=ttol)


def source_region(source: SourceRead, chunk: WarpChunk, params: WarpParams
                  ) -> tuple[tuple[slice, slice], Any]:
    """The chunk's region the record reaches, and odc-geo's reprojection info for it (the
    whole chunk, without info, for a record georeferenced by ground control points: GDAL's
    warper leaves the pixels its window does not reach)."""
    if source.gcps is not None:
        return (slice(0, chunk.shape[0]), slice(0, chunk.shape[1])), None
    info = _reproject_roi(source.image, source.crs, chunk.shape, chunk.transform, params.crs,
                          0.9 if params.resampling == "nearest" else 0.05)
    return info.roi_dst, info


@functools.lru_cache(maxsize=512)
def area_of_interest(shape: tuple[int, int], transform: tuple[float, ...], crs: str
                     ) -> str | None:
    """GDAL's area of interest (``AREA_OF_INTEREST`` of its image transformer) for warps onto
    a chunk: the chunk's extent (its outline, 16 points an edge) in the geographic CRS of
    ``crs``, as "west,south,east,north" degrees; None when it cannot be computed (GDAL then
    takes the source array's extent).

    The coordinate operation GDAL chooses for a warp is searched in the PROJ database for
    the area of interest (several milliseconds) and cached by it. Left to GDAL, the area is
    each source window's extent, different for every record, so every warp searches again;
    the chunk's extent holds every point a warp onto it transforms and is the same for all
    its records of one CRS, so a chunk searches once per source CRS.
    """
    import pyproj

    height, width = shape
    t = Affine(*transform)
    edge = np.linspace(0.0, 1.0, 16)
    cols = np.concatenate([edge * width, np.full(16, width), edge[::-1] * width, np.zeros(16)])
    rows = np.concatenate([np.zeros(16), edge * height, np.full(16, height), edge[::-1] * height])
    xs, ys = t @ (cols, rows)
    try:
        src = pyproj.CRS.from_user_input(crs)
        geographic = src.geodetic_crs
        if geographic is None:
            return None
        lon, lat = _geographic_transformer(src.to_wkt(), geographic.to_wkt()).transform(
            xs, ys, errcheck=False)
    except pyproj.exceptions.ProjError:
        return None
    lon, lat = np.asarray(lon), np.asarray(lat)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.all():
        return None
    west, east, south, north = lon.min(), lon.max(), lat.min(), lat.max()
    if east - west > 180 or max(abs(west), abs(east)) > 180 or max(abs(south), abs(north)) > 90:
        return None  # across the antimeridian or off the globe: left to GDAL
    return ",".join(repr(float(v)) for v in (west, south, east, north))


@functools.lru_cache(maxsize=64)
def _geographic_transformer(src_wkt: str, geographic_wkt: str) -> Any:
    import pyproj

    return pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(src_wkt),
                                       pyproj.CRS.from_wkt(geographic_wkt), always_xy=True)


def _pasted(window: np.ndarray, source: SourceRead, roi_src: tuple[slice, slice]
            ) -> np.ndarray | None:
    """The full-resolution pixels ``roi_src`` cut from the window, or None when the window
    does not hold them all."""
    r0, c0 = source.origin
    rows, cols = roi_src
    a, b, c, d = rows.start - r0, rows.stop - r0, cols.start - c0, cols.stop - c0
    if a < 0 or c < 0 or b > window.shape[0] or d > window.shape[1]:
        return None
    return window[a:b, c:d]


def warp_window(window: np.ndarray, source: SourceRead, fill: float, chunk: WarpChunk,
                params: WarpParams, roi: tuple[slice, slice],
                valid: np.ndarray | None = None) -> np.ndarray:
    """The window resampled onto the chunk's region ``roi`` (pixels it does not reach =
    ``fill``). A record without nodata whose internal mask marks pixels not ``valid`` gives
    the mask to the warper as an alpha band of 0 and the dtype's top value, which leaves them
    out exactly as GDAL's warper leaves out a dataset's mask; a record with nodata has them
    set to nodata already. A record georeferenced by ground control points is located by
    GDAL's GCP transformer.

    A (n, h, w) ``window`` holds the windows of n records on the same grid as ``source``'s
    (same CRS, transform, nodata), warped in one call as n bands whose nodata GDAL weighs
    band by band (``UNIFIED_SRC_NODATA=NO``); returns (n, h', w').

    ``nearest`` (without GCPs or an alpha band) takes each pixel GDAL's warper picks through
    the index map of the two grids (:mod:`.warp_index`): GDAL's values, one warp per grid
    pair rather than per record and band."""
    from rasterio.control import GroundControlPoint
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    rows, cols = roi
    dst = Affine(*chunk.transform) @ Affine.translation(cols.start, rows.start)
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    where: dict[str, Any] = {"src_transform": Affine(*source.transform)}
    aoi = area_of_interest(chunk.shape, chunk.transform, params.crs)
    if aoi is not None:
        where["AREA_OF_INTEREST"] = aoi
    if source.gcps is not None:
        where = {"gcps": [GroundControlPoint(*g) for g in source.gcps]}
    alpha = (window.ndim == 2 and valid is not None and source.nodata is None
             and not valid.all())
    if params.resampling == "nearest" and source.gcps is None and not alpha:
        extra = tuple(sorted((k, v) for k, v in where.items() if k != "src_transform"))
        picks = index_map(window.shape[-2:], tuple(source.transform), source.crs, shape,
                          tuple(dst)[:6], params.crs, extra)
        return gather_nearest(window, fill, picks)
    options: dict[str, Any] = {}
    batched = window.ndim == 3
    if batched:
        options = {"UNIFIED_SRC_NODATA": "NO"}
        shape = (window.shape[0], *shape)
    elif alpha:
        top = np.iinfo(window.dtype).max if window.dtype.kind in "iu" else 255
        window = np.stack([window, np.where(valid, top, 0).astype(window.dtype)])
        options = {"src_alpha": 2, "SRC_ALPHA_MAX": top}
        shape = (2, *shape)
    layer = np.full(shape, fill, window.dtype)
    reproject(window, layer, src_crs=source.crs,
              src_nodata=fill if source.nodata is not None else None,
              dst_transform=dst, dst_crs=params.crs, dst_nodata=fill,
              resampling=Resampling[params.resampling], init_dest_nodata=True, **where,
              **options)
    return layer if layer.ndim == 2 or batched else layer[0]


def _valid(values: np.ndarray, fill: float, source: SourceRead,
           masked: np.ndarray | None) -> np.ndarray:
    """Which pixels of a copied window are valid: not nodata (every pixel without a nodata
    value), and not left out by the record's internal mask (``masked``: its validity)."""
    valid = (_present(values, fill) if source.nodata is not None
             else np.ones(values.shape, bool))
    return valid if masked is None else valid & masked


def _physical(values: np.ndarray, valid: np.ndarray, source: SourceRead) -> np.ndarray:
    """float32 ``values * scale + offset`` (stackstac's rescale), NaN where not ``valid``."""
    out = values.astype("float32")
    if source.scale is not None:
        out *= np.float32(source.scale)
    if source.offset is not None:
        out += np.float32(source.offset)
    out[~valid] = np.nan
    return out


def _fuse(out: np.ndarray, missing: np.ndarray, layer: np.ndarray, valid: np.ndarray,
          source: SourceRead, chunk: WarpChunk, rescale: bool, rows: slice, cols: slice
          ) -> bool:
    """First-valid: pixels of ``out[rows, cols]`` still missing take ``layer``'s valid ones.

    ``missing`` is where ``out`` holds the chunk's fill, kept up to date here; ``valid`` (a
    new array of the caller's) is overwritten. Returns whether any pixel is still missing."""
    region, gaps = out[rows, cols], missing[rows, cols]
    values = _physical(layer, valid, source) if rescale else layer
    take = np.logical_and(gaps, valid, out=valid)
    np.copyto(region, values, where=take, casting="unsafe")
    _missing(region, chunk.fill, into=gaps)  # a valid value may equal the fill
    return bool(missing.any())


def _outside(chunk: WarpChunk, params: WarpParams) -> np.ndarray | None:
    """The chunk's pixels outside the query geometry (True), or None when none is."""
    if params.geometry is None:
        return None
    t = Affine(*chunk.transform)
    height, width = chunk.shape
    x0, y0 = t @ (0.5, 0.5)
    x1, y1 = t @ (width - 0.5, height - 0.5)
    centres = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    if shapely.contains_properly(params.geometry, centres):
        return None
    outside = geometry_mask([params.geometry], chunk.shape, t,
                            all_touched=params.all_touched)
    return outside if outside.any() else None


def read_warped_chunk(payloads: PendingPayloads | None, chunk: WarpChunk,
                      index: tuple[int, ...], params: WarpParams,
                      failures: TileFailures | None = None,
                      layers: Mapping[int, np.ndarray] | None = None,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Task: the (1, h, w) array of one warped chunk of one band and time group, from its
    fetch group's ``payloads`` (the chunk's range ``i`` is the group's ``index[i]``).
    ``layers`` holds, by position in ``chunk.sources``, records already warped onto their
    region of the chunk (:func:`rasteret_dask.read.warp_steps.read_warped_steps` warps
    records on the same grid together).

    A tile that cannot be fetched or decoded raises :class:`RasterReadError` naming record,
    band and href, or with ``failures`` is reported and read as nodata. ``out`` is a (h, w)
    array of the chunk's dtype to read into (a step of a block); the result is a view of it.
    """
    if out is None:
        out = np.empty(chunk.shape, np.dtype(chunk.dtype))
    out.fill(chunk.fill)
    if chunk.error is not None:
        refused = RasterReadError(chunk.error)
        if failures is None:
            raise refused
        failures.report(refused)
        return out[np.newaxis]
    view = GroupView(payloads, index)
    missing = np.ones(chunk.shape, bool)  # out holds the fill everywhere
    for k, source in enumerate(chunk.sources):
        if layers is not None and k in layers:
            rows, cols = source_region(source, chunk, params)[0]
            layer = layers[k]
            if not _fuse(out, missing, layer,
                         _present(layer, fill_value(layer.dtype, source.nodata)), source,
                         chunk, params.rescale, rows, cols):
                break
            continue
        window, fill, masked = decode_window(view, source, failures)
        if source.placement is not None:
            r0, r1, c0, c1 = source.placement
            # a copied window is all image: without nodata every pixel is valid but the
            # ones its mask leaves out
            valid = _valid(window, fill, source, masked)
            left = _fuse(out, missing, window, valid, source, chunk, params.rescale,
                         slice(r0, r1), slice(c0, c1))
        else:
            roi, info = source_region(source, chunk, params)
            rows, cols = roi
            if rows.stop <= rows.start or cols.stop <= cols.start:
                continue
            pasted = None
            if info is not None and info.paste_ok and info.read_shrink == 1 \
                    and source.level == 0:
                pasted = _pasted(window, source, info.roi_src)
            if pasted is not None:
                cut = None if masked is None else _pasted(masked, source, info.roi_src)
                left = _fuse(out, missing, pasted, _valid(pasted, fill, source, cut), source,
                             chunk, params.rescale, rows, cols)
            else:
                # the warper marks pixels the image does not reach with ``fill``
                layer = warp_window(window, source, fill, chunk, params, roi, masked)
                left = _fuse(out, missing, layer, _present(layer, fill), source, chunk,
                             params.rescale, rows, cols)
        if not left:
            break  # every pixel has its first valid value
    outside = _outside(chunk, params)
    if outside is not None:
        out[outside] = chunk.fill
    return out[np.newaxis]

