"""``rescale=True`` (pure): each record's scale and offset per band, from the index's
``raster_bands`` column (STAC ``raster:bands`` carried at ingest).

stackstac's semantics: a record's physical values are ``raw * scale + offset`` (a missing scale
is 1, a missing offset 0), float32, nodata as NaN. A band none of whose records has a scale or
an offset cannot be rescaled: the read says so, naming the band and a record, rather than
returning raw values labelled physical.
"""

from __future__ import annotations

import pyarrow as pa

from ..index.raster_bands import band_scaling
from .select import Selection

__all__ = ["rescaling", "scaling_of_rows"]


def scaling_of_rows(table: pa.Table, band: str) -> dict[str, tuple[float | None, float | None]]:
    """(scale, offset) of ``band`` per record id of index rows (None, None without them)."""
    ids = table["id"].to_pylist()
    return {rid: (None, None) if s is None else (s.scale, s.offset)
            for rid, s in zip(ids, band_scaling(table, band), strict=True)}


def rescaling(selection: Selection) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """(scale, offset) of every (band, record id) of a selection.

    Raises
    ------
    ValueError
        When a band's records carry neither a scale nor an offset (the message names the
        band and the first record's id and href).
    """
    table = selection.table
    ids = table["id"].to_pylist()
    out: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    for band, records in selection.records_by_band.items():
        found = dict(zip(ids, band_scaling(table, band), strict=True))
        pairs = {}
        for record in records:
            scaling = found.get(record.id)
            pairs[record.id] = (None, None) if scaling is None else (scaling.scale,
                                                                      scaling.offset)
        if records and all(p == (None, None) for p in pairs.values()):
            raise ValueError(f"rescale=True: band {band!r} has no scale or offset (STAC "
                             f"raster:bands) on any record, e.g. {records[0].label}; read raw "
                             "values (rescale=False) or ingest items that carry them")
        out.update({(band, rid): pair for rid, pair in pairs.items()})
    return out
