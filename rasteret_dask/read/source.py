"""What the resolved data source changes about a read: band names, storage options, signing.

The descriptor is resolved in the contract's order (``catalog.resolve_data_source``). Its band
map lets users ask for band codes when the index stores asset keys (and the reverse); its
storage options apply unless the caller passes their own; its signer runs at fetch time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog import DatasetDescriptor, resolve_data_source
from ..io import RangeReader

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["ReadSource", "read_source"]


@dataclass(frozen=True)
class ReadSource:
    """A read's data source: requested band -> stored band, and how bytes are fetched."""

    descriptor: DatasetDescriptor | None
    bands: dict[str, str] = field(default_factory=dict)

    @property
    def stored_bands(self) -> list[str]:
        """The bands as the index names them, in request order."""
        return list(self.bands.values())

    @property
    def renames(self) -> dict[str, str]:
        """stored -> requested, for the bands whose names differ."""
        return {stored: asked for asked, stored in self.bands.items() if stored != asked}

    def reader(self, storage_options: dict | None = None, max_concurrent: int | None = None
               ) -> RangeReader:
        """A RangeReader with the caller's options, else the descriptor's, and its signer."""
        options = storage_options
        if not options and self.descriptor is not None and self.descriptor.storage_options:
            options = self.descriptor.storage_options_dict()
        signer = self.descriptor.signer if self.descriptor is not None else None
        return RangeReader(storage_options=options, max_concurrent=max_concurrent or 64,
                           signer=signer)


def _stored_band(band: str, available: Sequence[str], descriptor: DatasetDescriptor | None
                 ) -> str | None:
    if band in available:
        return band
    if descriptor is None:
        return None
    key = descriptor.asset_key(band)
    if key is not None and key in available:
        return key
    code = descriptor.band_for_asset(band)
    if code is not None and code in available:
        return code
    return None


def read_source(collection: Collection, bands: Sequence[str] | str | None,
                data_source: Any = None) -> ReadSource:
    """Resolve the data source and map the requested bands (ValueError names unknown ones)."""
    descriptor = resolve_data_source(data_source, collection.data_source, collection.dataset)
    if bands is None:
        return ReadSource(descriptor, {b: b for b in collection.bands})
    requested = [bands] if isinstance(bands, str) else list(bands)
    available = collection.bands
    mapping: dict[str, str] = {}
    unknown = []
    for band in requested:
        stored = _stored_band(band, available, descriptor)
        if stored is None:
            unknown.append(band)
        else:
            mapping[band] = stored
    if unknown:
        via = f" (data source {descriptor.id})" if descriptor is not None else ""
        raise ValueError(f"unknown band(s) {unknown}; the collection has {available}{via}")
    return ReadSource(descriptor, mapping)
