"""The floor of part (a) of ``scale_bench.py``: what any reader of the composite must spend on
this machine, from the archive's layout alone (no read).

Each output tile reads, for every record whose image meets it and every band, the overview
level odc-stac's rule picks for the output pixel (``tiff.levels.choose_level``): one tile of
that level, one request. The floor is those requests' tiles decoded with imagecodecs' fastest
path (libdeflate, then the predictor) on every core, plus the server's CPU per request (as
measured in the run) on the same cores. Decoding is timed in CPU seconds of one thread
(imagecodecs releases the GIL: cores decode independently), so other processes' load does not
count.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import imagecodecs
import numpy as np
import pyproj
import shapely

from rasteret_dask.testing.continental import ContinentalArchive
from rasteret_dask.testing.continental_layout import mgrs_tiles, passes
from rasteret_dask.tiff.levels import choose_level

from _common import decode_tile, tile_bytes  # isort: skip  (the scripts' folder)


@dataclass(frozen=True)
class OverviewFloor:
    """Part (a)'s reads and the decode floor."""

    level: int
    levels: int
    level_pixels: int
    level_metres: float
    tile_pixels: int
    reads: int  # record x band x output tile: one request, one tile each
    output_tiles: int  # tiles of the grid any record meets
    compressed: int  # bytes of those tiles
    decode_seconds: float  # whole tiles decoded (as GDAL decodes them), on every core
    rows_seconds: float  # inflated, the predictor undone on the level's rows only
    cores: int

    def describe(self) -> str:
        return (f"level {self.level} of {self.levels} overviews: {self.level_pixels} x "
                f"{self.level_pixels} px of {self.level_metres:.0f} m in one "
                f"{self.tile_pixels} px tile")

    def floor(self, server_cpu_per_request: float | None) -> float:
        """Seconds: the decode of the level's rows on every core plus the server's CPU for
        the requests."""
        server = 0.0 if server_cpu_per_request is None else (
            server_cpu_per_request * self.reads / self.cores)
        return self.rows_seconds + server


def _footprints_3035(archive: ContinentalArchive) -> tuple[np.ndarray, np.ndarray]:
    """Each archive tile's image outline in EPSG:3035 and its records per platform."""
    spec = archive.spec
    tiles = mgrs_tiles(spec)
    records = passes(spec, tiles)
    counts = np.zeros((len(tiles), len(spec.platforms)), np.int64)
    np.add.at(counts, (records.tile, records.platform), 1)
    to = pyproj.Transformer.from_crs(4326, 3035, always_xy=True)
    outlines = shapely.transform(shapely.segmentize(tiles.footprint, 0.05), to.transform,
                                 interleaved=False)
    return outlines, counts


def overview_floor(archive: ContinentalArchive, geobox, tile: int, bands: tuple[str, ...]
                   ) -> OverviewFloor:
    """The reads and decode floor of a composite of ``bands`` on ``geobox`` (EPSG:3035) in
    ``tile`` pixel tiles, from overviews."""
    outlines, counts = _footprints_3035(archive)
    height, width = geobox.shape
    t = geobox.transform
    rows, cols = -(-height // tile), -(-width // tile)
    x0 = t.c + t.a * tile * np.arange(cols)
    y0 = t.f + t.e * tile * np.arange(rows)
    xs, ys = np.meshgrid(x0, y0)
    boxes = shapely.box(xs, ys + t.e * tile, xs + t.a * tile, ys).ravel()
    tree = shapely.STRtree(boxes)
    pairs = tree.query(outlines, predicate="intersects")  # (archive tile, output tile)
    met = np.bincount(pairs[0], minlength=len(outlines))
    reads = 0
    compressed = 0
    level = None
    blobs = []
    for band in bands:
        template = archive.cogs.templates[band].to_pylist()
        first = template[0]
        widths = [o["width"] for o in first["overviews"]]
        resolution = abs(first["transform"][0])
        level = choose_level(abs(t.a) / resolution, first["image_width"], widths)
        for p, code in enumerate(archive.spec.platforms):
            md = template[p]
            counts_p = int((counts[:, p] * met).sum())
            size = (md["overviews"][level - 1]["tile_byte_counts"][0] if level
                    else int(np.mean(md["tile_byte_counts"])))
            reads += counts_p
            compressed += counts_p * size
            blobs.extend(tile_bytes(archive.cogs.paths[code, band], level, [0], [0]))
    if level:
        pixels, side = first["overviews"][level - 1]["width"], first["overviews"][level - 1][
            "tile_width"]
    else:
        pixels, side = first["image_width"], first["tile_width"]
    cores = os.cpu_count() or 1
    out = np.empty((side, side), np.uint16)
    for blob in blobs:  # warm
        decode_tile(blob, out)
    work = blobs * max(1, 400 // len(blobs))
    started = time.process_time()  # CPU time: the load of other processes does not count
    for blob in work:
        decode_tile(blob, out)
    whole = (time.process_time() - started) / len(work)
    started = time.process_time()
    view = out.reshape(-1).view(np.uint8)
    for blob in work:
        imagecodecs.deflate_decode(blob, out=view)
        imagecodecs.delta_decode(out[:pixels], axis=1, out=out[:pixels])
    rows_only = (time.process_time() - started) / len(work)
    return OverviewFloor(level, len(widths), pixels, resolution * first["image_width"] / pixels,
                         side, reads,
                         int(np.count_nonzero(np.bincount(pairs[1], minlength=len(boxes)))),
                         compressed, reads * whole / cores, reads * rows_only / cores, cores)
