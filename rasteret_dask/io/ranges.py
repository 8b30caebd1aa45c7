"""Byte ranges and their coalescing (pure, no I/O).

Ranges of one object that lie close together are merged into a single request and the merged
payload is split back into the bytes of each requested range. A range may name the version of
the object it expects (``expect``: the identity recorded at enrichment); only ranges expecting
the same version are merged, and the merged request carries it as its precondition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rasteret_dask.io.identity import ObjectIdentity
from rasteret_dask.redact import redact_url

__all__ = ["ByteRange", "MergedRange", "Payload", "coalesce", "split_payloads"]

Payload = bytes | memoryview
"""A fetched range: bytes, or a zero-copy view of the merged request that covered it."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """The half-open byte range ``[start, end)`` of the object at ``href``; ``expect`` is the
    version of the object its bytes must come from (None: any)."""

    href: str
    start: int
    end: int
    expect: ObjectIdentity | None = None

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(
                f"invalid byte range [{self.start}, {self.end}) of {redact_url(self.href)}"
            )

    def __repr__(self) -> str:
        return f"ByteRange(href={redact_url(self.href)!r}, start={self.start}, end={self.end})"

    @property
    def size(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start

    def describe(self) -> str:
        """Human-readable ``bytes a-b of href`` (inclusive end, as in an HTTP Range header)."""
        return f"bytes {self.start}-{self.end - 1} of {redact_url(self.href)}"


@dataclass(frozen=True, slots=True)
class MergedRange:
    """One request covering ``[start, end)`` of ``href`` and the input ranges it serves.

    ``members`` pairs each covered range with its position in the sequence given to
    :func:`coalesce`, so results can be put back in input order.
    """

    href: str
    start: int
    end: int
    members: tuple[tuple[int, ByteRange], ...]
    expect: ObjectIdentity | None = None

    def __repr__(self) -> str:
        return (f"MergedRange(href={redact_url(self.href)!r}, start={self.start}, "
                f"end={self.end}, members={self.members!r})")

    @property
    def size(self) -> int:
        """Number of bytes the merged request asks for."""
        return self.end - self.start

    @property
    def byte_range(self) -> ByteRange:
        """The merged request as a plain :class:`ByteRange`."""
        return ByteRange(self.href, self.start, self.end, self.expect)

    def split(self, payload: Payload) -> list[tuple[int, Payload]]:
        """Cut ``payload`` (the bytes from ``start``) into ``(input index, member bytes)``.

        Members are zero-copy memoryviews of ``payload`` (the payload itself when a member
        covers all of it). A short payload yields truncated (possibly empty) member bytes.
        """
        view = memoryview(payload)
        size = view.nbytes
        out: list[tuple[int, Payload]] = []
        for index, member in self.members:
            lo = member.start - self.start
            hi = member.end - self.start
            out.append((index, payload if lo == 0 and hi >= size else view[lo:hi]))
        return out


def coalesce(ranges: Iterable[ByteRange], *, gap: int, max_size: int) -> list[MergedRange]:
    """Merge ranges of the same href (and expected version) whose gap is at most ``gap`` bytes
    into fewer requests.

    A merge is only made while the merged request stays within ``max_size`` bytes; a single
    range larger than ``max_size`` is kept whole. Overlapping and duplicate ranges are fine.
    The result is grouped by href (first-appearance order) and sorted by start within each.
    """
    if gap < 0:
        raise ValueError("gap must be >= 0")
    if max_size < 0:
        raise ValueError("max_size must be >= 0")
    by_href: dict[tuple[str, ObjectIdentity | None], list[tuple[int, ByteRange]]] = {}
    for index, rng in enumerate(ranges):
        by_href.setdefault((rng.href, rng.expect), []).append((index, rng))

    merged: list[MergedRange] = []
    for (href, expect), items in by_href.items():
        items.sort(key=lambda item: (item[1].start, item[1].end, item[0]))
        group: list[tuple[int, ByteRange]] = [items[0]]
        lo, hi = items[0][1].start, items[0][1].end
        for item in items[1:]:
            rng = item[1]
            new_hi = max(hi, rng.end)
            if rng.start - hi <= gap and new_hi - lo <= max_size:
                group.append(item)
                hi = new_hi
            else:
                merged.append(MergedRange(href, lo, hi, tuple(group), expect))
                group = [item]
                lo, hi = rng.start, rng.end
        merged.append(MergedRange(href, lo, hi, tuple(group), expect))
    return merged


def split_payloads(
    merged: Sequence[MergedRange], payloads: Sequence[Payload], count: int
) -> list[Payload]:
    """Split each merged payload back into member bytes (zero-copy), returned in input order.

    ``count`` is the number of ranges originally given to :func:`coalesce`.
    """
    if len(merged) != len(payloads):
        raise ValueError("one payload is needed per merged range")
    out: list[Payload | None] = [None] * count
    for request, payload in zip(merged, payloads, strict=True):
        for index, data in request.split(payload):
            out[index] = data
    missing = [i for i, value in enumerate(out) if value is None]
    if missing:
        raise ValueError(f"no merged range covers input positions {missing[:5]}")
    return [value for value in out if value is not None]
