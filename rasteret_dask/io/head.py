"""The current identity of many objects at once: one HEAD per href, concurrently.

Used to verify that the objects an index describes are still the versions it was enriched
from. Per backend: HTTP ``HEAD`` (``ETag``, ``Content-Length``, ``Last-Modified``), S3
``HeadObject`` (``ETag``, ``ContentLength``, ``LastModified``), local files ``os.stat`` (size,
modification time), other filesystems their ``info``. Requests share the reader's per-loop
semaphore, timeout and retries (judged by :func:`~.errors.classify`); an href that keeps
failing gets a :class:`~.errors.FetchError` instead of an identity.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

import fsspec.asyn
from fsspec.implementations.http import HTTPFileSystem
from fsspec.implementations.local import LocalFileSystem

from rasteret_dask.io import state
from rasteret_dask.io.backends import is_async_filesystem
from rasteret_dask.io.errors import FetchError, HTTPStatusError, classify
from rasteret_dask.io.fetch import RangeReader
from rasteret_dask.io.identity import EPOCH, ObjectIdentity, from_http_headers, from_stat, utc

__all__ = ["head_identity", "identify"]

HEAD_FACTOR = 4
"""HEADs in flight per loop, in units of the reader's ``max_concurrent``: an answer without a
body costs the client little, so latency, not bandwidth, bounds verification."""


def _from_info(info: dict[str, Any]) -> ObjectIdentity:
    etag = info.get("ETag") or info.get("etag")
    modified = info.get("LastModified") or info.get("last_modified") or info.get("mtime")
    if isinstance(modified, int | float):
        modified = EPOCH + dt.timedelta(seconds=modified)
    size = info.get("size")
    return ObjectIdentity(etag, None if size is None else int(size),
                          utc(modified) if isinstance(modified, dt.datetime) else None)


async def head_identity(fs: Any, path: str) -> ObjectIdentity:
    """One attempt at the identity of ``path`` on ``fs`` (no retry), on the running loop.

    Raises
    ------
    HTTPStatusError
        An HTTP answer other than 200.
    FileNotFoundError, OSError
        As the filesystem raises them.
    """
    if isinstance(fs, LocalFileSystem):
        return from_stat(await asyncio.to_thread(os.stat, path))
    if isinstance(fs, HTTPFileSystem):
        session = await fs.set_session()
        kwargs = dict(fs.kwargs)
        headers = dict(kwargs.pop("headers", None) or {})
        async with session.head(fs.encode_url(path), headers=headers, allow_redirects=True,
                                **kwargs) as response:
            if response.status != 200:
                raise HTTPStatusError(response.status)
            length = response.headers.get("Content-Length")
            return from_http_headers(response.headers,
                                     int(length) if length and length.isdigit() else None)
    if type(fs).__module__.split(".", 1)[0] == "s3fs" and hasattr(fs, "_call_s3"):
        bucket, key, version = fs.split_path(path)
        extra = {"VersionId": version} if version else {}
        answer = await fs._call_s3("head_object", Bucket=bucket, Key=key, **extra)
        size = answer.get("ContentLength")
        return ObjectIdentity(answer.get("ETag") or None, None if size is None else int(size),
                              utc(answer.get("LastModified")))
    if is_async_filesystem(fs):
        return _from_info(await fs._info(path))
    return _from_info(await asyncio.to_thread(fs.info, path))


async def _identify_one(reader: RangeReader, href: str, semaphore: asyncio.Semaphore,
                        loop: asyncio.AbstractEventLoop) -> ObjectIdentity | FetchError:
    try:
        target = await asyncio.to_thread(reader.signer, href) if reader.signer else href
        fs, path = state.resolve(target, reader.storage_options, asynchronous=True, loop=loop)
    except Exception as exc:
        error = FetchError(href, 0, 0, 0, f"cannot open filesystem ({exc})")
        error.__cause__ = exc
        return error
    attempts = 0
    while True:
        attempts += 1
        try:
            async with semaphore, asyncio.timeout(reader.timeout):
                return await head_identity(fs, path)
        except Exception as exc:
            verdict = classify(exc)
            if not verdict.retryable or attempts >= reader.retries:
                error = FetchError(href, 0, 0, attempts, f"HEAD: {verdict.reason}",
                                   verdict.status)
                error.__cause__ = exc
                return error
        await asyncio.sleep(reader.backoff(attempts))


async def _identify(reader: RangeReader, hrefs: list[str]) -> list[ObjectIdentity | FetchError]:
    loop = asyncio.get_running_loop()
    semaphore = state.semaphore(loop, reader.max_concurrent * HEAD_FACTOR)
    return list(await asyncio.gather(*(_identify_one(reader, h, semaphore, loop)
                                       for h in hrefs)))


def identify(reader: RangeReader, hrefs: Sequence[str]) -> dict[str, ObjectIdentity | FetchError]:
    """The current identity of each distinct href (or why it could not be had), concurrently
    on fsspec's IO loop with at most ``HEAD_FACTOR * reader.max_concurrent`` requests in
    flight.

    Parameters
    ----------
    reader : RangeReader
        Storage options, signer, concurrency, timeout and attempts.
    hrefs : sequence of str
        The objects (repeats are asked once).

    Returns
    -------
    dict
        href -> ``ObjectIdentity`` or ``FetchError`` (range 0-0, reason prefixed ``HEAD:``).
    """
    unique = list(dict.fromkeys(hrefs))
    if not unique:
        return {}
    answers = fsspec.asyn.sync(state.io_loop(), _identify, reader, unique)
    return dict(zip(unique, answers, strict=True))
