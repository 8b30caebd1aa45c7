"""``DatasetDescriptor``: how a dataset is discovered, accessed and mapped (a frozen value).

A descriptor names a STAC API and collection (or a stac-geoparquet file), maps band codes to
asset keys (plus ``band_index`` for multi-sample files), rewrites hrefs at build time, carries
the storage options reads need, and an optional URL signer applied at read time, never stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..redact import describe_callable, redact_mapping, redact_text, redact_url

__all__ = ["DatasetDescriptor", "Signer"]

Signer = Callable[[str], str]
"""Turns an href into the URL to fetch (for example by appending a SAS token)."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class DatasetDescriptor:
    """Everything needed to build and read one dataset; ``id`` is ``"provider/collection"``.

    ``band_map`` maps band codes (``"B04"``) to asset keys (``"red"``); several codes may share
    one asset key with different ``band_index`` values (NAIP's four bands in one file).
    ``url_rewrite_patterns`` replaces href prefixes when the index is built
    (``{"s3://bucket/": "https://bucket.s3.amazonaws.com/"}``). ``storage_options`` are
    fsspec options keyed by protocol (``{"s3": {"anon": True}}``). ``signer`` runs on every
    href when bytes are fetched and its result is never written to the index.
    """

    id: str
    stac_api: str | None = None
    stac_collection: str | None = None
    band_map: Mapping[str, str] = field(default_factory=dict, hash=False)
    band_index_map: Mapping[str, int] = field(default_factory=dict, hash=False)
    url_rewrite_patterns: Mapping[str, str] = field(default_factory=dict, hash=False)
    storage_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    signer: Signer | None = field(default=None, hash=False, compare=False)
    description: str = ""
    geoparquet_uri: str | None = None
    column_map: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ValueError(f"descriptor id {self.id!r} must look like 'provider/collection'")
        if self.stac_api is None and self.geoparquet_uri is None:
            raise ValueError(f"descriptor {self.id!r} needs a stac_api or a geoparquet_uri")
        if self.stac_api is not None and not self.stac_collection:
            raise ValueError(f"descriptor {self.id!r} has a stac_api but no stac_collection")
        unknown = sorted(set(self.band_index_map) - set(self.band_map))
        if unknown:
            raise ValueError(f"descriptor {self.id!r}: band_index_map names unmapped bands {unknown}")
        if self.signer is not None and not callable(self.signer):
            raise TypeError(f"descriptor {self.id!r}: signer must be callable")
        for name in ("band_map", "band_index_map", "url_rewrite_patterns", "storage_options",
                     "column_map"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @property
    def bands(self) -> list[str]:
        """The band codes this descriptor maps, in declaration order."""
        return list(self.band_map)

    def asset_key(self, band: str) -> str | None:
        """The asset key holding ``band`` (``None`` when the band is not mapped)."""
        return self.band_map.get(band)

    def band_for_asset(self, key: str) -> str | None:
        """The band code mapped to asset ``key`` (the first one when several share it)."""
        for band, asset in self.band_map.items():
            if asset == key:
                return band
        return None

    def storage_options_dict(self) -> dict[str, Any] | None:
        """The storage options as plain (mutable, picklable) dicts; ``None`` when empty."""
        return _plain(self.storage_options) or None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description, safe to print, log or store: it is redacted.

        Storage options keep their keys, but the values of secret-looking keys (``key``,
        ``secret``, ``token``, ``Authorization`` headers, ...) are ``"***"``; URLs lose their
        query and userinfo (``rasteret_dask.redact``); the signer is named, never serialised.
        It is a description, not a configuration: the descriptor itself (and its pickle,
        which is how it travels to workers) keeps the real values, and
        :meth:`storage_options_dict` returns them.
        """
        return {
            "id": self.id,
            "stac_api": None if self.stac_api is None else redact_url(self.stac_api),
            "stac_collection": self.stac_collection,
            "geoparquet_uri": None if self.geoparquet_uri is None else redact_url(self.geoparquet_uri),
            "band_map": dict(self.band_map),
            "band_index_map": dict(self.band_index_map),
            "url_rewrite_patterns": {redact_text(k): redact_text(v)
                                     for k, v in self.url_rewrite_patterns.items()},
            "storage_options": redact_mapping(self.storage_options),
            "signer": describe_callable(self.signer),
            "column_map": dict(self.column_map),
            "description": self.description,
        }

    def __repr__(self) -> str:
        shown = self.to_dict()
        fields = ", ".join(f"{name}={value!r}" for name, value in shown.items()
                           if value not in (None, {}, ""))
        return f"DatasetDescriptor({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType does not pickle: rebuild from plain dicts (descriptors ride in graphs)
        return (_rebuild, (self.id, self.stac_api, self.stac_collection, dict(self.band_map),
                           dict(self.band_index_map), dict(self.url_rewrite_patterns),
                           _plain(self.storage_options), self.signer, self.description,
                           self.geoparquet_uri, dict(self.column_map)))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _rebuild(*args: Any) -> DatasetDescriptor:
    return DatasetDescriptor(*args)
