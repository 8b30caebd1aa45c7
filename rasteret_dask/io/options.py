"""Storage options of an href: explicit options merged over configuration-held ones (pure).

Storage options are merged from ``dask.config`` key :data:`CONFIG_KEY` (a mapping keyed by
protocol, e.g. ``{"s3": {"anon": True}}``) under any explicit options, so credentials live in
configuration and never in an index. Objects that travel to Dask workers carry only options,
never filesystem instances (see :mod:`.state`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask.config
import fsspec
from fsspec.core import split_protocol
from fsspec.registry import known_implementations, registry
from fsspec.spec import AbstractFileSystem

__all__ = ["CONFIG_KEY", "href_protocol", "storage_options_for"]

CONFIG_KEY = "rasteret_dask.storage_options"
"""Dask config holding storage options keyed by protocol."""


def href_protocol(href: str) -> str:
    """The fsspec protocol of ``href``; plain paths are ``"file"``."""
    protocol, _ = split_protocol(href)
    return protocol or "file"


def _protocol_names(cls: type[AbstractFileSystem], protocol: str) -> list[str]:
    names = cls.protocol if isinstance(cls.protocol, tuple | list) else (cls.protocol,)
    ordered = [name for name in names if name != protocol]
    ordered.append(protocol)
    return ordered


def _is_protocol_keyed(options: Mapping[str, Any]) -> bool:
    known = set(known_implementations) | set(registry)
    return bool(options) and all(
        key in known and isinstance(value, Mapping) for key, value in options.items()
    )


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        elif isinstance(value, Mapping):
            out[key] = _merge({}, value)
        else:
            out[key] = value
    return out


def storage_options_for(
    href: str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Options for the filesystem of ``href``: explicit options merged over dask.config ones.

    Parameters
    ----------
    href
        The object to open; its protocol picks the options.
    storage_options
        Either flat (fsspec style, used for this href as given) or keyed by protocol like the
        configuration. Nested dicts (``client_kwargs``, ``headers``) merge.

    Returns
    -------
    dict
        The options to build the filesystem with.
    """
    protocol = href_protocol(href)
    cls = fsspec.get_filesystem_class(protocol)
    names = _protocol_names(cls, protocol)
    merged: dict[str, Any] = {}
    configured = dask.config.get(CONFIG_KEY, default=None) or {}
    for name in names:
        merged = _merge(merged, configured.get(name) or {})
    explicit = storage_options or {}
    if _is_protocol_keyed(explicit):
        for name in names:
            merged = _merge(merged, explicit.get(name) or {})
    else:
        merged = _merge(merged, explicit)
    return merged
