"""A fetch group's chunks decoded tile by tile: each tile decoded once, its pieces copied into
every chunk of the group that reads it.

Native chunks are regular from the output window's origin, so a tile may straddle chunk edges
and be read by up to four chunks. The first chunk of the group that needs a tile decodes it
(into the thread's scratch buffer) and copies its piece into each of those chunks' arrays,
which are made on first use (their regions of the band's shared buffer, or new arrays); a
chunk then only waits for the tiles another thread is placing. No decoded tile outlives its
placement, except a tile that chunks of later fetch groups borrow (or an internal-mask tile
several chunks read): that one is kept in the group's :class:`.shared_tiles.SharedTiles` until
its last user in this process.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

import numpy as np

from .buffers import Placement
from .chunks import (
    RasterReadError,
    TileSource,
    apply_mask,
    chunk_output,
    decode_read,
    decoded_tile,
    whole_tile,
)
from .failures import TileFailures
from .plan import ChunkWork
from .shared_tiles import SharedTiles, TileMemo
from .tile_reads import TileRead

__all__ = ["GroupTiles"]

_IDLE, _BUSY, _DONE = 0, 1, 2


class GroupTiles:
    """The tiles of one fetch group and the chunk arrays they are placed into.

    Parameters
    ----------
    jobs
        The group's chunks: work and shared-buffer placement.
    ranges
        How many ranges the group has.
    lent
        Per range, the chunks of later groups that borrow it (empty: none).
    failures
        With ``errors="nodata"``: where failed tiles are reported (their pieces read as
        nodata).
    """

    __slots__ = ("_jobs", "_failures", "_cond", "_users", "_state", "_outs",
                 "_errors", "memo")

    def __init__(self, jobs: Sequence[tuple[ChunkWork, Placement | None]], ranges: int,
                 lent: Sequence[int] = (), failures: TileFailures | None = None) -> None:
        self._jobs = jobs
        self._failures = failures
        self._cond = threading.Condition()
        self._users: list[list[tuple[int, TileRead]]] = [[] for _ in range(ranges)]
        masks = [0] * ranges
        for k, (work, _) in enumerate(jobs):
            for read in work.tiles:
                if read.payload >= 0:
                    self._users[read.payload].append((k, read))
            if work.mask is not None:
                for read in work.mask.tiles:
                    if read.payload >= 0:
                        masks[read.payload] += 1
        lent = tuple(lent) or (0,) * ranges
        # a data tile is placed once here (one use) plus its borrowers; a mask tile is read by
        # each chunk over it
        self.memo = SharedTiles([lent[i] + (1 if self._users[i] else masks[i])
                                 for i in range(ranges)])
        self._state = [_IDLE] * ranges
        self._outs: dict[int, np.ndarray] = {}
        self._errors: dict[int, BaseException] = {}

    def decode(self, k: int, source: TileSource, memo: TileMemo) -> np.ndarray:
        """Chunk ``k``'s (1, h, w) array once every tile it reads is placed: its group's
        tiles (placed here, or by other chunks of the group), then its borrowed ones, then its
        mask. ``source`` holds the group's ranges (and, for a chunk that borrows, answers its
        negative payload indices, as ``memo`` does).

        Raises
        ------
        RasterReadError
            A tile of the chunk could not be fetched or decoded (without ``failures``).
        """
        work, _ = self._jobs[k]
        out = self._output(k)
        for read in work.tiles:
            if read.payload >= 0:
                self._deliver(read.payload, source)
        with self._cond:
            self._outs.pop(k, None)
            error = self._errors.pop(k, None)
        if error is not None:
            raise error
        for read in work.tiles:
            if read.payload < 0:  # borrowed from an earlier group: decoded there once
                try:
                    tile = decoded_tile(source, read, work, None, self._failures, memo)
                    s0, s1, s2, s3 = read.src
                    d0, d1, d2, d3 = read.dst
                    out[0, d0:d1, d2:d3] = (work.fill if tile is None
                                            else tile[s0:s1, s2:s3, work.sample])
                finally:
                    memo.release(read.payload)
        if work.mask is not None:
            apply_mask(source, work, out, self._failures, memo)
        return out

    def _output(self, k: int) -> np.ndarray:
        with self._cond:
            out = self._outs.get(k)
            if out is None:
                work, placement = self._jobs[k]
                out = self._outs[k] = chunk_output(work, placement)
            return out

    def _deliver(self, index: int, source: TileSource) -> None:
        """Range ``index`` placed into every chunk of the group that reads it: by this thread
        unless another one has or is doing it (then wait for it)."""
        with self._cond:
            while self._state[index] == _BUSY:
                self._cond.wait()
            if self._state[index] == _DONE:
                return
            self._state[index] = _BUSY
        try:
            self._place(index, source)
        except BaseException as exc:  # an interrupt: the chunks it leaves unplaced raise it
            with self._cond:
                for k, _ in self._users[index]:
                    self._errors.setdefault(k, exc)
            raise
        finally:
            with self._cond:
                self._state[index] = _DONE
                self._cond.notify_all()

    def _place(self, index: int, source: TileSource) -> None:
        users = self._users[index]
        first, read = users[0]
        work = self._jobs[first][0]
        lent = self.memo.shared(index)  # later groups borrow it: keep it for them
        try:
            if lent:
                tile = self.memo.tile(index, functools.partial(
                    decode_read, source, read, work, None, True))
            elif len(users) == 1 and whole_tile(work, out := self._output(first)):
                decode_read(source, read, work, out.reshape(work.spec.shape))
                return
            else:  # decoded down to the lowest row any of its chunks crops
                tile = decode_read(source, read, work, None,
                                   rows=max(piece.src[1] for _, piece in users))
        except RasterReadError as exc:
            self._failed(index, exc)
            return
        finally:
            if lent:
                self.memo.release(index)
        for k, piece in users:
            out = self._output(k)
            s0, s1, s2, s3 = piece.src
            d0, d1, d2, d3 = piece.dst
            out[0, d0:d1, d2:d3] = tile[s0:s1, s2:s3, self._jobs[k][0].sample]

    def _failed(self, index: int, error: RasterReadError) -> None:
        """A tile that cannot be read: its chunks raise ``error``, or with failures it is
        reported once and its pieces read as nodata."""
        users = self._users[index]
        if self._failures is None:
            with self._cond:
                for k, _ in users:
                    self._errors.setdefault(k, error)
            return
        if self.memo.first_report(index):
            self._failures.report(error)
        for k, piece in users:
            d0, d1, d2, d3 = piece.dst
            self._output(k)[0, d0:d1, d2:d3] = self._jobs[k][0].fill
