"""A month's time steps reduced per pixel straight from their raw pixels (pure numpy, no I/O).

:meth:`.reducers.Reducer.reduce` takes float32 observations with NaN where invalid: a tile's
month of 2048 x 2048 steps becomes a (steps, 2048, 2048) float32 stack, several hundred MB,
sorted along its first axis for the median. Here the steps are reduced in bands of rows
(:data:`BLOCK_PIXELS` pixels each), in the raw dtype, with invalid observations (nodata, NaN,
dropped by the quality mask) replaced by a sentinel that orders after every value (before, for
``max``):

- ``median``: a Batcher odd-even merge sorting network of elementwise ``minimum``/``maximum``
  over the step planes (:func:`sorting_network`; an ``np.sort`` past :data:`NETWORK_STEPS`),
  then each pixel's two middle valid values. A valid value equal to the sentinel sorts among
  the sentinels, which hold that same value, so the k-th valid value is still at position k;
- ``min``, ``max``: a reduction over the sentinel-filled planes;
- ``count``: the valid observations;
- ``mean`` and percentiles: :meth:`.reducers.Reducer.reduce` of each band of rows.

Every result equals :meth:`.reducers.Reducer.reduce` of :func:`.reducers.observations` bit
for bit: converting to float32 is monotone, so order statistics commute with it, and the
median's two middle values are added and halved in float32 as there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .reducers import Reducer, observations

__all__ = ["BLOCK_PIXELS", "NETWORK_STEPS", "reduce_steps", "sorting_network"]

BLOCK_PIXELS = 1 << 19
"""Pixels per band of rows reduced at once (a few MB per step: the stack stays in cache)."""
NETWORK_STEPS = 64
"""Up to this many steps the median sorts with a network; past it with ``np.sort``."""
_ORDERED = frozenset({"median", "min", "max"})


@functools.lru_cache(maxsize=NETWORK_STEPS)
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sorting network for ``n`` items: compare-exchange pairs
    ``(i, j)``, ``i < j``; applying them in order (smaller to ``i``) sorts any input.

    Parameters
    ----------
    n : int
        Items to sort (any n >= 0, not only powers of two).

    Returns
    -------
    tuple of (int, int)
    """
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def _sort_steps(stack: np.ndarray) -> np.ndarray:
    """``stack`` (steps, ...) sorted along the steps, in place when a network does it."""
    n = stack.shape[0]
    if n > NETWORK_STEPS:
        return np.sort(stack, axis=0)
    low = np.empty_like(stack[0])
    for i, j in sorting_network(n):
        np.minimum(stack[i], stack[j], out=low)
        np.maximum(stack[i], stack[j], out=stack[j])
        stack[i] = low
    return stack


def _sentinel(dtype: np.dtype, high: bool) -> Any:
    if dtype.kind == "f":
        return dtype.type(np.inf if high else -np.inf)
    info = np.iinfo(dtype)
    return dtype.type(info.max if high else info.min)


def _invalid(stack: np.ndarray, nodata: Any, dropped: np.ndarray | None) -> np.ndarray | None:
    """(steps, ...) bool: True on observations :func:`.reducers.observations` makes NaN (None:
    every one is valid)."""
    invalid = np.isnan(stack) if stack.dtype.kind == "f" else None
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        hit = stack == np.asarray(nodata).astype(stack.dtype)
        invalid = hit if invalid is None else invalid | hit
    if dropped is not None:
        invalid = dropped if invalid is None else invalid | dropped
    return invalid


def _ordered(reducer: Reducer, stack: np.ndarray, invalid: np.ndarray | None,
             out: np.ndarray) -> None:
    """``median``, ``min``, ``max`` or ``count`` of ``stack`` into ``out`` (its rows)."""
    n = stack.shape[0]
    valid = n - invalid.sum(axis=0, dtype=np.int64) if invalid is not None else None
    if reducer.is_count:
        out[...] = n if valid is None else valid
        return
    if invalid is not None:
        np.putmask(stack, invalid, _sentinel(stack.dtype, reducer.name != "max"))
    if reducer.name == "min":
        values = stack.min(axis=0).astype(np.float32)
    elif reducer.name == "max":
        values = stack.max(axis=0).astype(np.float32)
    else:
        ordered = _sort_steps(stack)
        count = np.full(stack.shape[1:], n, np.int64) if valid is None else valid
        low = np.take_along_axis(ordered, ((np.maximum(count, 1) - 1) // 2)[np.newaxis], 0)
        high = np.take_along_axis(ordered, (count // 2).clip(max=n - 1)[np.newaxis], 0)
        values = (low[0].astype(np.float32) + high[0].astype(np.float32)) / np.float32(2)
    if valid is not None:
        values[valid == 0] = np.float32(np.nan)
    out[...] = values


def reduce_steps(reducer: Reducer, steps: Sequence[np.ndarray], nodata: Any,
                 dropped: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
    """One month's (y, x) result of ``reducer`` from its time steps' raw pixels.

    Parameters
    ----------
    reducer : Reducer
        What to compute.
    steps : sequence of ndarray
        The month's steps, each (y, x) raw pixels of one band (any numeric dtype).
    nodata : scalar or None
        The band's nodata value: those pixels are not observations (NaN never is).
    dropped : sequence of (ndarray or None), optional
        Per step, True on the pixels the quality mask drops (None: none dropped).

    Returns
    -------
    ndarray
        (y, x) of ``reducer.dtype``: :meth:`Reducer.reduce` of :func:`.reducers.observations`
        of the stacked steps, bit for bit; :attr:`Reducer.fill` where no observation is valid.
    """
    shape = steps[0].shape
    out = np.empty(shape, reducer.dtype)
    flags = list(dropped) if dropped is not None else [None] * len(steps)
    rows = max(1, BLOCK_PIXELS // max(1, int(np.prod(shape[1:], dtype=np.int64))))
    floats = steps[0].dtype.kind == "f" and steps[0].dtype != np.float32
    # one stack for every band of rows: fresh arrays of this size cost page faults each
    # time on workers that return freed memory at once (a nanny's MALLOC_TRIM_THRESHOLD_)
    buffer = np.empty((len(steps), min(rows, shape[0]), *shape[1:]), steps[0].dtype)
    for start in range(0, shape[0], rows):
        block = slice(start, min(start + rows, shape[0]))
        stack = np.stack([step[block] for step in steps],
                         out=buffer[:, :block.stop - block.start])
        mask = None
        if any(f is not None for f in flags):
            mask = np.stack([np.zeros(stack.shape[1:], bool) if f is None else f[block]
                             for f in flags])
        if reducer.name in _ORDERED or reducer.is_count:
            invalid = _invalid(stack, nodata, mask)
            if floats:  # float64 and float16 are reduced as float32, as observations() does
                stack = stack.astype(np.float32)
            _ordered(reducer, stack, invalid, out[block])
        else:
            out[block] = reducer.reduce(observations(stack, nodata, mask))
    return out
