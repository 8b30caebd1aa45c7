"""Tile and chunk arithmetic for tiled images.

A tiled image of ``image_width`` x ``image_height`` pixels is cut into tiles of ``tile_width`` x
``tile_height``; there are ``ceil(W / tw)`` tiles across and ``ceil(H / th)`` down, numbered in
row-major order. Regions are in image pixel coordinates and may reach outside the image (the
outside part is filled with nodata by the reader).
"""

from __future__ import annotations

from dataclasses import dataclass

from rasteret_dask.plan.grid import Window

__all__ = [
    "AxisPart",
    "TileSlice",
    "axis_tiles",
    "tile_grid_shape",
    "chunk_edges",
    "window_chunks",
    "tiles_for_region",
    "tiles_for_window",
    "tile_count_for_window",
]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def tile_grid_shape(
    image_width: int, image_height: int, tile_width: int, tile_height: int
) -> tuple[int, int]:
    """(tiles down, tiles across) of a tiled image."""
    _check_positive(tile_width=tile_width, tile_height=tile_height)
    if image_width < 0 or image_height < 0:
        raise ValueError(f"image size must be >= 0, got {image_width} x {image_height}")
    return (-(-image_height // tile_height), -(-image_width // tile_width))


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


def window_chunks(
    window: Window, tile_width: int, tile_height: int, tiles_per_chunk: int = 1
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Dask-style chunk sizes (rows, cols) of ``window`` with chunk edges on tile edges."""
    rows = chunk_edges(window.row_off, window.row_stop, tile_height, tiles_per_chunk)
    cols = chunk_edges(window.col_off, window.col_stop, tile_width, tiles_per_chunk)
    return tuple(b - a for a, b in rows), tuple(b - a for a, b in cols)


@dataclass(frozen=True, slots=True)
class TileSlice:
    """One tile's share of a region: the tile's place and the slices copying it into the region.

    ``src`` and ``dst`` are (row0, row1, col0, col1): the rectangle within the decoded tile and
    within the region's array.
    """

    tile_index: int
    tile_row: int
    tile_col: int
    src: tuple[int, int, int, int]
    dst: tuple[int, int, int, int]

    @property
    def src_slices(self) -> tuple[slice, slice]:
        """(row slice, column slice) into the decoded tile."""
        r0, r1, c0, c1 = self.src
        return (slice(r0, r1), slice(c0, c1))

    @property
    def dst_slices(self) -> tuple[slice, slice]:
        """(row slice, column slice) into the region's array."""
        r0, r1, c0, c1 = self.dst
        return (slice(r0, r1), slice(c0, c1))


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


def tiles_for_region(
    row0: int,
    row1: int,
    col0: int,
    col1: int,
    *,
    tile_width: int,
    tile_height: int,
    image_width: int,
    image_height: int,
) -> list[TileSlice]:
    """Tiles covering the in-image part of region [row0, row1) x [col0, col1), row-major.

    Each slice copies the valid part of its tile (never past the image edge) into the region.
    """
    _, across = tile_grid_shape(image_width, image_height, tile_width, tile_height)
    if row1 < row0 or col1 < col0:
        raise ValueError(f"empty or inverted region rows [{row0}, {row1}) cols [{col0}, {col1})")
    rows = axis_tiles(row0, row1, tile_height, image_height)
    cols = axis_tiles(col0, col1, tile_width, image_width) if rows else []
    return [
        TileSlice(tile_index=tile_row * across + tile_col, tile_row=tile_row, tile_col=tile_col,
                  src=(s0, s1, s2, s3), dst=(d0, d1, d2, d3))
        for tile_row, s0, s1, d0, d1 in rows
        for tile_col, s2, s3, d2, d3 in cols
    ]


def tiles_for_window(
    window: Window, *, tile_width: int, tile_height: int, image_width: int, image_height: int
) -> list[TileSlice]:
    """:func:`tiles_for_region` for a :class:`Window`."""
    return tiles_for_region(
        window.row_off,
        window.row_stop,
        window.col_off,
        window.col_stop,
        tile_width=tile_width,
        tile_height=tile_height,
        image_width=image_width,
        image_height=image_height,
    )


def tile_count_for_window(
    window: Window, tile_width: int, tile_height: int, image_width: int, image_height: int
) -> int:
    """How many tiles the in-image part of ``window`` touches."""
    tile_grid_shape(image_width, image_height, tile_width, tile_height)
    r_lo, r_hi = max(window.row_off, 0), min(window.row_stop, image_height)
    c_lo, c_hi = max(window.col_off, 0), min(window.col_stop, image_width)
    if r_lo >= r_hi or c_lo >= c_hi:
        return 0
    rows = (r_hi - 1) // tile_height - r_lo // tile_height + 1
    cols = (c_hi - 1) // tile_width - c_lo // tile_width + 1
    return rows * cols
