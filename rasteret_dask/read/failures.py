"""Tile failures at compute time: raised (``errors="raise"``) or read as nodata and listed
(``errors="nodata"``).

With ``errors="nodata"`` every read (one Dataset) gets a :class:`ReadErrors` list, its
``attrs["read_errors"]``, and its decode tasks carry a :class:`TileFailures` naming it by a
token. A tile that cannot be fetched or decoded is filled with nodata by its chunk's task,
which logs a warning on the ``rasteret_dask.read`` logger and adds the error (record, band,
href, byte range, reason) to the list:

- directly, when the task runs in the process holding the list (threaded and synchronous
  schedulers, a ``LocalCluster(processes=False)``);
- on a ``distributed`` cluster, as a worker event (``Worker.log_event`` on topic
  :data:`TOPIC`) that reaches the list through the client that was the default client when the
  read was built (``Client.subscribe_topic``). Events travel on the same streams as the task
  results, ahead of them, so the list is complete when ``compute`` returns. A read built
  without a client (or computed on another one, or by multiprocessing) leaves its failures in
  the workers' log output and, on a cluster, in ``client.get_events(TOPIC)``.

The list keeps each error once, in the order they happened; computing a read again adds only
new errors.
"""

from __future__ import annotations

import logging
import sys
import threading
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .buffers import on_distributed_worker

__all__ = ["ERRORS", "TOPIC", "ReadErrors", "TileFailures", "check_errors", "new_read_errors"]

ERRORS = ("raise", "nodata")
"""What a read does with a tile that cannot be fetched or decoded."""

TOPIC = "rasteret_dask.read_errors"
"""The distributed event topic of tile failures: ``{"read": token, "error": message}``."""

logger = logging.getLogger("rasteret_dask.read")

_lock = threading.Lock()
_live: weakref.WeakValueDictionary[str, ReadErrors] = weakref.WeakValueDictionary()
_subscribed: set[str] = set()  # ids of the distributed clients listening to TOPIC


class ReadErrors(list):
    """The tile failures of one read, as ``"record ..., band ..., href ...: reason"`` strings.

    A plain list to every consumer (``attrs`` writers included); it is filled while the read
    computes and pickles by reference: unpickled where the read was built, it is that list.
    """

    __slots__ = ("token", "_seen", "__weakref__")

    def __init__(self, token: str, items: Iterable[str] = ()) -> None:
        super().__init__()
        self.token = token
        self._seen: set[str] = set()
        self.extend_new(items)

    def extend_new(self, items: Iterable[str]) -> None:
        """Append each of ``items`` not already listed (under the module lock)."""
        for item in items:
            if item not in self._seen:
                self._seen.add(item)
                self.append(item)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_collector, (self.token, list(self)))


def _collector(token: str, items: Iterable[str] = ()) -> ReadErrors:
    """The live list of ``token`` in this process (made and kept while referenced)."""
    with _lock:
        live = _live.get(token)
        if live is None:
            live = ReadErrors(token)
            _live[token] = live
        live.extend_new(items)
        return live


def _record(token: str, message: str) -> None:
    with _lock:
        live = _live.get(token)
        if live is not None:
            live.extend_new((message,))


def _on_event(event: tuple[float, Any]) -> None:
    """A distributed client's handler of :data:`TOPIC` events."""
    _, message = event
    if isinstance(message, dict) and "read" in message and "error" in message:
        _record(str(message["read"]), str(message["error"]))


def _watch_distributed() -> None:
    """Subscribe the default distributed client (if any) to :data:`TOPIC`, once."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return
    try:
        client = distributed.default_client()
    except ValueError:  # no client
        return
    with _lock:
        if client.id in _subscribed:
            return
        _subscribed.add(client.id)
    client.subscribe_topic(TOPIC, _on_event)


def check_errors(errors: str) -> str:
    """``errors`` when it is one of :data:`ERRORS`; ValueError otherwise."""
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, not {errors!r}")
    return errors


@dataclass(frozen=True, slots=True)
class TileFailures:
    """Carried by decode tasks of an ``errors="nodata"`` read: where failures are reported."""

    read: str

    def report(self, error: BaseException) -> None:
        """A tile was filled with nodata instead of ``error``: log it and list it."""
        message = str(error)
        logger.warning("tile read as nodata (errors='nodata'): %s", message)
        _record(self.read, message)
        if on_distributed_worker():
            distributed = sys.modules["distributed"]
            distributed.get_worker().log_event(TOPIC, {"read": self.read, "error": message})


def new_read_errors() -> tuple[ReadErrors, TileFailures]:
    """A new read's error list and the policy its tasks carry (``errors="nodata"``)."""
    token = uuid.uuid4().hex
    errors = _collector(token)
    _watch_distributed()
    return errors, TileFailures(token)
