"""Decode one output chunk: its tiles' bytes -> decoded tiles -> cropped into a (1, h, w) array.

A tile that other chunks also crop from (it straddles chunk edges) is taken from its fetch
group's :class:`.shared_tiles.SharedTiles` when a memo is given: decoded once per process, and
reported once when it fails and is read as nodata.
"""

from __future__ import annotations

import functools
import threading
from typing import Protocol

import numpy as np

from ..decode import DecodeError, DecodeSpec, decode_tile, is_sparse
from ..io.fetch import Payload
from .buffers import Placement, claim, on_distributed_worker
from .failures import TileFailures
from .masks import MaskRead
from .plan import ChunkWork, TileRead
from .shared_tiles import TileMemo

__all__ = ["ObjectChangedReadError", "RasterReadError", "TileSource", "apply_mask",
           "chunk_output", "decode_chunk", "decode_read", "decoded_tile", "mask_validity",
           "whole_tile", "REFRESH_HINT"]

REFRESH_HINT = ("run collection.enrich(only_missing=False) or `rasteret-dask workflow reenrich "
                "--verify` to refresh its metadata")
"""How to refresh the metadata of an object replaced since enrichment."""


class RasterReadError(OSError):
    """A tile could not be fetched or decoded; the message names record, band and href."""


class ObjectChangedReadError(RasterReadError):
    """A record's object was replaced since enrichment (HTTP/S3 412 to ``If-Match``, or
    another size or modification time): its bytes are not decoded with the old metadata."""


class TileSource(Protocol):
    """Where a chunk's tile bytes come from: ``get(i)`` waits for range ``i`` of its group."""

    def get(self, index: int) -> Payload: ...


_scratch = threading.local()
_SCRATCH_BYTES = 16 * 1024 * 1024


def _scratch_tile(spec: DecodeSpec) -> np.ndarray:
    """A buffer to decode a tile of ``spec`` into: this thread's reusable one (kept between
    tasks, so hot in cache and without page faults) unless the tile is very large."""
    native = np.dtype(spec.dtype).newbyteorder("=")
    buffer = getattr(_scratch, "tile", None)
    if buffer is None or buffer.shape != spec.shape or buffer.dtype != native:
        buffer = np.empty(spec.shape, native)
        if buffer.nbytes <= _SCRATCH_BYTES:
            _scratch.tile = buffer
    return buffer


def decode_read(payloads: TileSource, read: TileRead, work: ChunkWork,
                out: np.ndarray | None, fresh: bool = False,
                rows: int | None = None) -> np.ndarray:
    """Tile ``read`` decoded into ``out``, or without ``out`` into this thread's scratch tile
    (a new, wholly decoded array when ``fresh``); a sparse tile without ``out`` is the nodata
    value broadcast: nothing is allocated, whatever size its header declares (the plan refused
    every other tile over the size limit). Into the scratch tile only its first ``rows`` rows
    are decoded for sure (default: down to the end of ``read``'s crop)."""
    data = payloads.get(read.payload)
    try:
        if out is None and not is_sparse(data):
            if fresh:
                fresh_out = np.empty(work.spec.shape, np.dtype(work.spec.dtype).newbyteorder("="))
                return decode_tile(data, work.spec, fresh_out)
            # cropped from this thread's scratch tile: rows below the crop are not needed
            return decode_tile(data, work.spec, _scratch_tile(work.spec),
                               rows=read.src[1] if rows is None else rows)
        return decode_tile(data, work.spec, out)
    except DecodeError as exc:
        raise RasterReadError(f"{work.label}: {exc}") from exc


def decoded_tile(payloads: TileSource, read: TileRead, work: ChunkWork, out: np.ndarray | None,
          failures: TileFailures | None, shared: TileMemo | None = None
          ) -> np.ndarray | None:
    """The decoded tile (from ``shared`` when other chunks read it too); None when it failed
    and ``failures`` takes it (read as nodata)."""
    try:
        if out is None and shared is not None and shared.shared(read.payload):
            return shared.tile(read.payload,
                               functools.partial(decode_read, payloads, read, work, None, True))
        return decode_read(payloads, read, work, out)
    except RasterReadError as exc:
        if failures is None:
            raise
        if shared is None or shared.first_report(read.payload):
            failures.report(exc)
        return None


def chunk_output(work: ChunkWork, placement: Placement | None = None) -> np.ndarray:
    """The chunk's (1, h, w) array to decode into: its region of the band's shared buffer
    (not on a distributed worker), or a new array; filled with nodata unless its tiles cover
    it exactly."""
    covered = sum((r.dst[1] - r.dst[0]) * (r.dst[3] - r.dst[2]) for r in work.tiles)
    # the tiles tile the chunk exactly (a refused chunk is all nodata)
    full = work.error is None and covered == work.shape[0] * work.shape[1]
    out = claim(placement, work.shape) if placement is not None and not on_distributed_worker() \
        else None  # None: the band is not computed whole, or shared buffers are off
    if out is not None:
        if not full:
            out.fill(work.fill)
        return out
    dtype = np.dtype(work.spec.dtype).newbyteorder("=")
    shape = (1, *work.shape)
    return np.empty(shape, dtype) if full else np.full(shape, work.fill, dtype)


def whole_tile(work: ChunkWork, out: np.ndarray) -> bool:
    """Whether the chunk is one whole single-sample tile that can decode straight into
    ``out`` (a contiguous (1, h, w) array)."""
    whole = (0, work.shape[0], 0, work.shape[1])
    return (len(work.tiles) == 1 and work.spec.shape == (*work.shape, 1)
            and work.tiles[0].src == whole and work.tiles[0].dst == whole
            and out.flags.c_contiguous)


def decode_chunk(payloads: TileSource | None, work: ChunkWork,
                 placement: Placement | None = None,
                 failures: TileFailures | None = None) -> np.ndarray:
    """Decode the chunk's tiles (each as soon as it has arrived), crop them and place them into
    a (1, h, w) array: its region of the band's shared buffer, or a new array. A chunk without
    tiles (``payloads`` may be None) is filled with nodata. A tile that cannot be fetched or
    decoded raises :class:`RasterReadError`, or with ``failures`` is reported and its part of
    the chunk filled with nodata. A chunk the plan refused (a tile over the size limit,
    ``work.error``) does the same before anything tile-sized is allocated."""
    if work.error is not None:
        refused = RasterReadError(f"{work.label}: {work.error}")
        if failures is None:
            raise refused
        failures.report(refused)
    out = chunk_output(work, placement)
    if work.error is None and whole_tile(work, out):
        # the chunk is one whole single-sample tile: decode straight into it
        if decoded_tile(payloads, work.tiles[0], work, out.reshape(work.spec.shape),
                        failures) is None:
            out.fill(work.fill)
        elif work.mask is not None:
            apply_mask(payloads, work, out, failures)
        return out
    for read in () if work.error is not None else work.tiles:
        tile = decoded_tile(payloads, read, work, None, failures)
        s0, s1, s2, s3 = read.src
        d0, d1, d2, d3 = read.dst
        out[0, d0:d1, d2:d3] = work.fill if tile is None else tile[s0:s1, s2:s3, work.sample]
    if work.mask is not None and work.error is None:
        apply_mask(payloads, work, out, failures)
    return out


def apply_mask(payloads: TileSource | None, work: ChunkWork, out: np.ndarray,
                failures: TileFailures | None, shared: TileMemo | None = None) -> None:
    """Pixels of ``out`` (1, h, w) that the record's internal mask marks 0 take the fill."""
    assert work.mask is not None
    valid = mask_validity(payloads, work.mask, work.shape, work.label, failures, shared)
    if not valid.all():
        out[0][~valid] = work.fill


def _mask_tile(payloads: TileSource | None, read: TileRead, mask: MaskRead,
               shared: TileMemo | None) -> np.ndarray:
    """A mask tile decoded (from ``shared`` when other chunks read it too)."""
    assert payloads is not None

    def decode() -> np.ndarray:
        return decode_tile(payloads.get(read.payload), mask.spec)

    if shared is not None and shared.shared(read.payload):
        return shared.tile(read.payload, decode)
    return decode()


def mask_validity(payloads: TileSource | None, mask: MaskRead, shape: tuple[int, int],
                  label: str, failures: TileFailures | None = None,
                  shared: TileMemo | None = None) -> np.ndarray:
    """The (h, w) validity of a chunk's pixels by the record's internal mask: False where a
    mask sample is 0 (a sparse mask tile is 0 throughout), True where it is not and outside
    the mask's tiles (pixels outside the image). A mask tile that cannot be fetched or decoded
    raises :class:`RasterReadError` naming record, band and href, or with ``failures`` is
    reported and its pixels are not valid (read as nodata). With ``shared`` a mask tile other
    chunks read too is decoded once, and each is released there once used."""
    valid = np.ones(shape, bool)
    if mask.error is not None:
        refused = RasterReadError(f"{label}: {mask.error}")
        if failures is None:
            raise refused
        failures.report(refused)
        valid[:] = False
        return valid
    for read in mask.tiles:
        d0, d1, d2, d3 = read.dst
        s0, s1, s2, s3 = read.src
        try:
            tile = _mask_tile(payloads, read, mask, shared)
        except DecodeError as exc:
            error = RasterReadError(f"{label}: internal mask: {exc}")
            if failures is None:
                raise error from exc
            if shared is None or shared.first_report(read.payload):
                failures.report(error)
            valid[d0:d1, d2:d3] = False
            continue
        except RasterReadError as exc:
            if failures is None:
                raise
            if shared is None or shared.first_report(read.payload):
                failures.report(exc)
            valid[d0:d1, d2:d3] = False
            continue
        finally:
            if shared is not None:
                shared.release(read.payload)
        valid[d0:d1, d2:d3] = tile[s0:s1, s2:s3, mask.sample] != 0
    return valid
