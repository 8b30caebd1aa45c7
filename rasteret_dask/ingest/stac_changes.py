"""Which indexed items changed or disappeared upstream, from a new search of their months
(pure, no I/O).

An item changed when its STAC ``updated`` property differs from the one indexed (compared as
instants), or, where either side has no ``updated``, when its asset hrefs differ. An item
disappeared when the index holds it with a ``datetime`` inside the searched range and the
search did not return it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .. import schema as S

__all__ = ["ItemSync", "UPDATED", "changed_ids", "gone_ids"]

UPDATED = "updated"
"""The STAC common metadata property kept per row (its own column) to tell changed items."""


@dataclass(frozen=True)
class ItemSync:
    """How an ingest treats items the index already has (picklable: it rides in tasks).

    Attributes
    ----------
    refresh : bool
        Replace the rows of items whose ``updated`` (or hrefs) changed; the new rows have no
        metadata, so the enrichment that follows reads their headers again.
    window : (datetime, datetime) or None
        The searched range (both ends inclusive): indexed items with a ``datetime`` inside it
        that the search did not return are reported as gone (None: not looked for).
    prune : bool
        Remove the gone items' rows.
    """

    refresh: bool = True
    window: tuple[dt.datetime, dt.datetime] | None = None
    prune: bool = False


def _instant(value: Any) -> Any:
    """An ``updated`` value as a UTC instant when it reads as one, else as given."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value


def _hrefs(assets: dict | None) -> dict[str, str]:
    if not assets:
        return {}
    out = {}
    for band, asset in assets.items():
        href = asset.get("href") if isinstance(asset, dict) else asset
        if href is not None:
            out[band] = href
    return out


def _by_id(table: pa.Table) -> dict[str, tuple[Any, dict[str, str]]]:
    updated = (table[UPDATED].to_pylist() if UPDATED in table.column_names
               else [None] * table.num_rows)
    return {i: (_instant(u), _hrefs(a)) for i, u, a in zip(
        table[S.ID].to_pylist(), updated, table[S.ASSETS].to_pylist(), strict=True)}


def changed_ids(indexed: pa.Table, found: pa.Table) -> set[str]:
    """Ids in both tables whose item changed since it was indexed.

    Parameters
    ----------
    indexed : pyarrow.Table
        Rows of the index (``id``, ``assets``, optionally ``updated``).
    found : pyarrow.Table
        Rows the new search returned (same columns).
    """
    old = _by_id(indexed)
    changed = set()
    for item_id, (updated, hrefs) in _by_id(found).items():
        if item_id not in old:
            continue
        old_updated, old_hrefs = old[item_id]
        if updated is not None and old_updated is not None:
            if updated != old_updated:
                changed.add(item_id)
        elif hrefs != old_hrefs:
            changed.add(item_id)
    return changed


def gone_ids(indexed: pa.Table, found: Collection[str],
             window: tuple[dt.datetime, dt.datetime]) -> list[str]:
    """Ids of ``indexed`` rows whose ``datetime`` lies in ``window`` (inclusive) and that are
    not among the ``found`` ids."""
    start, end = window
    out = []
    for item_id, when in zip(indexed[S.ID].to_pylist(), indexed[S.DATETIME].to_pylist(),
                             strict=True):
        if when is None or item_id in found:
            continue
        stamp = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when
        if start <= stamp <= end:
            out.append(item_id)
    return out
