"""Tile and chunk arithmetic: chunk edges on tile edges; tiles reassemble any region exactly."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from rasteret_dask.plan.grid import Window
from rasteret_dask.plan.tiles import (
    TileSlice,
    chunk_edges,
    tile_count_for_window,
    tile_grid_shape,
    tiles_for_region,
    tiles_for_window,
    window_chunks,
)


def test_chunk_edges_examples() -> None:
    assert chunk_edges(0, 1000, 256) == [(0, 256), (256, 512), (512, 768), (768, 1000)]
    assert chunk_edges(100, 600, 256, 2) == [(100, 512), (512, 600)]
    assert chunk_edges(-5, 300, 256) == [(-5, 0), (0, 256), (256, 300)]
    assert chunk_edges(-300, -10, 256) == [(-300, -256), (-256, -10)]
    assert chunk_edges(256, 512, 256) == [(256, 512)]
    assert chunk_edges(7, 7, 256) == []
    with pytest.raises(ValueError, match="stop"):
        chunk_edges(10, 5, 256)
    with pytest.raises(ValueError, match="tile_size"):
        chunk_edges(0, 5, 0)
    with pytest.raises(ValueError, match="tiles_per_chunk"):
        chunk_edges(0, 5, 256, 0)


def test_chunk_edges_properties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(500):
        start = int(rng.integers(-2000, 5000))
        stop = start + int(rng.integers(0, 6000))
        tile, per = int(rng.integers(1, 600)), int(rng.integers(1, 5))
        step = tile * per
        chunks = chunk_edges(start, stop, tile, per)
        if start == stop:
            assert chunks == []
            continue
        assert chunks[0][0] == start and chunks[-1][1] == stop
        assert all(a < b and b - a <= step for a, b in chunks)
        assert all(b == c for (_, b), (c, _) in zip(chunks[:-1], chunks[1:]))  # no gap, no overlap
        assert all(b % step == 0 for _, b in chunks[:-1])  # inner edges on chunk (so tile) edges
        assert all(b - a == step for a, b in chunks[1:-1])  # inner chunks are whole


def test_window_chunks() -> None:
    window = Window(-10, 500, 700, 300)
    rows, cols = window_chunks(window, tile_width=256, tile_height=512)
    assert rows == (10, 512, 178) and cols == (12, 256, 32)
    assert sum(rows) == window.height and sum(cols) == window.width
    assert window_chunks(window, 256, 512, tiles_per_chunk=4) == ((10, 690), (300,))


def _tiles_of(image: np.ndarray, tile_height: int, tile_width: int) -> dict[int, np.ndarray]:
    """Full-size decoded tiles, edge tiles padded with junk as in real tiled TIFFs."""
    down, across = tile_grid_shape(image.shape[1], image.shape[0], tile_width, tile_height)
    tiles = {}
    for tr in range(down):
        for tc in range(across):
            tile = np.full((tile_height, tile_width), -999, dtype=image.dtype)
            part = image[
                tr * tile_height : (tr + 1) * tile_height, tc * tile_width : (tc + 1) * tile_width
            ]
            tile[: part.shape[0], : part.shape[1]] = part
            tiles[tr * across + tc] = tile
    return tiles


@pytest.mark.parametrize(
    ("height", "width", "tile_height", "tile_width"),
    [(300, 500, 64, 64), (257, 513, 64, 128), (100, 100, 256, 256), (31, 47, 8, 16)],
)
def test_tiles_reassemble_random_regions(
    height: int, width: int, tile_height: int, tile_width: int
) -> None:
    image = np.arange(height * width, dtype=np.int64).reshape(height, width)
    tiles = _tiles_of(image, tile_height, tile_width)
    rng = np.random.default_rng(height * width)
    for _ in range(200):
        row0 = int(rng.integers(-height // 2, height + 10))
        col0 = int(rng.integers(-width // 2, width + 10))
        row1 = row0 + int(rng.integers(0, height))
        col1 = col0 + int(rng.integers(0, width))
        slices = tiles_for_region(
            row0,
            row1,
            col0,
            col1,
            tile_width=tile_width,
            tile_height=tile_height,
            image_width=width,
            image_height=height,
        )
        region = np.full((row1 - row0, col1 - col0), -1, dtype=np.int64)
        written = np.zeros(region.shape, dtype=np.int64)
        for s in slices:
            assert isinstance(s, TileSlice)
            r0, r1, c0, c1 = s.src
            assert 0 <= r0 < r1 <= tile_height and 0 <= c0 < c1 <= tile_width
            assert s.tile_row * tile_height + r1 <= height and s.tile_col * tile_width + c1 <= width
            region[s.dst_slices] = tiles[s.tile_index][s.src_slices]
            written[s.dst_slices] += 1
        expected = np.full(region.shape, -1, dtype=np.int64)
        r_lo, r_hi, c_lo, c_hi = max(row0, 0), min(row1, height), max(col0, 0), min(col1, width)
        if r_lo < r_hi and c_lo < c_hi:
            expected[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = image[
                r_lo:r_hi, c_lo:c_hi
            ]
        assert np.array_equal(region, expected)
        assert written.max(initial=0) <= 1  # no pixel written twice
        assert int(written.sum()) == int((expected >= 0).sum())  # every in-image pixel once
        order = [(s.tile_row, s.tile_col) for s in slices]
        assert order == sorted(order) and len(set(order)) == len(order)
        window = Window(row0, col0, row1 - row0, col1 - col0)
        assert tile_count_for_window(window, tile_width, tile_height, width, height) == len(slices)
        assert (
            tiles_for_window(
                window,
                tile_width=tile_width,
                tile_height=tile_height,
                image_width=width,
                image_height=height,
            )
            == slices
        )


def test_tile_indices_and_edge_tiles() -> None:
    slices = tiles_for_region(
        260, 310, 450, 520, tile_width=128, tile_height=128, image_width=500, image_height=300
    )
    assert [(s.tile_index, s.tile_row, s.tile_col) for s in slices] == [(11, 2, 3)]
    assert slices[0].src == (260 - 256, 300 - 256, 450 - 384, 500 - 384)  # not past the image
    assert slices[0].dst == (0, 40, 0, 50)
    assert tile_grid_shape(500, 300, 128, 128) == (3, 4)
    assert tile_grid_shape(0, 0, 128, 128) == (0, 0)
    with pytest.raises(ValueError, match="tile_width"):
        tile_grid_shape(10, 10, 0, 16)
    with pytest.raises(ValueError, match="region"):
        tiles_for_region(5, 4, 0, 1, tile_width=8, tile_height=8, image_width=8, image_height=8)
    with pytest.raises(AttributeError):
        slices[0].tile_index = 3  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(slices[0])) == slices[0]
