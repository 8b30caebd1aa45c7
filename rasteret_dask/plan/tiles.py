"""Tile and chunk arithmetic for tiled images.

A tiled image of ``image_width`` x ``image_height`` pixels is cut into tiles of ``tile_width`` x
``tile_height``; there are ``ceil(W / tw)`` tiles across and ``ceil(H / th)`` down, numbered in
row-major order. Regions are in image pixel coordinates and may reach outside the image (the
outside part is filled with nodata by the reader). A striped image is one column of tiles of
the full width and RowsPerStrip rows; its strips are grouped into chunks
(:func:`strips_per_chunk`), since a strip of a few rows is too small a task.
"""

from __future__ import annotations

__all__ = [
    "AxisPart",
    "STRIP_CHUNK_PIXELS",
    "axis_tiles",
    "chunk_edges",
    "strips_per_chunk",
]

STRIP_CHUNK_PIXELS = 1024 * 1024
"""Pixels a chunk of a striped image holds at most, unless one strip holds more (a 1024 x
1024 tile's worth)."""


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def chunk_edges(
    start: int, stop: int, tile_size: int, tiles_per_chunk: int = 1
) -> list[tuple[int, int]]:
    """Split [start, stop) at multiples of ``tile_size * tiles_per_chunk`` (chunks on tile edges).

    The first and last chunks may be partial; ``start``/``stop`` may lie outside the image.
    """
    _check_positive(tile_size=tile_size, tiles_per_chunk=tiles_per_chunk)
    if stop < start:
        raise ValueError(f"stop ({stop}) must be >= start ({start})")
    step = tile_size * tiles_per_chunk
    edges = [start]
    edges.extend(range((start // step + 1) * step, stop, step))
    edges.append(stop)
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


AxisPart = tuple[int, int, int, int, int]
"""One tile's share of a region along one axis: (tile number, tile start, tile stop,
region start, region stop)."""


def axis_tiles(start: int, stop: int, tile_size: int, image_size: int) -> list[AxisPart]:
    """Tiles along one axis covering the in-image part of [start, stop), in order.

    ``tile_size`` must be positive; the region may reach outside ``[0, image_size)``.
    """
    lo, hi = max(start, 0), min(stop, image_size)
    parts: list[AxisPart] = []
    if lo >= hi:
        return parts
    for tile in range(lo // tile_size, (hi - 1) // tile_size + 1):
        edge = tile * tile_size
        a, b = max(lo, edge), min(hi, edge + tile_size)
        parts.append((tile, a - edge, b - edge, a - start, b - start))
    return parts


def strips_per_chunk(rows_per_strip: int, width: int,
                     chunk_pixels: int = STRIP_CHUNK_PIXELS) -> int:
    """Strips of ``rows_per_strip`` rows of ``width`` pixels grouped into one chunk: as many as
    ``chunk_pixels`` holds, at least one."""
    _check_positive(rows_per_strip=rows_per_strip, width=width, chunk_pixels=chunk_pixels)
    return max(1, chunk_pixels // (rows_per_strip * width))
