"""Local object-store servers on 127.0.0.1 for tests, the demo and benchmarks.

:class:`RangeServer` serves a directory over HTTP with Range support (aiohttp, sendfile),
a request log, concurrency accounting, latency and fault injection. :class:`RangeServerProcess`
runs one in a child process, so its event loop does not compete with the caller for the GIL.
:class:`S3Server` runs moto's S3 in server mode and prepares buckets and objects for s3fs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from aiohttp import web

__all__ = ["RangeServer", "RequestRecord", "S3Server"]



@dataclass(frozen=True)
class RequestRecord:
    """One request as served: method, path relative to the root, Range header, status, bytes."""

    method: str
    path: str
    range: str | None
    status: int
    nbytes: int


@dataclass(frozen=True)
class _Truncation:
    keep: int
    disconnect: bool
    stall: float = 0.0  # > 0: pause this long after ``keep`` bytes, then send the rest


def _request_key(name: str, kind: type) -> Any:
    """A typed request-storage key where aiohttp has them (3.12+), else a plain string."""
    factory = getattr(web, "RequestKey", None)
    return factory(name, kind) if factory is not None else name


_COUNTED = _request_key("rasteret_dask.counted", bool)
_LOGGED = _request_key("rasteret_dask.logged", bool)
_NBYTES = _request_key("rasteret_dask.nbytes", int)


def _norm(path: str) -> str:
    return path.lstrip("/")


class RangeServer:
    """HTTP server for the files under ``root``, in a background thread with its own loop.

    Faults (``fail_rate``, ``fail_first``, :meth:`set_status`, :meth:`set_truncate`),
    ``latency`` and ``ignore_range`` (answer 200 with the whole file, like a server without
    Range support) can be changed while it runs; the request log is thread-safe.

    ``aliases`` are ``(pattern, replacement)`` pairs: a request path that a pattern matches in
    full is served from ``match.expand(replacement)`` (relative to ``root``), the first such
    file that exists winning, else from the path itself; many URLs can so serve one file (the
    log keeps the URL's path).
    """

    def __init__(
        self,
        root: Path | str,
        *,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        aliases: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.root = Path(root).resolve()
        self.aliases = tuple((str(p), str(r)) for p, r in aliases)
        self._aliases = tuple((re.compile(p), r) for p, r in self.aliases)
        self.host = host
        self.port = port
        self.latency = latency
        self.ignore_range = False
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._fail_rate = 0.0
        self._fail_first = 0
        self._random = random.Random(seed)
        self._seed = seed
        self._seen: dict[str, int] = {}
        self._statuses: dict[str, int] = {}
        self._truncations: dict[str, _Truncation] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> RangeServer:
        """Start serving; returns self once the port is bound."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready: list[BaseException | None] = []
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._setup())
                ready.append(None)
            except BaseException as exc:  # reported to the starting thread
                ready.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="RangeServer", daemon=True)
        self._thread.start()
        started.wait()
        if ready and ready[0] is not None:
            self._thread.join()
            loop.close()
            self._thread = None
            raise ready[0]
        return self

    async def _setup(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        app.on_response_prepare.append(self._on_prepare)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    def stop(self) -> None:
        """Stop serving and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = None
        self._thread = None
        self._runner = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    def href(self, relative_path: str | Path) -> str:
        """URL of a file given by its path relative to ``root``."""
        return f"{self.url}/{_norm(Path(relative_path).as_posix())}"

    # -- request log -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, in the order the responses started."""
        with self._lock:
            return list(self._log)

    def count(self, method: str | None = "GET", path: str | None = None) -> int:
        """Number of logged requests with this method (None: any) and path (None: any)."""
        wanted = None if path is None else _norm(path)
        with self._lock:
            return sum(
                1
                for r in self._log
                if (method is None or r.method == method) and (wanted is None or r.path == wanted)
            )

    @property
    def bytes_sent(self) -> int:
        """Total body bytes sent over the logged requests."""
        with self._lock:
            return sum(r.nbytes for r in self._log)

    @property
    def max_in_flight(self) -> int:
        """Peak number of requests in progress at once since the last reset.

        A request counts from its arrival until its response starts (after ``latency``).
        """
        with self._lock:
            return self._max_in_flight

    def reset(self) -> None:
        """Clear the log, the in-flight peak and the per-path ``fail_first`` counters."""
        with self._lock:
            self._log.clear()
            self._max_in_flight = self._in_flight
            self._seen.clear()

    # -- fault injection -------------------------------------------------------------------

    @property
    def fail_rate(self) -> float:
        """Fraction of requests answered 503 (pseudo-random, reproducible from ``seed``)."""
        return self._fail_rate

    @fail_rate.setter
    def fail_rate(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError("fail_rate must be within [0, 1]")
        with self._lock:
            self._fail_rate = value
            self._random = random.Random(self._seed)

    @property
    def fail_first(self) -> int:
        """The first N requests to each path (counted from now) are answered 503."""
        return self._fail_first

    @fail_first.setter
    def fail_first(self, value: int) -> None:
        with self._lock:
            self._fail_first = max(0, int(value))
            self._seen.clear()

    def set_status(self, path: str, status: int | None) -> None:
        """Answer every request to ``path`` with ``status`` (None removes the override)."""
        with self._lock:
            if status is None:
                self._statuses.pop(_norm(path), None)
            else:
                self._statuses[_norm(path)] = int(status)

    def set_truncate(self, path: str, keep: int | None, *, disconnect: bool = False) -> None:
        """Send at most ``keep`` body bytes for ``path`` while announcing the full range.

        Without ``disconnect`` the response is well-formed but short (a short read); with it
        the full length is announced and the connection is dropped mid-body.
        """
        with self._lock:
            if keep is None:
                self._truncations.pop(_norm(path), None)
            else:
                self._truncations[_norm(path)] = _Truncation(max(0, int(keep)), disconnect)

    def set_stall(self, path: str, after: int | None, seconds: float = 0.0) -> None:
        """Send the first ``after`` body bytes for ``path``, pause ``seconds``, then the rest
        (a slow link mid-body; None removes it). Replaces a truncation of ``path``."""
        with self._lock:
            if after is None:
                self._truncations.pop(_norm(path), None)
            else:
                fault = _Truncation(max(0, int(after)), False, max(float(seconds), 1e-3))
                self._truncations[_norm(path)] = fault

    def clear_faults(self) -> None:
        """Remove every fault: fail rate, fail-first, status overrides, truncations, stalls."""
        with self._lock:
            self._fail_rate = 0.0
            self._fail_first = 0
            self._seen.clear()
            self._statuses.clear()
            self._truncations.clear()

    # -- serving ---------------------------------------------------------------------------

    def _decide(self, path: str) -> tuple[int | None, _Truncation | None]:
        with self._lock:
            seen = self._seen.get(path, 0)
            self._seen[path] = seen + 1
            if path in self._statuses:
                return self._statuses[path], None
            if seen < self._fail_first:
                return 503, None
            if self._fail_rate > 0.0 and self._random.random() < self._fail_rate:
                return 503, None
            return None, self._truncations.get(path)

    async def _on_prepare(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        # Logged as the response starts: the log is complete before the client sees it.
        nbytes = 0 if request.method == "HEAD" else request.get(_NBYTES, response.content_length)
        self._log_once(request, response.status, int(nbytes or 0))

    def _log_once(self, request: web.BaseRequest, status: int, nbytes: int) -> None:
        """Log a request and end its in-flight count, once per request handled here."""
        if not request.get(_COUNTED) or request.get(_LOGGED):
            return
        request[_LOGGED] = True
        path = _norm(request.match_info.get("tail", request.path))
        record = RequestRecord(request.method, path, request.headers.get("Range"), status, nbytes)
        with self._lock:
            self._log.append(record)
            self._in_flight -= 1

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        request[_COUNTED] = True
        path = _norm(request.match_info.get("tail", ""))
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            forced, truncation = self._decide(path)
            target = self._target(path)
            if forced is not None:
                return web.Response(status=forced, text=f"injected {forced}\n")
            if not target.is_relative_to(self.root) or not target.is_file():
                return web.Response(status=404, text="not found\n")
            special = await self._answer_fault(request, path, target)
            if special is not None:
                return special
            if truncation is not None:
                return await self._truncated(request, target, truncation)
            if self.ignore_range:
                body = await asyncio.to_thread(target.read_bytes)
                return web.Response(body=body, content_type="application/octet-stream")
            return web.FileResponse(target)
        except asyncio.CancelledError:  # client went away before a response started
            self._log_once(request, 499, 0)
            raise

    def _target(self, path: str) -> Path:
        """The file a request path names: the first existing alias target, else the path."""
        for pattern, replacement in self._aliases:
            match = pattern.fullmatch(path)
            if match is not None:
                candidate = (self.root / match.expand(replacement)).resolve()
                if candidate.is_relative_to(self.root) and candidate.is_file():
                    return candidate
        return (self.root / path).resolve()

    async def _answer_fault(
        self, request: web.Request, path: str, target: Path
    ) -> web.StreamResponse | None:
        """A subclass's own faulty answer to a request for an existing file, else None."""
        return None

    async def _truncated(
        self, request: web.Request, target: Path, truncation: _Truncation
    ) -> web.StreamResponse:
        size = target.stat().st_size
        try:
            window = request.http_range
        except ValueError:
            return web.Response(status=416)
        first, stop, _ = window.indices(size)
        if first >= stop:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        with target.open("rb") as handle:
            handle.seek(first)
            data = handle.read(stop - first)
        body = data[: truncation.keep]
        response = web.StreamResponse(status=206 if request.headers.get("Range") else 200)
        response.headers["Content-Range"] = f"bytes {first}-{stop - 1}/{size}"
        whole = truncation.disconnect or truncation.stall > 0
        response.content_length = len(data) if whole else len(body)
        request[_NBYTES] = len(data) if truncation.stall > 0 else len(body)
        await response.prepare(request)
        await response.write(body)
        if truncation.stall > 0:
            await asyncio.sleep(truncation.stall)
            await response.write(data[truncation.keep:])
        elif truncation.disconnect:
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response


class S3Server:
    """moto's S3 in server mode on a free local port, with helpers to fill buckets.

    Credentials are passed explicitly to every client, so no AWS environment or profile of the
    user is read or modified.
    """

    region = "us-east-1"
    key = "testing"
    secret = "testing"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True) -> None:
        self.host = host
        self.port = port
        self.quiet = quiet
        self._server: Any = None
        self._client: Any = None

    def start(self) -> S3Server:
        """Start moto's threaded server; returns self once it listens."""
        if self._server is not None:
            return self
        from moto.server import ThreadedMotoServer

        werkzeug_log = logging.getLogger("werkzeug")
        if self.quiet and werkzeug_log.level == logging.NOTSET:
            werkzeug_log.setLevel(logging.WARNING)  # one line per request otherwise

        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        self.port = int(server.get_host_and_port()[1])
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._client = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """The endpoint URL for boto3/s3fs clients."""
        return f"http://{self.host}:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """Options for ``s3fs.S3FileSystem`` pointing at this server."""
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }

    @property
    def client(self) -> Any:
        """A boto3 S3 client for this server (explicit dummy credentials)."""
        if self._client is None:
            import boto3

            session = boto3.session.Session(
                aws_access_key_id=self.key,
                aws_secret_access_key=self.secret,
                region_name=self.region,
            )
            self._client = session.client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (us-east-1, no location constraint)."""
        self.client.create_bucket(Bucket=name)

    def upload(self, local_path: Path | str, bucket: str, key: str) -> str:
        """Upload one file; returns its ``s3://bucket/key`` href."""
        self.client.upload_file(str(local_path), bucket, key)
        return f"s3://{bucket}/{key}"

    def upload_dir(self, local_dir: Path | str, bucket: str, prefix: str = "") -> list[str]:
        """Upload every file under ``local_dir`` keeping relative paths; returns the hrefs."""
        base = Path(local_dir)
        hrefs = []
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            relative = path.relative_to(base).as_posix()
            key = f"{prefix.strip('/')}/{relative}" if prefix.strip("/") else relative
            hrefs.append(self.upload(path, bucket, key))
        return hrefs

