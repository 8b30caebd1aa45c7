"""Enrich an Arrow table in memory: fill ``{band}_metadata`` from COG headers, record failures.

A record whose header cannot be fetched or parsed keeps null metadata for that band and gets
the reason in ``enrich_errors`` (band -> message naming the record, band and href); every other
row and column is kept as it was, except two backfills from the headers just read: a null
``proj:epsg`` gets the header's EPSG code, and a null footprint gets the raster's extent in
CRS84 (with its bbox columns: ``index.normalize.fill_missing_footprints``).

With a :class:`~.verify.Verification`, enriched band-records (all, or a sample of their
hrefs) are first checked against their object's current identity (one HEAD per href,
``io.head``); those whose object changed since enrichment, or whose identity was never
recorded, are enriched again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S
from ..index.normalize import conform_metadata_array, fill_missing_footprints
from ..io import RangeReader
from ..io.head import identify
from ..redact import redact_url
from ..tiff import TiffError
from .headers import DEFAULT_PREFIX, HeaderFailure, fetch_identified_headers
from .verify import Verification, compare, in_sample, recorded_identity

__all__ = ["COUNTS", "EnrichStats", "enrich_table", "enrich_table_with_cog_metadata"]

COUNTS = ("enriched", "failed", "skipped", "verified", "changed", "unrecorded", "reenriched",
          "verify_failed")
"""The band-record counts an enrichment reports (summed over tasks, copied into reports)."""


@dataclass
class EnrichStats:
    """Counts of one enrichment: band-records enriched, failed, skipped (already enriched);
    with verification also verified, changed (object replaced), unrecorded (no identity
    stored), re-enriched (changed or unrecorded, enriched again) and verify_failed (the
    object could not be asked; the record is kept as it was)."""

    enriched: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    footprints_filled: int = 0
    verified: int = 0
    changed: int = 0
    unrecorded: int = 0
    reenriched: int = 0
    verify_failed: int = 0

    def add(self, other: EnrichStats) -> EnrichStats:
        for name in (*COUNTS, "footprints_filled"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors[: max(0, 20 - len(self.errors))])
        return self


def _hrefs(table: pa.Table, band: str) -> tuple[list[str | None], list[int]]:
    """Each row's href and sample index of ``band``; an asset may be an href string or a
    struct with ``href`` and, optionally, ``band_index`` (0 when absent or null)."""
    assets_type = table.schema.field(S.ASSETS).type
    asset = pc.struct_field(table[S.ASSETS], [assets_type.get_field_index(band)])
    asset_type = assets_type.field(band).type
    if not pa.types.is_struct(asset_type):
        hrefs = asset.cast(pa.string()).to_pylist()
        return hrefs, [0] * len(hrefs)
    hrefs = pc.struct_field(asset, "href").cast(pa.string()).to_pylist()
    if asset_type.get_field_index("band_index") < 0:
        return hrefs, [0] * len(hrefs)
    indices = pc.fill_null(pc.struct_field(asset, "band_index"), 0).cast(pa.int64())
    return hrefs, indices.to_pylist()


def _needing(table: pa.Table, band: str, hrefs: list[str | None], only_missing: bool) -> np.ndarray:
    has_href = np.array([h is not None for h in hrefs], dtype=bool)
    column = S.metadata_column(band)
    if not only_missing or column not in table.column_names:
        return has_href
    return has_href & table[column].is_null().to_numpy(zero_copy_only=False)


def _identity_values(table: pa.Table, band: str) -> list[dict | None]:
    """Each row's stored identity fields of ``band`` (``etag``, ``object_size``,
    ``last_modified``), None where the band is not enriched; tile arrays are not converted."""
    column = conform_metadata_array(_column(table, S.metadata_column(band), S.METADATA_TYPE))
    valid = column.is_valid().to_pylist()
    fields = {name: pc.struct_field(column, name).to_pylist()
              for name in ("etag", "object_size", "last_modified")}
    return [{name: values[row] for name, values in fields.items()} if ok else None
            for row, ok in enumerate(valid)]


def _verify(table: pa.Table, bands: Sequence[str], verify: Verification, reader: RangeReader,
            stats: EnrichStats, ids: list) -> dict[str, np.ndarray]:
    """Rows of each band to enrich again: their object changed, or no identity was stored."""
    targets: dict[str, tuple[list[int], list[str], list]] = {}
    for band in bands:
        hrefs, _ = _hrefs(table, band)
        stored = _identity_values(table, band)
        rows = [r for r, (h, m) in enumerate(zip(hrefs, stored, strict=True))
                if h is not None and m is not None and in_sample(h, verify.fraction)]
        targets[band] = (rows, [hrefs[r] for r in rows],
                         [recorded_identity(stored[r]) for r in rows])
    current = identify(reader, [h for _, hrefs, _ in targets.values() for h in hrefs])
    refresh: dict[str, np.ndarray] = {}
    for band, (rows, hrefs, stored) in targets.items():
        outcome = compare(rows, hrefs, stored, current)
        stats.verified += outcome.verified
        stats.changed += outcome.changed
        stats.unrecorded += outcome.unrecorded
        stats.verify_failed += len(outcome.failed)
        for row, reason in outcome.failed:
            if len(stats.errors) < 20:
                stats.errors.append(f"record {ids[row]!r}, band {band!r}, href "
                                    f"{redact_url(hrefs[rows.index(row)])}: {reason}")
        refresh[band] = outcome.refresh
    return refresh


def _splice(old: pa.ChunkedArray, rows: np.ndarray, values: list, type_: pa.DataType) -> pa.Array:
    """``old`` with ``rows`` replaced by ``values`` (any Arrow type, via concat + take)."""
    new = pa.array(values, type=type_)
    index = np.arange(len(old), dtype=np.int64)
    index[rows] = len(old) + np.arange(len(rows), dtype=np.int64)
    return pa.concat_arrays([old.combine_chunks(), new]).take(pa.array(index))


def _column(table: pa.Table, name: str, type_: pa.DataType) -> pa.ChunkedArray:
    if name in table.column_names:
        return table[name]
    return pa.chunked_array([pa.nulls(table.num_rows, type_)], type=type_)


def _set(table: pa.Table, name: str, array) -> pa.Table:
    index = table.schema.get_field_index(name)
    if index < 0:
        return table.append_column(name, array)
    return table.set_column(index, name, array)


def enrich_table(
    table: pa.Table,
    bands: Sequence[str] | None = None,
    *,
    reader: RangeReader | None = None,
    only_missing: bool = True,
    prefix_size: int = DEFAULT_PREFIX,
    verify: Verification | None = None,
) -> tuple[pa.Table, EnrichStats]:
    """Enrich ``table`` and return it with the run's counts.

    Parameters
    ----------
    table : pyarrow.Table
        A collection table (normalised, or any table with ``id`` and ``assets`` whose band
        assets are structs with ``href`` and optionally ``band_index``, or href strings).
    bands : sequence of str, optional
        Default every band of ``assets``.
    reader : RangeReader, optional
        How bytes are fetched (storage options, signer, concurrency).
    only_missing : bool, default True
        Fetch only headers whose metadata is null.
    prefix_size : int
        Bytes read first from each file.
    verify : Verification, optional
        First check enriched records' objects (or a sample) with one HEAD each; enrich again
        those that changed or have no identity stored.

    Returns
    -------
    (pyarrow.Table, EnrichStats)
    """
    reader = reader or RangeReader()
    asset_bands = [f.name for f in table.schema.field(S.ASSETS).type]
    bands = list(bands) if bands is not None else asset_bands
    unknown = [b for b in bands if b not in asset_bands]
    if unknown:
        raise ValueError(f"unknown band(s) {unknown}; the collection has {asset_bands}")
    stats = EnrichStats()
    ids = table[S.ID].to_pylist()
    refresh = _verify(table, bands, verify, reader, stats, ids) if verify is not None else {}
    work: dict[str, tuple[np.ndarray, list, list]] = {}
    for band in bands:
        hrefs, indices = _hrefs(table, band)
        mask = _needing(table, band, hrefs, only_missing)
        if len(refresh.get(band, ())):
            mask[refresh[band]] = True
        has_href = sum(h is not None for h in hrefs)
        stats.skipped += int(has_href - mask.sum())
        rows = np.flatnonzero(mask)
        work[band] = (rows, [hrefs[r] for r in rows], [indices[r] for r in rows])
    all_hrefs = [h for rows, hrefs, _ in work.values() for h in hrefs]
    headers, identities = (fetch_identified_headers(all_hrefs, reader, prefix_size=prefix_size)
                           if all_hrefs else ({}, {}))

    errors = _column(table, S.ENRICH_ERRORS, S.ENRICH_ERRORS_TYPE).to_pylist()
    errors = [dict(e) if e else {} for e in errors]
    epsg_found: dict[int, int] = {}
    for band, (rows, hrefs, indices) in work.items():
        refreshed = set(refresh.get(band, np.empty(0, np.int64)).tolist())
        values = []
        for row, href, band_index in zip(rows, hrefs, indices, strict=True):
            header = headers[href]
            metadata, message = None, None
            if isinstance(header, HeaderFailure):
                message = header.message
            else:
                try:
                    metadata = header.to_metadata(band_index)
                except TiffError as exc:
                    message = str(exc)
                else:
                    identity = identities.get(href)
                    if identity is not None:
                        metadata.update(etag=identity.etag, object_size=identity.size,
                                        last_modified=identity.last_modified)
            if metadata is None:
                message = f"record {ids[row]!r}, band {band!r}, href {redact_url(href)}: {message}"
                errors[row][band] = message
                stats.failed += 1
                if len(stats.errors) < 20:
                    stats.errors.append(message)
            else:
                errors[row].pop(band, None)
                stats.enriched += 1
                stats.reenriched += int(row) in refreshed
                if metadata.get("crs_epsg") is not None:
                    epsg_found.setdefault(int(row), int(metadata["crs_epsg"]))
            values.append(metadata)
        column = S.metadata_column(band)
        old = conform_metadata_array(_column(table, column, S.METADATA_TYPE))
        table = _set(table, column, _splice(old, rows, values, S.METADATA_TYPE))
    error_items = [sorted(e.items()) if e else None for e in errors]
    table = _set(table, S.ENRICH_ERRORS, pa.array(error_items, type=S.ENRICH_ERRORS_TYPE))
    if epsg_found:
        old = _column(table, S.EPSG, pa.int32())
        codes = old.to_pylist()
        for row, code in epsg_found.items():
            if codes[row] is None:
                codes[row] = code
        table = _set(table, S.EPSG, pa.array(codes, type=old.type))
    if stats.enriched:
        table, stats.footprints_filled = fill_missing_footprints(table)
    return table, stats


def enrich_table_with_cog_metadata(
    table: pa.Table,
    bands: Sequence[str] | None = None,
    *,
    storage_options: dict | None = None,
    max_concurrent: int = 64,
    only_missing: bool = True,
) -> pa.Table:
    """Fill the ``{band}_metadata`` columns of an in-memory table from its COG headers."""
    reader = RangeReader(storage_options=storage_options, max_concurrent=max_concurrent)
    enriched, _ = enrich_table(table, bands, reader=reader, only_missing=only_missing)
    return enriched
