"""Argument parsing helpers shared by the subcommands: bboxes, AOIs, band lists, date ranges."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["bbox", "bands", "aoi", "date_range", "key_values", "json_object", "optional", "epsg",
           "resolution"]


def optional(text: str) -> str | None:
    """A column name, or ``none`` for no column."""
    return None if text.strip().lower() in ("", "none") else text.strip()


def bbox(text: str) -> tuple[float, float, float, float]:
    """``minx,miny,maxx,maxy`` -> a 4-tuple of floats."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] > values[2] or values[1] > values[3]:
        raise argparse.ArgumentTypeError(f"invalid bbox {text!r}: expected minx,miny,maxx,maxy")
    return values  # type: ignore[return-value]


def bands(text: str) -> list[str]:
    """``B04,B08`` -> ``["B04", "B08"]``."""
    names = [b.strip() for b in text.split(",") if b.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected at least one band, e.g. B04,B08")
    return names


def aoi(text: str) -> Any:
    """An AOI: a bbox ``minx,miny,maxx,maxy``, WKT, GeoJSON text, or a GeoJSON/WKT file path."""
    import shapely

    candidate = text.strip()
    path = Path(candidate)
    if len(candidate) < 4096 and path.suffix.lower() in (".geojson", ".json", ".wkt") and path.exists():
        candidate = path.read_text().strip()
    if candidate.startswith("{"):
        document = json.loads(candidate)
        if document.get("type") == "FeatureCollection":
            return [shapely.geometry.shape(f["geometry"]) for f in document["features"]]
        if document.get("type") == "Feature":
            document = document["geometry"]
        return shapely.geometry.shape(document)
    if candidate[:1].isalpha():
        try:
            return shapely.from_wkt(candidate)
        except shapely.errors.GEOSException as exc:
            raise argparse.ArgumentTypeError(f"invalid AOI WKT: {exc}") from exc
    return bbox(candidate)


def resolution(text: str) -> float | tuple[float, float]:
    """``--resolution``: one pixel size, or ``x,y``."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if len(values) not in (1, 2) or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"give one or two positive numbers, got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def epsg(text: str) -> str:
    """``--epsg 32633`` -> ``"EPSG:32633"`` (what ``--crs`` takes)."""
    code = text.strip().upper().removeprefix("EPSG:")
    if not code.isdigit() or int(code) <= 0:
        raise argparse.ArgumentTypeError(f"not an EPSG code: {text!r} (e.g. 32633)")
    return f"EPSG:{int(code)}"


def date_range(values: list[str] | None) -> tuple[str, str] | None:
    """Two dates (validated by the library, which names what is wrong)."""
    if values is None:
        return None
    from ..index.filters import parse_date_range

    parse_date_range(values)  # raises ValueError("invalid date range ...")
    return values[0], values[1]


def key_values(text: str) -> dict[str, str]:
    """``B04=red,B08=nir`` -> a dict."""
    out = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"invalid mapping {text!r}: expected KEY=VALUE,...")
        out[key.strip()] = value.strip()
    return out


def json_object(text: str) -> dict:
    """A JSON object argument (``--query '{"eo:cloud_cover": {"lt": 20}}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value
