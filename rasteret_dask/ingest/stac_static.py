"""Static STAC catalogs (a ``catalog.json`` tree, no ``/search``) as an item source.

The client reads the root document and lists its children; each child (and the root's own
items) is walked by one Dask task with pystac, reading through fsspec (local paths, http(s),
s3 with storage options) and keeping the items as dicts with absolute asset hrefs. Month
windows stay Dask tasks: each takes the walked items and keeps those a STAC API search would
return for that window (datetime or start/end interval, bbox or ``intersects``, the STAC
``query`` object, the collection id), filtering client-side.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import shapely

from ..redact import redact_text, redact_url
from .stac_search import MonthWindow, StacQuery, StacSearchError, window_rows

__all__ = ["catalog_parts", "walk_catalog", "item_matches", "window_items", "items_span",
           "query_matches", "static_window"]


def _stac_io(storage_options: Mapping[str, Any] | None):
    """A pystac StacIO reading every href through fsspec (with the given storage options)."""
    import pystac

    from ..io.state import resolve

    class FsspecStacIO(pystac.StacIO):
        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            href = source if isinstance(source, str) else source.get_absolute_href()
            fs, path = resolve(str(href), storage_options)
            return fs.cat_file(path).decode("utf-8")

        def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
            raise PermissionError("static catalogs are only read here")

    return FsspecStacIO()


def _failure(spec: StacQuery, href: str, exc: BaseException) -> StacSearchError:
    return StacSearchError(f"reading the static STAC catalog {redact_url(spec.stac_api)} "
                           f"failed at {redact_url(href)}: {type(exc).__name__}: "
                           f"{redact_text(exc)}")


def catalog_parts(spec: StacQuery) -> list[tuple[str, str]]:
    """The root's parts, one walk task each: ``("child", href)`` and ``("items", root)``.

    Raises
    ------
    StacSearchError
        When the root document cannot be read (naming it).
    """
    import pystac

    try:
        root = pystac.read_file(spec.stac_api, stac_io=_stac_io(spec.storage_options))
    except Exception as exc:  # pystac raises STACError, OSError, JSON errors, ...
        raise _failure(spec, spec.stac_api, exc) from exc
    if isinstance(root, pystac.Item):
        raise StacSearchError(f"{redact_url(spec.stac_api)} is a STAC item, not a catalog")
    parts = [("child", link.get_absolute_href()) for link in root.get_child_links()]
    if root.get_item_links():
        parts.append(("items", spec.stac_api))
    return parts


def _as_dict(item: Any) -> dict:
    item.make_asset_hrefs_absolute()
    document = item.to_dict(include_self_link=False, transform_hrefs=False)
    if item.collection_id and not document.get("collection"):
        document["collection"] = item.collection_id
    return document


def walk_catalog(spec: StacQuery, part: tuple[str, str]) -> list[dict]:
    """Every item of one part of the catalog (a child, walked recursively, or the root's own
    items), as dicts with absolute asset hrefs; items of other collections are left out when
    ``spec.collection`` is given.

    Raises
    ------
    StacSearchError
        Naming the document that could not be read.
    """
    import pystac

    kind, href = part
    stac_io = _stac_io(spec.storage_options)
    try:
        node = pystac.read_file(href, stac_io=stac_io)
        if kind == "items":
            items = node.get_items()
        else:
            items = node.get_items(recursive=True) if not isinstance(node, pystac.Item) \
                else [node]
        documents = [_as_dict(item) for item in items]
    except Exception as exc:
        raise _failure(spec, href, exc) from exc
    if spec.collection:
        documents = [d for d in documents if d.get("collection") == spec.collection]
    return documents


def _instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _time_range(item: Mapping[str, Any]) -> tuple[dt.datetime, dt.datetime] | None:
    props = item.get("properties") or {}
    when = _instant(props.get("datetime"))
    if when is not None:
        return when, when
    start, end = _instant(props.get("start_datetime")), _instant(props.get("end_datetime"))
    if start is None and end is None:
        return None
    return (start or end), (end or start)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "neq": operator.ne, "lt": operator.lt, "lte": operator.le,
    "gt": operator.gt, "gte": operator.ge,
    "startsWith": lambda a, b: isinstance(a, str) and a.startswith(b),
    "endsWith": lambda a, b: isinstance(a, str) and a.endswith(b),
    "contains": lambda a, b: isinstance(a, str | list) and b in a,
    "in": lambda a, b: a in b,
}


def query_matches(properties: Mapping[str, Any], query: Mapping[str, Any] | None) -> bool:
    """Whether item ``properties`` satisfy a STAC API ``query`` object (query extension).

    Parameters
    ----------
    properties : mapping
        The item's properties.
    query : mapping or None
        ``{"eo:cloud_cover": {"lt": 20}, "platform": {"in": ["sentinel-2a"]}}``.

    Returns
    -------
    bool
        A missing property, or one of a type the operator cannot compare, does not match.

    Raises
    ------
    ValueError
        For an operator the query extension does not define.
    """
    for name, conditions in (query or {}).items():
        if not isinstance(conditions, Mapping):
            conditions = {"eq": conditions}
        for op, expected in conditions.items():
            if op not in _OPS:
                raise ValueError(f"query operator {op!r} on {name!r} is not one of "
                                 f"{sorted(_OPS)}")
            if name not in properties:
                return False
            try:
                if not _OPS[op](properties[name], expected):
                    return False
            except TypeError:
                return False
    return True


def item_matches(item: Mapping[str, Any], window: MonthWindow, spec: StacQuery) -> bool:
    """Whether a STAC API search of ``window`` with ``spec``'s filters would return ``item``."""
    span = _time_range(item)
    if span is None or span[1] < window.start or span[0] > window.end:
        return False
    area = None
    if spec.intersects is not None:
        area = shapely.geometry.shape(spec.intersects)
    elif spec.bbox is not None:
        area = shapely.box(*spec.bbox)
    if area is not None:
        geometry = item.get("geometry")
        if geometry:
            footprint = shapely.geometry.shape(geometry)
        elif item.get("bbox") and len(item["bbox"]) in (4, 6):
            box = list(item["bbox"])
            if len(box) == 6:  # (minx, miny, minz, maxx, maxy, maxz)
                box = [box[0], box[1], box[3], box[4]]
            footprint = shapely.box(*box)
        else:
            return False
        if not shapely.intersects(footprint, area):
            return False
    return query_matches(item.get("properties") or {}, spec.query)


def window_items(spec: StacQuery, window: MonthWindow, walks: Sequence[Iterable[dict]]
                 ) -> list[dict]:
    """The walked items a search of ``window`` returns, each id once, in walk order."""
    seen: set[Any] = set()
    out = []
    for walk in walks:
        for item in walk:
            if item.get("id") not in seen and item_matches(item, window, spec):
                seen.add(item.get("id"))
                out.append(item)
    return out


def static_window(spec: StacQuery, window: MonthWindow, *walks: list[dict]) -> pa.Table | None:
    """One window's walked items as normalised index rows (``None`` when none matches)."""
    return window_rows(spec, window, window_items(spec, window, walks))


def items_span(walks: Sequence[Iterable[dict]]) -> tuple[str, str] | None:
    """(first, last) timestamp of the walked items as ISO text; None when none has a time."""
    stamps = [t for walk in walks for item in walk for t in (_time_range(item) or ())]
    if not stamps:
        return None
    return min(stamps).isoformat(), max(stamps).isoformat()

