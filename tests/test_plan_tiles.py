"""Tile and chunk arithmetic: chunk edges on tile edges; tiles reassemble any region exactly."""

from __future__ import annotations

import numpy as np
import pytest

from rasteret_dask.plan.tiles import axis_tiles, chunk_edges


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


def _tiles_of(image: np.ndarray, tile_height: int, tile_width: int) -> dict[int, np.ndarray]:
    """Full-size decoded tiles, edge tiles padded with junk as in real tiled TIFFs."""
    down, across = -(-image.shape[0] // tile_height), -(-image.shape[1] // tile_width)
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
def test_axis_tiles_reassemble_random_regions(
    height: int, width: int, tile_height: int, tile_width: int
) -> None:
    """Rows x columns of ``axis_tiles`` (as the planner crosses them) copy the in-image part of
    any region exactly once, never reading past the image edge."""
    image = np.arange(height * width, dtype=np.int64).reshape(height, width)
    tiles = _tiles_of(image, tile_height, tile_width)
    across = -(-width // tile_width)
    rng = np.random.default_rng(height * width)
    for _ in range(200):
        row0 = int(rng.integers(-height // 2, height + 10))
        col0 = int(rng.integers(-width // 2, width + 10))
        row1 = row0 + int(rng.integers(0, height))
        col1 = col0 + int(rng.integers(0, width))
        rows = axis_tiles(row0, row1, tile_height, height)
        cols = axis_tiles(col0, col1, tile_width, width)
        region = np.full((row1 - row0, col1 - col0), -1, dtype=np.int64)
        written = np.zeros(region.shape, dtype=np.int64)
        for tile_row, s0, s1, d0, d1 in rows:
            assert 0 <= s0 < s1 <= tile_height and tile_row * tile_height + s1 <= height
            for tile_col, s2, s3, d2, d3 in cols:
                assert 0 <= s2 < s3 <= tile_width and tile_col * tile_width + s3 <= width
                region[d0:d1, d2:d3] = tiles[tile_row * across + tile_col][s0:s1, s2:s3]
                written[d0:d1, d2:d3] += 1
        expected = np.full(region.shape, -1, dtype=np.int64)
        r_lo, r_hi, c_lo, c_hi = max(row0, 0), min(row1, height), max(col0, 0), min(col1, width)
        if r_lo < r_hi and c_lo < c_hi:
            expected[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = image[
                r_lo:r_hi, c_lo:c_hi
            ]
        assert np.array_equal(region, expected)
        assert written.max(initial=0) <= 1  # no pixel written twice
        assert int(written.sum()) == int((expected >= 0).sum())  # every in-image pixel once
        assert [p[0] for p in rows] == sorted({p[0] for p in rows})  # each tile once, in order


def test_axis_tiles_edge_tiles() -> None:
    # rows 260-310 and columns 450-520 of a 300 x 500 image of 128 x 128 tiles: tile (2, 3)
    assert axis_tiles(260, 310, 128, 300) == [(2, 260 - 256, 300 - 256, 0, 40)]  # not past
    assert axis_tiles(450, 520, 128, 500) == [(3, 450 - 384, 500 - 384, 0, 50)]  # the image
    assert axis_tiles(-20, 10, 8, 100) == [(0, 0, 8, 20, 28), (1, 0, 2, 28, 30)]
    assert axis_tiles(100, 120, 8, 100) == [] and axis_tiles(5, 5, 8, 100) == []


def test_strips_group_into_chunks_of_about_a_million_pixels():
    from rasteret_dask.plan.tiles import STRIP_CHUNK_PIXELS, strips_per_chunk

    assert strips_per_chunk(4, 1000) == STRIP_CHUNK_PIXELS // 4000
    assert strips_per_chunk(1, 2_000_000) == 1  # one strip holds more: one per chunk
    assert strips_per_chunk(8, 100, chunk_pixels=800) == 1
    with pytest.raises(ValueError, match="rows_per_strip must be a positive integer"):
        strips_per_chunk(0, 10)
