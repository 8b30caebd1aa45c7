"""``RangeServerProcess``: the HTTP Range test server in a child process (benchmarks, fairness).

A ``RangeServer`` running in the same process as the reader competes with decoding for the
GIL; in a spawned child it stays out of the way. The API is forwarded over a pipe.
"""

from __future__ import annotations

import functools
import multiprocessing
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

from .servers import RangeServer

__all__ = ["RangeServerProcess"]


def _serve_in_child(conn: Connection, root: str, options: dict[str, Any]) -> None:
    """Child process body: run a RangeServer, answer ``(op, name, args, kwargs)`` messages."""
    server = RangeServer(root, **options)
    try:
        server.start()
    except BaseException as exc:
        conn.send(("error", exc))
        return
    conn.send(("ok", server.port))
    try:
        while True:
            try:
                op, name, args, kwargs = conn.recv()
            except EOFError:  # the parent went away
                break
            if op == "stop":
                conn.send(("ok", None))
                break
            try:
                value = None
                if op == "set":
                    setattr(server, name, args[0])
                elif op == "call":
                    value = getattr(server, name)(*args, **kwargs)
                else:
                    value = getattr(server, name)
            except Exception as exc:
                try:
                    conn.send(("error", exc))
                except Exception:  # an exception that does not pickle
                    conn.send(("error", RuntimeError(repr(exc))))
            else:
                conn.send(("ok", value))
    finally:
        server.stop()
        conn.close()


class _Remote:
    """A RangeServer attribute of the child: properties are read and set there, methods run there."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        attribute = getattr(RangeServer, name, None)  # None: a plain instance attribute
        self.method = callable(attribute)
        self.__doc__ = getattr(attribute, "__doc__", None) if attribute is not None else None

    def __get__(self, obj: RangeServerProcess | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        if self.method:
            return functools.partial(obj._call, "call", self.name)
        return obj._call("get", self.name)

    def __set__(self, obj: RangeServerProcess, value: Any) -> None:
        obj._call("set", self.name, value)


class RangeServerProcess:
    """A :class:`RangeServer` over ``root`` run in a child process (``spawn``), with its API.

    For callers whose own threads must not share a GIL with the server (benchmarks). The log,
    counters, latency and faults are forwarded over a pipe (values cross it pickled).
    """

    latency = _Remote()
    ignore_range = _Remote()
    fail_rate = _Remote()
    fail_first = _Remote()
    requests = _Remote()
    bytes_sent = _Remote()
    max_in_flight = _Remote()
    count = _Remote()
    reset = _Remote()
    set_status = _Remote()
    set_truncate = _Remote()
    set_stall = _Remote()
    clear_faults = _Remote()
    url = RangeServer.url
    href = RangeServer.href

    def __init__(self, root: Path | str, *, latency: float = 0.0, host: str = "127.0.0.1",
                 port: int = 0, seed: int = 0, aliases: Sequence[tuple[str, str]] = (),
                 start_timeout: float = 60.0) -> None:
        self.root = Path(root).resolve()
        self.aliases = tuple((str(p), str(r)) for p, r in aliases)
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self._options = {"latency": latency, "host": host, "port": port, "seed": seed,
                         "aliases": self.aliases}
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> RangeServerProcess:
        """Start the child; returns self once its port is bound."""
        if self._process is not None:
            return self
        context = multiprocessing.get_context("spawn")
        conn, child = context.Pipe()
        process = context.Process(target=_serve_in_child, args=(child, str(self.root), self._options),
                                  name="RangeServerProcess", daemon=True)
        process.start()
        child.close()
        try:
            if not conn.poll(self.start_timeout):
                raise TimeoutError(f"RangeServerProcess not started within {self.start_timeout} s")
            try:
                status, value = conn.recv()
            except EOFError:
                raise RuntimeError(
                    "RangeServerProcess's child exited before serving (a spawned child imports "
                    "the main module: is its code under `if __name__ == '__main__':`?)"
                ) from None
            if status != "ok":
                raise value
        except BaseException:
            process.kill()
            process.join()
            conn.close()
            raise
        self._conn, self._process, self.port = conn, process, int(value)
        return self

    def stop(self) -> None:
        """Stop the server and wait for the child to exit."""
        conn, process = self._conn, self._process
        if conn is None or process is None:
            return
        with self._lock:
            try:
                conn.send(("stop", "", (), {}))
                if conn.poll(10):
                    conn.recv()
            except (OSError, EOFError):
                pass
            conn.close()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
        self._conn = self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, op: str, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._conn is None:
                raise RuntimeError("RangeServerProcess is not running")
            self._conn.send((op, name, args, kwargs))
            status, value = self._conn.recv()
        if status != "ok":
            raise value
        return value
