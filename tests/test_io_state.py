"""The per-process I/O state (no network): one filesystem per options and loop, one semaphore
per loop and limit, one pool of reading threads; all of it forgotten in a forked child."""

from __future__ import annotations

import asyncio
import os

import pytest

from rasteret_dask.io import state


@pytest.fixture
def fresh() -> None:
    state.clear_cache()


def test_filesystems_are_cached_per_options(fresh: None, tmp_path) -> None:
    href = str(tmp_path / "a.tif")
    fs, path = state.resolve(href)
    assert path == href
    assert state.resolve(str(tmp_path / "b.tif"))[0] is fs
    assert state.resolve(href, {"auto_mkdir": True})[0] is not fs
    state.clear_cache()
    assert state.resolve(href)[0] is not fs


def test_async_filesystems_are_bound_per_loop_and_closed_with_it(fresh: None) -> None:
    href = "http://127.0.0.1:9/a.tif"

    async def bound() -> tuple[object, object, object]:
        fs = state.resolve(href, asynchronous=True)[0]
        again = state.resolve(href, asynchronous=True)[0]
        await state.close_loop_filesystems()
        after = state.resolve(href, asynchronous=True)[0]
        await state.close_loop_filesystems()
        return fs, again, after

    first, again, after = asyncio.run(bound())
    assert first is again and after is not first
    other = asyncio.run(bound())[0]
    assert other is not first
    # on fsspec's IO loop the ordinary instance is used, as by synchronous callers
    sync_fs = state.resolve(href)[0]
    assert state.resolve(href, asynchronous=True, loop=state.io_loop())[0] is sync_fs


def test_semaphores_are_per_loop_and_limit() -> None:
    loop, other = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert state.semaphore(loop, 4) is state.semaphore(loop, 4)
        assert state.semaphore(loop, 8) is not state.semaphore(loop, 4)
        assert state.semaphore(other, 4) is not state.semaphore(loop, 4)
    finally:
        loop.close()
        other.close()


def test_a_forked_child_forgets_the_parents_state(fresh: None, tmp_path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.new_event_loop()
    try:
        fs = state.resolve(str(tmp_path / "a.tif"))[0]
        sem = state.semaphore(loop, 4)
        pool = state.local_pool()
        assert state.local_pool() is pool
        monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen in a child process
        assert state.resolve(str(tmp_path / "a.tif"))[0] is not fs
        assert state.semaphore(loop, 4) is not sem
        assert state.local_pool() is not pool
    finally:
        loop.close()
