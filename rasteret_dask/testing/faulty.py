"""A :class:`~rasteret_dask.testing.servers.RangeServer` that also misbehaves per range.

Faults a CDN or a broken proxy produces and whole-file faults cannot show: one tile of a file
that always fails while the rest of it reads (:meth:`FaultyRangeServer.set_byte_status`), and
``206`` answers that are not the range asked for (:meth:`FaultyRangeServer.set_bad_range`).
Requests stay in the server's log like any other.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from .servers import RangeServer, _norm

__all__ = ["BAD_RANGE_KINDS", "FaultyRangeServer"]

BAD_RANGE_KINDS = ("no-content-range", "wrong-content-range", "long-body")
"""Faulty ``206`` answers: the right bytes without a Content-Range; the bytes from one past the
range asked, with their own Content-Range; the range asked plus 16 bytes its Content-Range
does not count."""


def _range_bounds(header: str | None) -> tuple[int, int | None] | None:
    """(first, last or None) of a single ``bytes=a-b`` / ``bytes=a-`` Range header."""
    if not header or not header.startswith("bytes="):
        return None
    first_text, _, last_text = header[6:].partition("-")
    if not first_text.isdigit():
        return None
    return int(first_text), int(last_text) if last_text.isdigit() else None


class FaultyRangeServer(RangeServer):
    """A RangeServer with per-byte statuses and malformed ``206`` answers (see module doc)."""

    def __init__(self, root: Path | str, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self._bad_ranges: dict[str, list[Any]] = {}  # path -> [kind, answers left or None]
        self._byte_statuses: dict[str, dict[int, int]] = {}  # path -> {byte: status}

    def set_byte_status(self, path: str, byte: int, status: int | None) -> None:
        """Answer ``status`` to every Range request to ``path`` whose range holds ``byte`` (a
        tile that always fails while the rest of its file reads); None removes it."""
        with self._lock:
            statuses = self._byte_statuses.setdefault(_norm(path), {})
            if status is None:
                statuses.pop(int(byte), None)
            else:
                statuses[int(byte)] = int(status)

    def set_bad_range(self, path: str, kind: str | None, *, times: int | None = None) -> None:
        """Answer Range requests to ``path`` with a faulty ``206`` (one of
        :data:`BAD_RANGE_KINDS`) for the next ``times`` requests, or for ever (None); a
        ``kind`` of None removes the fault."""
        if kind is not None and kind not in BAD_RANGE_KINDS:
            raise ValueError(f"unknown bad-range kind {kind!r}; one of {BAD_RANGE_KINDS}")
        with self._lock:
            if kind is None:
                self._bad_ranges.pop(_norm(path), None)
            else:
                self._bad_ranges[_norm(path)] = [kind, times]

    def clear_faults(self) -> None:
        """Remove every fault, the per-byte statuses and bad ranges included."""
        super().clear_faults()
        with self._lock:
            self._bad_ranges.clear()
            self._byte_statuses.clear()

    def _ranged_status(self, path: str, bounds: tuple[int, int | None]) -> int | None:
        first, last = bounds
        with self._lock:
            for byte, status in self._byte_statuses.get(path, {}).items():
                if first <= byte and (last is None or byte <= last):
                    return status
        return None

    def _bad_range_kind(self, path: str) -> str | None:
        with self._lock:
            fault = self._bad_ranges.get(path)
            if fault is None:
                return None
            kind, left = fault
            if left is not None:
                if left <= 1:
                    del self._bad_ranges[path]
                else:
                    fault[1] = left - 1
            return kind

    async def _answer_fault(
        self, request: web.Request, path: str, target: Path
    ) -> web.StreamResponse | None:
        bounds = _range_bounds(request.headers.get("Range"))
        if bounds is None:
            return None
        status = self._ranged_status(path, bounds)
        if status is not None:
            return web.Response(status=status, text=f"injected {status}\n")
        kind = self._bad_range_kind(path)
        if kind is None:
            return None
        data = await asyncio.to_thread(target.read_bytes)
        first, last = bounds
        stop = len(data) if last is None else min(last + 1, len(data))
        if first >= stop:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        headers = {"Content-Range": f"bytes {first}-{stop - 1}/{len(data)}"}
        body = data[first:stop]
        if kind == "no-content-range":
            headers = {}
        elif kind == "wrong-content-range":
            shifted = min(first + 1, stop - 1)
            body = data[shifted:stop]
            headers["Content-Range"] = f"bytes {shifted}-{stop - 1}/{len(data)}"
        else:  # long-body
            body += bytes(16)
        return web.Response(status=206, body=body, headers=headers,
                            content_type="application/octet-stream")
