"""The floor of a read into an output grid: what any reader must spend on this machine.

Every tile the output needs, at the level GDAL would read (the coarsest whose pixels are no
larger than the output's), is read into memory first; a timed run then decodes them with
imagecodecs and pastes them (same grid) or resamples them (``rasterio.warp.reproject`` on
in-memory arrays, GDAL's warper as odc-stac uses it) into the output, one output slice
(time step, band) per job on ``os.cpu_count()`` threads, the sources of a slice fused
first-valid in their order. The tiles must be deflate + horizontal predictor (``decode_tile``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from odc.geo.geobox import GeoBox
from odc.geo.overlap import compute_reproject_roi

from _common import LATENCY, decode_tile, tile_bytes  # isort: skip  (the scripts' folder)


@dataclass(frozen=True)
class Source:
    """One file's part in a read: the level GDAL would read, its tiles, and their pixels' grid."""

    path: Path
    level: int
    tile: int  # tile side in pixels
    rows: range
    cols: range
    window: GeoBox  # the tiles' pixels, clipped to the level's image
    full_res_bytes: int  # the level-0 tiles of the same area

    @property
    def tiles(self) -> int:
        return len(self.rows) * len(self.cols)


def _tile_span(roi: tuple[slice, slice], tile: int) -> tuple[range, range]:
    ys, xs = roi
    return (range(ys.start // tile, (ys.stop - 1) // tile + 1),
            range(xs.start // tile, (xs.stop - 1) // tile + 1))


def plan_source(path: Path, gbox: GeoBox, out: GeoBox) -> Source | None:
    """The part of ``path`` (grid ``gbox``) that ``out`` needs, or None where they miss."""
    full = compute_reproject_roi(gbox, out)
    if any(s.stop <= s.start for s in full.roi_src):
        return None
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tile = page.tilelength
        shapes = [(p.imagelength, p.imagewidth) for p in tif.pages]
        rows, cols = _tile_span(full.roi_src, tile)
        across = -(-page.imagewidth // page.tilewidth)
        full_res_bytes = sum(page.databytecounts[r * across + c] for r in rows for c in cols)
    level = max(i for i, (_, w) in enumerate(shapes) if shapes[0][1] / w <= full.scale * 1.001)
    height, width = shapes[level]
    level_gbox = gbox.zoom_to(shapes[level])
    rows, cols = _tile_span(compute_reproject_roi(level_gbox, out).roi_src, tile)
    window = level_gbox[rows.start * tile:min(rows.stop * tile, height),
                        cols.start * tile:min(cols.stop * tile, width)]
    return Source(path, level, tile, rows, cols, window, full_res_bytes)


def _decode(source: Source, blobs: Sequence[bytes]) -> np.ndarray:
    """The source's tiles decoded into one array of its window."""
    mosaic = np.empty(source.window.shape, np.uint16)
    tile = np.empty((source.tile, source.tile), np.uint16)
    blob = iter(blobs)
    for i in range(len(source.rows)):
        for j in range(len(source.cols)):
            decode_tile(next(blob), tile)
            y, x = i * source.tile, j * source.tile
            part = mosaic[y:y + source.tile, x:x + source.tile]
            part[...] = tile[:part.shape[0], :part.shape[1]]
    return mosaic


def _fuse(source: Source, pixels: np.ndarray, out: GeoBox, resampling: str,
          dst: np.ndarray) -> None:
    """Paste (same grid) or resample ``pixels`` into ``dst`` where ``dst`` is still nodata (0)."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    roi = compute_reproject_roi(source.window, out)
    if roi.paste_ok:
        part = pixels[roi.roi_src]
    else:
        part = np.zeros(out[roi.roi_dst].shape, np.uint16)
        reproject(pixels, part, src_transform=source.window.transform, src_crs=source.window.crs,
                  dst_transform=out[roi.roi_dst].transform, dst_crs=out.crs, src_nodata=0,
                  dst_nodata=0, resampling=Resampling[resampling])
    view = dst[roi.roi_dst]
    np.copyto(view, part, where=view == 0)


@dataclass(frozen=True)
class Job:
    """One output slice (time step, band) and its sources' tiles, in fusing order."""

    step: int
    band: str
    parts: tuple[tuple[Source, tuple[bytes, ...]], ...]


@dataclass
class Floor:
    """The floor of one read: the needed tiles in memory, the output, the timed runs."""

    out: GeoBox
    resampling: str
    jobs: list[Job]
    output: dict[str, np.ndarray]  # band -> (time, y, x) uint16
    decode_seconds: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """One first-byte latency plus the best run."""
        return LATENCY + min(self.decode_seconds)

    @property
    def tiles(self) -> int:
        return sum(source.tiles for job in self.jobs for source, _ in job.parts)

    @property
    def compressed_bytes(self) -> int:
        return sum(len(b) for job in self.jobs for _, blobs in job.parts for b in blobs)

    @property
    def full_res_bytes(self) -> int:
        return sum(source.full_res_bytes for job in self.jobs for source, _ in job.parts)

    def _slice(self, job: Job) -> None:
        dst = self.output[job.band][job.step]
        dst[...] = 0
        for source, blobs in job.parts:
            _fuse(source, _decode(source, blobs), self.out, self.resampling, dst)

    def run(self) -> None:
        """Decode and paste or resample every needed tile on every core, timed."""
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            started = time.perf_counter()
            list(pool.map(self._slice, self.jobs))
            self.decode_seconds.append(time.perf_counter() - started)


def warp_floor(slices: Sequence[tuple[int, str, Sequence[tuple[Path, GeoBox]]]], out: GeoBox,
               resampling: str) -> Floor:
    """The floor of ``slices`` (time step, band, its files and their grids in fusing order)
    read into ``out`` with GDAL's ``resampling``; the tiles are read into memory here."""
    jobs = []
    for step, band, files in slices:
        sources = [plan_source(path, gbox, out) for path, gbox in files]
        jobs.append(Job(step, band, tuple(
            (s, tuple(tile_bytes(s.path, s.level, s.rows, s.cols)))
            for s in sources if s is not None)))
    steps = 1 + max(job.step for job in jobs)
    output = {band: np.zeros((steps, *out.shape), np.uint16)
              for band in dict.fromkeys(job.band for job in jobs)}
    return Floor(out, resampling, jobs, output)
