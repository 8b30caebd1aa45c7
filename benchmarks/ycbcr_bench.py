"""YCbCr JPEG: how far each decoder is from rasterio (GDAL, IJG libjpeg 9), and its speed.

Writes YCbCr JPEG GeoTIFFs with GDAL (PHOTOMETRIC=YCBCR, COMPRESS=JPEG, quality 75, 256-pixel
tiles) from generated imagery-like content (``testing.cogs.natural_rgb``) and, when given, from
a photograph (any image file Pillow reads, e.g. matplotlib's ``sample_data/grace_hopper.jpg``),
decodes every tile with libjpeg-turbo (imagecodecs, the default) and with GDAL's own decoder
(dask config ``rasteret_dask.ycbcr_jpeg = "gdal"``) and prints, against rasterio's read: the
share of pixels differing in any channel, the share of samples differing, by more than 2
levels, the largest difference, and milliseconds per tile.
Run: .venv/bin/python benchmarks/ycbcr_bench.py [photo.jpg]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from rasteret_dask.decode import DecodeSpec, decode_tile
from rasteret_dask.testing.cogs import natural_rgb, write_cog
from rasteret_dask.tiff import read_tiff_header
from rasteret_dask.tiff.cog_metadata import CogMetadata


def _decode(path: Path, decoder: str) -> tuple[np.ndarray, float]:
    """The image (3, rows, cols) decoded tile by tile, and seconds per tile."""
    data = path.read_bytes()
    header = read_tiff_header(lambda ranges: [data[a:b] for a, b in ranges])
    md = CogMetadata.from_struct(header.to_metadata())
    spec = DecodeSpec.from_metadata(md, decoder)
    image = np.zeros((md.tiles_down * md.tile_height, md.tiles_across * md.tile_width, 3),
                     np.uint8)
    started = time.perf_counter()
    for row in range(md.tiles_down):
        for col in range(md.tiles_across):
            start, end = md.tile_range(md.tile_index(row, col))
            image[row * md.tile_height:(row + 1) * md.tile_height,
                  col * md.tile_width:(col + 1) * md.tile_width] = decode_tile(data[start:end],
                                                                              spec)
    seconds = (time.perf_counter() - started) / (md.tiles_down * md.tiles_across)
    return image[:md.image_height, :md.image_width].transpose(2, 0, 1), seconds


def main(photo: str | None = None) -> None:
    sources = {"imagery-like 1024 x 1024": natural_rgb(1024, 1024)}
    if photo:
        from PIL import Image

        sources[Path(photo).name] = np.asarray(Image.open(photo).convert("RGB")) \
            .transpose(2, 0, 1).copy()
    with tempfile.TemporaryDirectory() as tmp:
        for name, pixels in sources.items():
            path = write_cog(Path(tmp) / "ycbcr.tif", data=pixels, compress="jpeg",
                             photometric="YCBCR", blocksize=256, overviews=False)
            with rasterio.open(path) as src:
                want = src.read().astype(int)
            for decoder in ("libjpeg-turbo", "gdal"):
                got, seconds = _decode(path, decoder)
                diff = np.abs(got.astype(int) - want)
                print(f"{name:>28} {decoder:>13}: pixels differing "
                      f"{(diff.max(axis=0) > 0).mean():6.1%}, samples {(diff > 0).mean():6.1%},"
                      f" > 2 levels {(diff > 2).mean():6.2%}, max {diff.max():3d}, "
                      f"{seconds * 1000:.2f} ms/tile")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
