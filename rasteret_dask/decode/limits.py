"""How large a tile may be: the memory bound of every decode, and the checks made against it.

A TIFF header declares each tile's decoded size (tile width x height x samples x sample size)
and its compressed size (TileByteCounts); a hostile or corrupt header can declare gigabytes
in a few bytes. Every tile is checked against one limit, ``max_tile_bytes``, before anything is
fetched or allocated for it: its decoded size (unless it is sparse: byte count 0, which costs
nothing to read) and its compressed size. The limit comes from the call, else from dask config
``rasteret_dask.max_tile_bytes`` (bytes, or a string such as ``"1 GiB"``), else
:data:`DEFAULT_MAX_TILE_BYTES`.
"""

from __future__ import annotations

import dask.config
from dask.utils import format_bytes, parse_bytes

from .spec import DecodeError, DecodeSpec

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_MAX_TILE_BYTES",
    "TileTooLargeError",
    "bounded_tile_step",
    "check_decoded_size",
    "max_tile_bytes",
    "tile_size_problem",
]

CONFIG_KEY = "rasteret_dask.max_tile_bytes"
DEFAULT_MAX_TILE_BYTES = 256 * 1024 * 1024
"""Largest tile (decoded or compressed) read by default: a 8192 x 8192 float32 tile."""

_HOW_TO_RAISE = f"max_tile_bytes= or dask config {CONFIG_KEY!r}"


class TileTooLargeError(DecodeError):
    """A tile declares more bytes (decoded or compressed) than the limit allows; raised before
    anything is fetched or allocated for it."""


def max_tile_bytes(value: int | str | None = None) -> int:
    """The limit in force: ``value``, else dask config ``rasteret_dask.max_tile_bytes``, else
    :data:`DEFAULT_MAX_TILE_BYTES`.

    Parameters
    ----------
    value
        A byte count, or a size string that ``dask.utils.parse_bytes`` reads (``"512 MiB"``).

    Returns
    -------
    int
        The limit in bytes (positive).

    Raises
    ------
    ValueError
        When the value is not a positive size.
    """
    source = "max_tile_bytes"
    if value is None:
        value = dask.config.get(CONFIG_KEY, default=None)
        source = f"dask config {CONFIG_KEY!r}"
    if value is None:
        return DEFAULT_MAX_TILE_BYTES
    try:
        limit = parse_bytes(value) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source} must be a byte count or a size such as '1 GiB', "
                         f"not {value!r}") from exc
    if isinstance(value, bool) or limit <= 0:
        raise ValueError(f"{source} must be a positive byte count, not {value!r}")
    return limit


def _size(nbytes: int) -> str:
    return f"{nbytes} bytes ({format_bytes(nbytes)})"


def _decoded_problem(spec: DecodeSpec, limit: int) -> str:
    return (f"{spec.tile_width} x {spec.tile_height} pixels x {spec.samples} sample(s) of "
            f"{spec.dtype} declare {_size(spec.nbytes)} decoded, over the limit of "
            f"{_size(limit)} ({_HOW_TO_RAISE} raises it for trusted files)")


def tile_size_problem(spec: DecodeSpec, compressed: int, limit: int,
                      tile: int | None = None) -> str | None:
    """Why a tile cannot be read within ``limit`` bytes, or None when it can.

    Parameters
    ----------
    spec
        The decode parameters of the tile's band (its declared tile shape and dtype).
    compressed
        The tile's declared byte count (TileByteCounts); 0 for a sparse tile.
    limit
        The limit in bytes (see :func:`max_tile_bytes`).
    tile
        The tile's number in its image, named in the message when given.

    Returns
    -------
    str or None
        A message naming the declared size and the limit; None for a sparse tile (read as
        nodata without decoding) and for a tile within the limit.
    """
    name = "tile" if tile is None else f"tile {tile}"
    if compressed < 0:
        return f"{name} declares a negative byte count ({compressed})"
    if compressed > limit:
        return (f"{name} declares {_size(compressed)} compressed, over the limit of "
                f"{_size(limit)} ({_HOW_TO_RAISE} raises it for trusted files)")
    if compressed and spec.nbytes > limit:
        return f"{name}: {_decoded_problem(spec, limit)}"
    return None


def check_decoded_size(spec: DecodeSpec, limit: int) -> None:
    """Raise :class:`TileTooLargeError` when a decoded tile of ``spec`` exceeds ``limit`` bytes."""
    if spec.nbytes > limit:
        raise TileTooLargeError(f"tile of {_decoded_problem(spec, limit)}")


def bounded_tile_step(tile_height: int, tile_width: int, itemsize: int,
                      limit: int) -> tuple[int, int]:
    """Chunk steps (rows, columns) for a tile grid: the tile size, halved along its larger side
    until one chunk of ``itemsize`` samples fits in ``limit`` bytes (unchanged for every tile
    within the limit; only headers declaring huge tiles get smaller chunks)."""
    rows, cols = tile_height, tile_width
    while rows * cols * itemsize > limit and (rows > 1 or cols > 1):
        if rows >= cols:
            rows = -(-rows // 2)
        else:
            cols = -(-cols // 2)
    return rows, cols
