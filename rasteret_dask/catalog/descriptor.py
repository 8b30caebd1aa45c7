"""``DatasetDescriptor``: how a dataset is discovered, accessed and mapped (a frozen value).

A descriptor names a STAC API and collection (or a stac-geoparquet / record-table file, or a
published index that ``load("<id>")`` opens), maps band codes to asset keys (plus
``band_index`` for multi-sample files; or an ``href_column`` whose file holds the bands of
``band_index_map``), rewrites hrefs at build time, carries the storage options reads need, an
optional URL signer applied at read time (never stored), and what a user must know before
using the data: its licence and whether access needs credentials. Every field is checked when
the descriptor is made (types, ids, band maps), so a wrong descriptor fails at once.
"""

from __future__ import annotations

import dataclasses
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
    ``href_column`` names a record table's column of file URLs whose samples are the bands
    of ``band_index_map`` (``{"A00": 0, ..., "A63": 63}``), for tables without assets.
    ``url_rewrite_patterns`` replaces href prefixes when the index is built
    (``{"s3://bucket/": "https://bucket.s3.amazonaws.com/"}``). ``storage_options`` are
    fsspec options keyed by protocol (``{"s3": {"anon": True}}``). ``signer`` runs on every
    href when bytes are fetched and its result is never written to the index.
    ``index_uri`` is a published index of this project's format that ``load("<id>")`` opens.
    ``license`` (an SPDX id, or ``"proprietary"`` for a bespoke licence, as the provider
    states it), ``license_url`` and ``requires_credentials`` (an account, keys or paid
    requests; a signer that needs no account does not count) describe the terms of access;
    ``notes`` say which of these facts were confirmed and where.
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
    name: str = ""
    index_uri: str | None = None
    href_column: str | None = None
    license: str = ""
    license_url: str = ""
    requires_credentials: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise ValueError(f"descriptor id {self.id!r} must look like 'provider/collection'")
        self._check_types()
        if self.stac_api is None and self.geoparquet_uri is None and self.index_uri is None:
            raise ValueError(f"descriptor {self.id!r} needs a stac_api, a geoparquet_uri or "
                             "an index_uri")
        if self.stac_api is not None and not self.stac_collection:
            raise ValueError(f"descriptor {self.id!r} has a stac_api but no stac_collection")
        if self.href_column is None:
            unknown = sorted(set(self.band_index_map) - set(self.band_map))
            if unknown:
                raise ValueError(f"descriptor {self.id!r}: band_index_map names unmapped "
                                 f"bands {unknown}")
        elif self.band_map:
            raise ValueError(f"descriptor {self.id!r}: href_column takes its bands from "
                             "band_index_map; give band_map or href_column, not both")
        elif not self.band_index_map:
            raise ValueError(f"descriptor {self.id!r}: href_column needs a band_index_map "
                             "naming the bands of each file")
        if self.signer is not None and not callable(self.signer):
            raise TypeError(f"descriptor {self.id!r}: signer must be callable")
        for name in ("band_map", "band_index_map", "url_rewrite_patterns", "storage_options",
                     "column_map"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def _check_types(self) -> None:
        """Every field of the right type (a wrong one names the descriptor and the field)."""
        def fail(name: str, expected: str) -> None:
            value = getattr(self, name)
            raise TypeError(f"descriptor {self.id!r}: {name} must be {expected}, got "
                            f"{type(value).__name__}")

        for name in ("stac_api", "stac_collection", "geoparquet_uri", "index_uri",
                     "href_column"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                fail(name, "a non-empty string or None")
        for name in ("description", "name", "license", "license_url", "notes"):
            if not isinstance(getattr(self, name), str):
                fail(name, "a string")
        if not isinstance(self.requires_credentials, bool):
            fail("requires_credentials", "True or False")
        for name in ("band_map", "url_rewrite_patterns", "column_map"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) and k and v
                    for k, v in value.items()):
                fail(name, "a mapping of non-empty strings to non-empty strings")
        indices = self.band_index_map
        if not isinstance(indices, Mapping) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in indices.items()):
            fail("band_index_map", "a mapping of band names to sample indices (int >= 0)")
        if not isinstance(self.storage_options, Mapping):
            fail("storage_options", "a mapping")

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
            "name": self.name,
            "index_uri": None if self.index_uri is None else redact_url(self.index_uri),
            "href_column": self.href_column,
            "license": self.license,
            "license_url": self.license_url,
            "requires_credentials": self.requires_credentials,
            "notes": self.notes,
        }

    def __repr__(self) -> str:
        shown = self.to_dict()
        fields = ", ".join(f"{name}={value!r}" for name, value in shown.items()
                           if value not in (None, {}, ""))
        return f"DatasetDescriptor({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType does not pickle: rebuild from plain dicts (descriptors ride in graphs)
        values = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return (_rebuild, (values,))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _rebuild(values: dict[str, Any]) -> DatasetDescriptor:
    return DatasetDescriptor(**values)
