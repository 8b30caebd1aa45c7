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


def _sort_steps(stack: np.ndarray, spare: np.ndarray) -> np.ndarray:
    """``stack`` (steps, ...) sorted along the steps, in place when a network does it
    (``spare``: an array shaped like one step, overwritten)."""
    n = stack.shape[0]
    if n > NETWORK_STEPS:
        return np.sort(stack, axis=0)
    for i, j in sorting_network(n):
        np.minimum(stack[i], stack[j], out=spare)
        np.maximum(stack[i], stack[j], out=stack[j])
        stack[i] = spare
    return stack


def _sentinel(dtype: np.dtype, high: bool) -> Any:
    if dtype.kind == "f":
        return dtype.type(np.inf if high else -np.inf)
    info = np.iinfo(dtype)
    return dtype.type(info.max if high else info.min)


class _Workspace:
    """The arrays one :func:`reduce_steps` call reuses for every band of rows: fresh arrays of
    these sizes cost page faults each time on workers that return freed memory at once (a
    nanny's ``MALLOC_TRIM_THRESHOLD_``)."""

    def __init__(self, n: int, pixels: int, dtype: np.dtype, values: np.dtype) -> None:
        self.n = n
        self.stack = np.empty(n * pixels, dtype)  # the raw steps
        self.invalid = np.empty(n * pixels, bool)
        self.count = np.empty(pixels, np.intp)  # valid observations per pixel
        self.at = np.empty(pixels, np.intp)
        self.index = np.empty(pixels, np.intp)
        self.lanes = np.arange(pixels, dtype=np.intp)
        self.low = np.empty(pixels, values)  # of the dtype reduced (float32 for float64)
        self.high = np.empty(pixels, values)
        self.empty = np.empty(pixels, bool)

    def steps(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(stack, invalid) views of (n, *shape), contiguous."""
        size = self.n * int(np.prod(shape))
        return (self.stack[:size].reshape(self.n, *shape),
                self.invalid[:size].reshape(self.n, *shape))

    def pick(self, ordered: np.ndarray, at: np.ndarray, into: np.ndarray) -> np.ndarray:
        """``ordered[at[p], p]`` for every pixel p (flat), into ``into``."""
        pixels = at.size
        index = self.index[:pixels]
        np.multiply(at, pixels, out=index)
        index += self.lanes[:pixels]
        return np.take(ordered.reshape(-1), index, out=into[:pixels], mode="clip")


def _invalid(stack: np.ndarray, nodata: Any, dropped: np.ndarray | None,
             into: np.ndarray) -> np.ndarray | None:
    """(steps, ...) bool into ``into``: True on observations :func:`.reducers.observations`
    makes NaN (None: every one is valid)."""
    have = False
    if stack.dtype.kind == "f":
        np.isnan(stack, out=into)
        have = True
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        value = np.asarray(nodata).astype(stack.dtype)
        if have:
            into |= stack == value
        else:
            np.equal(stack, value, out=into)
        have = True
    if dropped is not None:
        if have:
            into |= dropped
        else:
            into[...] = dropped
        have = True
    return into if have else None


def _ordered(reducer: Reducer, stack: np.ndarray, invalid: np.ndarray | None,
             out: np.ndarray, work: _Workspace) -> None:
    """``median``, ``min``, ``max`` or ``count`` of ``stack`` (steps, rows, cols) into ``out``
    (its rows)."""
    n = stack.shape[0]
    pixels = out.size
    flat = out.reshape(-1)
    count = None
    if invalid is not None:
        count = work.count[:pixels]
        np.sum(invalid.reshape(n, pixels), axis=0, dtype=np.intp, out=count)
        np.subtract(n, count, out=count)
    if reducer.is_count:
        flat[...] = n if count is None else count
        return
    if invalid is not None:
        np.putmask(stack, invalid, _sentinel(stack.dtype, reducer.name != "max"))
    if reducer.name in ("min", "max"):
        extreme = work.low[:pixels].reshape(out.shape)
        (np.min if reducer.name == "min" else np.max)(stack, axis=0, out=extreme)
        out[...] = extreme
    else:
        ordered = _sort_steps(stack, work.low[:pixels].reshape(out.shape))
        at = work.at[:pixels]  # each pixel's step of its lower, then upper, middle value
        if count is None:  # every pixel has n observations
            at.fill((n - 1) // 2)
        else:
            np.maximum(count, 1, out=at)
            at -= 1
            at //= 2
        low = work.pick(ordered, at, work.low)
        if count is None:
            at.fill(n // 2)
        else:
            np.floor_divide(count, 2, out=at)
        high = work.pick(ordered, at, work.high)
        np.add(low, high, out=flat, dtype=np.float32)
        np.divide(flat, np.float32(2), out=flat)
    if count is not None:
        np.equal(count, 0, out=work.empty[:pixels])
        np.copyto(flat, np.float32(np.nan), where=work.empty[:pixels])


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
    width = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    rows = max(1, BLOCK_PIXELS // width)
    floats = steps[0].dtype.kind == "f" and steps[0].dtype != np.float32
    work = _Workspace(len(steps), min(rows, shape[0]) * width, steps[0].dtype,
                      np.dtype(np.float32) if floats else steps[0].dtype)
    for start in range(0, shape[0], rows):
        block = slice(start, min(start + rows, shape[0]))
        stack, invalid = work.steps((block.stop - block.start, *shape[1:]))
        np.stack([step[block] for step in steps], out=stack)
        mask = None
        if any(f is not None for f in flags):
            mask = np.stack([np.zeros(stack.shape[1:], bool) if f is None else f[block]
                             for f in flags])
        if reducer.name in _ORDERED or reducer.is_count:
            found = _invalid(stack, nodata, mask, invalid)
            if floats:  # float64 and float16 are reduced as float32, as observations() does
                stack = stack.astype(np.float32)
            _ordered(reducer, stack, found, out[block], work)
        else:
            out[block] = reducer.reduce(observations(stack, nodata, mask))
    return out
