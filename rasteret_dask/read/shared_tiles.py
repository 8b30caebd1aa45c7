"""Decoded tiles kept for several chunks: decoded once per process, dropped after their last user.

Native chunks are regular from the output window's origin, so a tile may straddle chunk edges.
Within its fetch group such a tile is placed into every chunk that reads it as soon as it is
decoded (:mod:`.scatter`); it is kept here only when chunks of later fetch groups borrow it, or
when it is an internal-mask tile several chunks read: decoded by the first user, kept while
other users in this process still need it, and dropped after the last. The memo lives on the
fetch group's payload object, so on a distributed worker sharing is per worker, and nothing
outlives the payloads (a chunk that never runs, in a culled graph, leaves its tiles until then).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

__all__ = ["SharedTiles", "TileMemo"]


class TileMemo(Protocol):
    """What a chunk's decoding asks about the tiles it reads, by its payload index."""

    def shared(self, index: int) -> bool: ...

    def tile(self, index: int, decode: Callable[[], np.ndarray]) -> np.ndarray: ...

    def release(self, index: int) -> None: ...

    def first_report(self, index: int) -> bool: ...


class _Entry:
    """One shared tile: being decoded (``done`` False), decoded, or failed."""

    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = False
        self.value: np.ndarray | None = None
        self.error: BaseException | None = None


class SharedTiles:
    """Per range of a fetch group: chunks still to crop it, and its decoded tile while shared.

    Parameters
    ----------
    uses
        Per range of the group, how many chunks read it (its own and borrowing ones).
    """

    __slots__ = ("_left", "_cond", "_tiles", "_reported", "decodes")

    def __init__(self, uses: Sequence[int]) -> None:
        self._left = list(uses)
        self._cond = threading.Condition()
        self._tiles: dict[int, _Entry] = {}
        self._reported: set[int] = set()
        self.decodes = 0
        """Tiles decoded into the memo so far (each shared tile once)."""

    def shared(self, index: int) -> bool:
        """Whether range ``index`` is (still) read by more than one chunk in this process, or
        was already decoded for them."""
        with self._cond:
            return index in self._tiles or self._left[index] > 1

    def tile(self, index: int, decode: Callable[[], np.ndarray]) -> np.ndarray:
        """Range ``index`` decoded: by ``decode()`` in this thread when nobody has yet (into
        a new array: the tile outlives this chunk), else the tile another chunk decoded
        (waiting while it is being decoded). A failed decode raises its error for every
        chunk that reads the tile."""
        with self._cond:
            entry = self._tiles.get(index)
            owner = entry is None
            if owner:
                entry = self._tiles[index] = _Entry()
            else:
                while not entry.done:
                    self._cond.wait()
        if owner:
            value, error = None, None
            try:
                value = decode()
            except BaseException as exc:  # kept for every reader of the tile
                error = exc
            with self._cond:
                entry.value, entry.error, entry.done = value, error, True
                self.decodes += 1
                self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        assert entry.value is not None
        return entry.value

    def release(self, index: int) -> None:
        """A chunk is done with range ``index``: after its last user the tile is dropped."""
        with self._cond:
            self._left[index] -= 1
            if self._left[index] <= 0:
                self._tiles.pop(index, None)

    def first_report(self, index: int) -> bool:
        """True the first time a chunk reports range ``index`` as failed (read as nodata):
        a tile several chunks read is reported once."""
        with self._cond:
            if index in self._reported:
                return False
            self._reported.add(index)
            return True

    def __len__(self) -> int:
        """Decoded tiles held now."""
        with self._cond:
            return len(self._tiles)
