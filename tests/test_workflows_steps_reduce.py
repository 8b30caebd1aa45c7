"""The month's steps reduced from raw pixels (``workflows.steps_reduce``, pure): every reducer
equals ``Reducer.reduce(observations(...))`` bit for bit, over dtypes, nodata, NaN, the
quality mask, sentinel-valued observations and step counts on both sides of the network."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rasteret_dask.workflows import steps_reduce
from rasteret_dask.workflows.reducers import Reducer, observations, parse_reducer
from rasteret_dask.workflows.steps_reduce import reduce_steps, sorting_network

REDUCERS = ("median", "mean", "min", "max", "count", "p90", "p2.5")


def _reference(reducer: Reducer, steps, nodata, dropped) -> np.ndarray:
    stack = np.stack(steps)
    flags = None
    if dropped is not None and any(d is not None for d in dropped):
        flags = np.stack([np.zeros(steps[0].shape, bool) if d is None else d for d in dropped])
    return reducer.reduce(observations(stack, nodata, flags))


@pytest.mark.parametrize("n", range(1, 40))
def test_the_network_sorts_every_order_of_zeros_and_ones_and_random_values(n):
    pairs = sorting_network(n)
    assert all(0 <= i < j < n for i, j in pairs)
    rng = np.random.default_rng(n)
    # the 0-1 principle: a network sorting every 0/1 input sorts every input
    inputs = (np.array(list(itertools.product((0, 1), repeat=n)), np.uint8).T if n <= 12
              else rng.integers(0, 2, (n, 4096), dtype=np.uint8))
    for data in (inputs, rng.integers(0, 50, (n, 512), dtype=np.int16)):
        want = np.sort(data, axis=0)
        got = steps_reduce._sort_steps(data.copy(), np.empty_like(data[0]))
        np.testing.assert_array_equal(got, want)


def _case(dtype, n, seed, *, nodata, with_nan=False, sentinel_values=False, mask=False):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    shape = (37, 23)
    if dtype.kind == "f":
        steps = [rng.normal(100, 30, shape).round(1).astype(dtype) for _ in range(n)]
    else:
        info = np.iinfo(dtype)
        steps = [rng.integers(max(info.min, -300), min(info.max, 300), shape, dtype=dtype,
                              endpoint=True) for _ in range(n)]
    for step in steps:
        gaps = rng.random(shape) < 0.3
        if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
            step[gaps] = nodata
        elif with_nan:
            step[gaps] = np.nan
        if sentinel_values:  # genuine values equal to the sentinels
            high = np.inf if dtype.kind == "f" else np.iinfo(dtype).max
            low = -np.inf if dtype.kind == "f" else np.iinfo(dtype).min
            step[rng.random(shape) < 0.2] = high
            step[rng.random(shape) < 0.2] = low
    for step in steps:  # rows without any observation
        if nodata is not None and not np.isnan(nodata):
            step[:3] = nodata
        elif dtype.kind == "f":
            step[:3] = np.nan
    dropped = None
    if mask:
        dropped = [None if k % 3 == 0 else rng.random(shape) < 0.25 for k in range(n)]
    return steps, dropped


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's percentiles of +-inf
@pytest.mark.parametrize("reducer", REDUCERS)
@pytest.mark.parametrize(("dtype", "nodata"), [
    ("uint16", 0), ("uint16", None), ("uint8", 255), ("int16", -9999), ("int32", 0),
    ("uint32", 7), ("float32", float("nan")), ("float32", -9999.0), ("float64", None),
])
@pytest.mark.parametrize("n", [1, 4, 13, 70])
def test_every_reducer_equals_the_float_path_bit_for_bit(reducer, dtype, nodata, n, monkeypatch):
    monkeypatch.setattr(steps_reduce, "BLOCK_PIXELS", 100)  # several bands of rows
    chosen = parse_reducer(reducer)
    for sentinels, mask in ((False, False), (True, False), (False, True)):
        if sentinels and reducer == "mean":
            continue  # float32 sums of values near +-2**31 depend on numpy's summation order
        steps, dropped = _case(dtype, n, n + len(reducer), nodata=nodata,
                               with_nan=dtype.startswith("float"), sentinel_values=sentinels,
                               mask=mask)
        want = _reference(chosen, steps, nodata, dropped)
        got = reduce_steps(chosen, steps, nodata, dropped)
        assert got.dtype == want.dtype == chosen.dtype
        message = f"{reducer} {dtype} n={n} sentinels={sentinels} mask={mask}"
        if reducer == "mean" and dtype.startswith("float"):
            # numpy's float32 sums depend on the array's layout (pairwise along the inner
            # axis): the float path itself differs by an ulp between tiles of another shape
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=message)
        else:
            np.testing.assert_array_equal(got, want, err_msg=message)


def test_large_integers_round_as_the_float_path_does():
    big = np.array([[16_777_217, 16_777_219, 2**31 - 1]], np.int64)
    steps = [big, big + 1, big - 3]
    for reducer in ("median", "min", "max"):
        np.testing.assert_array_equal(reduce_steps(parse_reducer(reducer), steps, None),
                                      _reference(parse_reducer(reducer), steps, None, None))


def test_steps_are_left_as_they_were():
    steps = [np.array([[0, 5]], np.uint16), np.array([[3, 0]], np.uint16)]
    before = [s.copy() for s in steps]
    got = reduce_steps(Reducer("median"), steps, 0, [np.array([[False, True]]), None])
    np.testing.assert_array_equal(got, np.array([[3, np.nan]], np.float32))
    for s, b in zip(steps, before, strict=True):
        np.testing.assert_array_equal(s, b)
