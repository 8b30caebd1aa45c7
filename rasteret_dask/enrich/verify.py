"""Verification of enriched metadata against the objects as they are now.

Each enriched band-record keeps the identity (ETag, size, Last-Modified) of the object version
its header came from. Verification asks every object (or a deterministic sample of them) for
its current identity with one HEAD each (``io.head``) and marks for re-enrichment the records
whose object changed, and those enriched before identities were kept (nothing to compare:
their identity gets recorded). The sample is decided per href by a hash, so each run of a
fraction checks the same objects, and different fractions nest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..io.errors import FetchError
from ..io.identity import ObjectIdentity, mismatch

__all__ = ["Verification", "VerifyOutcome", "in_sample", "recorded_identity", "compare"]


@dataclass(frozen=True)
class Verification:
    """What to verify: the fraction of objects (by href) in ``(0, 1]``; 1 checks them all."""

    fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"verify fraction must be in (0, 1], got {self.fraction}")


def in_sample(href: str, fraction: float) -> bool:
    """Whether ``href`` is in the sample of ``fraction`` (stable across runs and processes)."""
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(href.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def recorded_identity(metadata: Mapping | None) -> ObjectIdentity | None:
    """The identity stored in one ``{band}_metadata`` value (None when none was recorded)."""
    if metadata is None:
        return None
    return ObjectIdentity.recorded(metadata.get("etag"), metadata.get("object_size"),
                                   metadata.get("last_modified"))


@dataclass(frozen=True)
class VerifyOutcome:
    """One band's verification: rows to re-enrich and why rows could not be verified."""

    refresh: np.ndarray
    """Row positions whose object changed or whose identity was never recorded."""
    verified: int
    changed: int
    unrecorded: int
    failed: tuple[tuple[int, str], ...]
    """(row, reason) of rows whose object could not be asked (kept as they are)."""


def compare(rows: Sequence[int], hrefs: Sequence[str], stored: Sequence[ObjectIdentity | None],
            current: Mapping[str, ObjectIdentity | FetchError]) -> VerifyOutcome:
    """Compare each row's stored identity with its object's current one.

    Parameters
    ----------
    rows, hrefs, stored
        The verified rows, their hrefs and their recorded identities (same length).
    current
        href -> the identity a HEAD reported, or the error it ended with.
    """
    refresh: list[int] = []
    failed: list[tuple[int, str]] = []
    verified = changed = unrecorded = 0
    for row, href, expected in zip(rows, hrefs, stored, strict=True):
        seen = current[href]
        if isinstance(seen, FetchError):
            failed.append((row, f"verification failed: {seen.reason}"))
            continue
        verified += 1
        if expected is None:
            unrecorded += 1
            refresh.append(row)
        elif mismatch(expected, seen) is not None:
            changed += 1
            refresh.append(row)
    return VerifyOutcome(np.asarray(refresh, dtype=np.int64), verified, changed, unrecorded,
                         tuple(failed))
