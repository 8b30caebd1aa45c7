"""What identifies one version of an object: ETag, size, Last-Modified (pure, no I/O).

Enrichment records the identity seen in the header response; a read sends the ETag as a
precondition (``If-Match`` over HTTP, ``IfMatch`` on S3) and compares what every response
reports with what was recorded (:func:`mismatch`), so bytes of a replaced object are never
decoded with the metadata of the old one. Local files have no ETag: their size and
modification time stand in.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

__all__ = ["ObjectIdentity", "from_http_headers", "from_stat", "mismatch", "utc"]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def utc(stamp: dt.datetime | None) -> dt.datetime | None:
    """``stamp`` as an aware UTC datetime (naive ones are taken as UTC)."""
    if stamp is None:
        return None
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class ObjectIdentity:
    """The version of an object a response came from; None where the backend gives none.

    Attributes
    ----------
    etag : str or None
        The entity tag as the server sent it (quotes and a ``W/`` prefix kept).
    size : int or None
        The object's total size in bytes.
    last_modified : datetime or None
        When the object was last written (UTC).
    """

    etag: str | None = None
    size: int | None = None
    last_modified: dt.datetime | None = None

    @classmethod
    def recorded(cls, etag: str | None, size: int | None, last_modified: dt.datetime | None
                 ) -> ObjectIdentity | None:
        """The identity stored in a metadata struct; None when none of it was recorded (an
        index enriched before identities were kept: nothing to compare)."""
        value = cls(etag, size, utc(last_modified))
        return value if value.known else None

    @property
    def strong_etag(self) -> str | None:
        """The ETag when it is a strong validator (``If-Match`` never matches a weak one)."""
        if self.etag is None or self.etag.startswith("W/"):
            return None
        return self.etag

    @property
    def known(self) -> bool:
        """Whether any part is known."""
        return any(v is not None for v in (self.etag, self.size, self.last_modified))

    def describe(self) -> str:
        """``ETag "x", size N, Last-Modified T`` for the parts known."""
        parts = []
        if self.etag is not None:
            parts.append(f"ETag {self.etag}")
        if self.size is not None:
            parts.append(f"size {self.size}")
        if self.last_modified is not None:
            parts.append(f"Last-Modified {self.last_modified.isoformat()}")
        return ", ".join(parts) or "no identity"


def from_http_headers(headers: Mapping[str, str], size: int | None) -> ObjectIdentity:
    """The identity an HTTP response reports: its ``ETag`` and ``Last-Modified`` headers and
    ``size`` (from ``Content-Range`` or the whole body)."""
    modified = headers.get("Last-Modified")
    stamp = None
    if modified:
        try:
            stamp = utc(parsedate_to_datetime(modified))
        except (TypeError, ValueError):
            stamp = None
    return ObjectIdentity(headers.get("ETag") or None, size, stamp)


def from_stat(info: os.stat_result) -> ObjectIdentity:
    """A local file's identity: no ETag, its size and modification time (to the
    microsecond)."""
    return ObjectIdentity(None, info.st_size,
                          EPOCH + dt.timedelta(microseconds=info.st_mtime_ns // 1000))


def _plain(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


def mismatch(expected: ObjectIdentity | None, seen: ObjectIdentity | None) -> str | None:
    """Why ``seen`` is not the object ``expected`` describes, or None when nothing known
    differs.

    ETags are compared when both are known (weak and strong forms of the same tag match);
    sizes when both are known; modification times only when neither side has an ETag (local
    files; to the microsecond).
    """
    if expected is None or seen is None:
        return None
    if (expected.etag is not None and seen.etag is not None
            and _plain(expected.etag) != _plain(seen.etag)):
        return f"ETag {seen.etag}, enriched with ETag {expected.etag}"
    if expected.size is not None and seen.size is not None and expected.size != seen.size:
        return f"size {seen.size} bytes, enriched with {expected.size} bytes"
    if (expected.etag is None and seen.etag is None and expected.last_modified is not None
            and seen.last_modified is not None):
        then, now = utc(expected.last_modified), utc(seen.last_modified)
        if now != then:
            return (f"Last-Modified {now.isoformat()}, enriched with "
                    f"{then.isoformat()}")
    return None
