"""Records a read leaves out because a band of theirs has no COG metadata (enrichment failed,
or never ran): found in the index columns, then said (a warning) or refused (an error).

Pure: Arrow tables in, frozen values out; the only side effect is the ``rasteret_dask.read``
warning of :func:`settle_missing`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S
from ..redact import redact_url

__all__ = ["ON_MISSING", "MissingRecordsError", "SkippedRecord", "check_on_missing",
           "missing_records", "settle_missing"]

ON_MISSING = ("skip", "raise")
"""What a read does with a record whose band has no metadata: leave it out and say so, or
raise :class:`MissingRecordsError`."""

logger = logging.getLogger("rasteret_dask.read")

_SHOWN = 5  # records named in a warning or an error message; the rest are counted


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A record (and the band) a read left out, where its file is and why."""

    id: str
    band: str
    href: str | None
    reason: str

    def __str__(self) -> str:
        return (f"record {self.id!r}, band {self.band!r}, href {redact_url(self.href)}: "
                f"{self.reason}")


class MissingRecordsError(ValueError):
    """Records that match a read have no COG metadata for a band read (``on_missing="raise"``);
    ``records`` holds every one of them."""

    def __init__(self, records: Sequence[SkippedRecord]) -> None:
        self.records = tuple(records)
        super().__init__(
            f"{len(self.records)} record(s) matching the read have no COG metadata for a band "
            f"read: {_listing(self.records)} (on_missing='skip' reads the others)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (MissingRecordsError, (self.records,))


def _listing(records: Sequence[SkippedRecord]) -> str:
    shown = "; ".join(str(r) for r in records[:_SHOWN])
    more = len(records) - _SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")


def check_on_missing(on_missing: str) -> str:
    """``on_missing`` when it is one of :data:`ON_MISSING`; ValueError otherwise."""
    if on_missing not in ON_MISSING:
        raise ValueError(f"on_missing must be one of {ON_MISSING}, not {on_missing!r}")
    return on_missing


def _reason(stored: str | None, record_id: str, band: str, href: str | None) -> str:
    """The stored enrichment error without the record/band/href prefix it starts with."""
    if not stored:
        return "no COG metadata (not enriched; run collection.enrich())"
    prefix = f"record {record_id!r}, band {band!r}, href {redact_url(href)}: "
    return stored[len(prefix):] if stored.startswith(prefix) else stored


def missing_records(table: pa.Table, band: str) -> list[SkippedRecord]:
    """The rows of ``table`` that ``band`` cannot be read from: no href, or null metadata
    (with the reason kept in ``enrich_errors`` when there is one).

    Parameters
    ----------
    table
        Index rows with ``id``, ``assets``, ``{band}_metadata`` and, when the index has it,
        ``enrich_errors``.
    band
        The band as the index names it.
    """
    hrefs = table[S.ASSETS].combine_chunks().field(band).field("href")
    unreadable = (pc.is_null(table[S.metadata_column(band)]).to_numpy()
                  | pc.is_null(hrefs).to_numpy(zero_copy_only=False))
    if not unreadable.any():
        return []
    rows = table.filter(pa.array(unreadable))
    ids = rows[S.ID].to_pylist()
    row_hrefs = rows[S.ASSETS].combine_chunks().field(band).field("href").to_pylist()
    errors: list[Any] = [None] * rows.num_rows
    if S.ENRICH_ERRORS in rows.column_names:
        errors = rows[S.ENRICH_ERRORS].to_pylist()
    out = []
    for record_id, href, stored in zip(ids, row_hrefs, errors, strict=True):
        if href is None:
            reason = "no href for this band"
        else:
            reason = _reason(dict(stored or ()).get(band), record_id, band, href)
        out.append(SkippedRecord(record_id, band, href, reason))
    return out


def settle_missing(skipped: Iterable[SkippedRecord], on_missing: str, action: str) -> None:
    """Raise :class:`MissingRecordsError` for ``on_missing="raise"``, else warn once on the
    ``rasteret_dask.read`` logger; nothing when no record was skipped.

    ``action`` names what skipped them, e.g. ``"get_xarray"``, and where they are listed.
    """
    records = list(dict.fromkeys(skipped))
    if not records:
        return
    if on_missing == "raise":
        raise MissingRecordsError(records)
    logger.warning("%s skipped %d record(s) without COG metadata for a band read "
                   "(on_missing='skip'): %s", action, len(records), _listing(records))
