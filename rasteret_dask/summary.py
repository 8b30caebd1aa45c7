"""What ``Collection.describe()`` returns, and how a Collection shows itself in a notebook.

:class:`CollectionSummary` is a frozen value: printed (or left as a cell's last expression) it
reads as a short text table; it is also a read-only mapping (``summary["records"]``) and
``to_dict()`` gives plain JSON-ready values. :func:`collection_html` is the Collection's
``_repr_html_``: the cheap facts only (name, where, version, filter, records, partitions,
bands, columns), never a scan of the metadata columns.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["CollectionSummary", "collection_html"]

_SHOWN_COLUMNS = 12


def _when(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _bounds(bounds: Sequence[float] | None) -> str:
    if bounds is None:
        return "none"
    return "(" + ", ".join(f"{v:.5f}".rstrip("0").rstrip(".") for v in bounds) + ")"


def _columns(columns: Sequence[str]) -> str:
    more = len(columns) - _SHOWN_COLUMNS
    return ", ".join(columns[:_SHOWN_COLUMNS]) + (f", ... ({more} more)" if more > 0 else "")


@dataclass(frozen=True)
class CollectionSummary(Mapping):
    """A collection's summary: records, partitions, time span, bounds, bands, enrichment.

    Also a read-only mapping of its fields (``summary["enriched"]["B04"]``).
    """

    name: str
    data_source: str | None
    records: int
    partitions: int
    date_range: tuple[Any, Any] | None
    bounds: tuple[float, float, float, float] | None
    bands: list[str]
    epsg: list[int]
    enriched: dict[str, int]
    columns: list[str]
    path: str | None = field(default=None)
    version: int | None = field(default=None)

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (times as ISO text), ready for ``json.dumps``."""
        out = {key: getattr(self, key) for key in self._keys()}
        if self.date_range is not None:
            out["date_range"] = [_when(v) for v in self.date_range]
        out["bounds"] = None if self.bounds is None else list(self.bounds)
        return out

    def _rows(self) -> list[tuple[str, str]]:
        span = ("none" if self.date_range is None
                else f"{_when(self.date_range[0])} .. {_when(self.date_range[1])}")
        enriched = ", ".join(f"{band} {count}/{self.records}"
                             for band, count in self.enriched.items()) or "not enriched"
        where = self.path or "in memory"
        if self.version is not None:
            where += f" (version {self.version})"
        return [
            ("index", where),
            ("data source", self.data_source or "none"),
            ("records", f"{self.records} in {self.partitions} partition(s)"),
            ("time", span),
            ("bounds (CRS84)", _bounds(self.bounds)),
            ("CRS", ", ".join(f"EPSG:{code}" for code in self.epsg) or "unknown"),
            ("bands", ", ".join(self.bands) or "none"),
            ("enriched", enriched),
            ("columns", _columns(self.columns)),
        ]

    def __str__(self) -> str:
        rows = self._rows()
        width = max(len(label) for label, _ in rows)
        lines = [f"Collection {self.name!r}"]
        lines += [f"  {label:<{width}}  {value}" for label, value in rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return _table(f"Collection {self.name}", self._rows())


def _table(title: str, rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
        f"<td style='text-align:left'>{html.escape(value)}</td></tr>" for label, value in rows)
    return (f"<div><strong>{html.escape(title)}</strong>"
            f"<table style='border-collapse:collapse'>{body}</table></div>")


def collection_html(name: str, *, path: str | None, version: int | None, filter: Any,
                    records: int, partitions: int, bands: Sequence[str],
                    enriched_bands: Sequence[str], columns: Sequence[str]) -> str:
    """The HTML a notebook shows for a Collection: cheap facts, no scan of metadata columns."""
    where = path or "in memory"
    if version is not None:
        where += f" (version {version})"
    rows = [
        ("index", where),
        ("records", f"{records} in {partitions} partition(s)"),
        ("bands", ", ".join(bands) or "none"),
        ("enriched bands", ", ".join(enriched_bands) or "none"),
        ("columns", _columns(list(columns))),
    ]
    if filter is not None:
        rows.insert(1, ("filter", str(filter)))
    return _table(f"Collection {name}", rows) + (
        "<div style='color:#666'>collection.describe() adds the time span, bounds, CRSs and "
        "enrichment counts</div>")
