"""Fetch and parse the headers of many COGs at once: one batched fetch per round for all files.

Round 1 reads a prefix of every file concurrently; in the usual case (GDAL COGs keep every IFD
and tile table in their first few KB) that is the only request per file. Files whose IFDs or
tile tables lie beyond the prefix go to further rounds that fetch exactly the missing ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..io import ByteRange, FetchError, RangeReader
from ..io.identity import ObjectIdentity
from ..tiff import NeedBytes, SparseBuffer, TiffError, TiffHeader, parse_tiff_header

__all__ = ["HeaderFailure", "fetch_headers", "fetch_identified_headers", "DEFAULT_PREFIX"]

DEFAULT_PREFIX = 64 * 1024
MAX_ROUNDS = 8


@dataclass(frozen=True)
class HeaderFailure:
    """Why one href's header could not be read (kept per record, never raised for the run).

    ``message`` is redacted (it comes from a redacted :class:`FetchError` or names no href);
    ``href`` is the href as given and stays out of the repr.
    """

    href: str = field(repr=False)
    message: str

    def __str__(self) -> str:
        return self.message


def fetch_headers(
    hrefs: Sequence[str],
    reader: RangeReader,
    *,
    prefix_size: int = DEFAULT_PREFIX,
    max_rounds: int = MAX_ROUNDS,
) -> dict[str, TiffHeader | HeaderFailure]:
    """Header (or failure) of each distinct href; every file's requests share one fetch per round."""
    return fetch_identified_headers(hrefs, reader, prefix_size=prefix_size,
                                    max_rounds=max_rounds)[0]


def fetch_identified_headers(
    hrefs: Sequence[str],
    reader: RangeReader,
    *,
    prefix_size: int = DEFAULT_PREFIX,
    max_rounds: int = MAX_ROUNDS,
) -> tuple[dict[str, TiffHeader | HeaderFailure], dict[str, ObjectIdentity]]:
    """Header (or failure) of each distinct href, and the identity of the object version each
    was read from (absent where the backend reports none).

    Parameters
    ----------
    hrefs : sequence of str
        The files (repeats are fetched once).
    reader : RangeReader
        How bytes are fetched.
    prefix_size : int
        Bytes read first from each file.
    max_rounds : int
        Read rounds before a header that still needs bytes fails.

    Returns
    -------
    (dict, dict)
        href -> ``TiffHeader`` or ``HeaderFailure``; href -> ``ObjectIdentity``.
    """
    identities: dict[str, ObjectIdentity] = {}
    buffers = {href: SparseBuffer() for href in dict.fromkeys(hrefs)}
    results: dict[str, TiffHeader | HeaderFailure] = {}
    pending = {href: [(0, prefix_size)] for href in buffers}
    for _ in range(max_rounds):
        if not pending:
            break
        requests = [ByteRange(h, a, b, identities.get(h)) for h, ranges in pending.items()
                    for a, b in ranges]
        answers, seen = reader.fetch_identified(requests, allow_short=True)
        for href, identity in seen.items():
            identities.setdefault(href, identity)
        failed: set[str] = set()
        for request, answer in zip(requests, answers, strict=True):
            if request.href in failed:
                continue
            if isinstance(answer, FetchError):
                results[request.href] = HeaderFailure(request.href, f"header fetch failed: {answer}")
                failed.add(request.href)
                continue
            buffers[request.href].add(request.start, answer, requested=request.end - request.start)
        next_pending: dict[str, list[tuple[int, int]]] = {}
        for href in pending:
            if href in failed:
                continue
            try:
                results[href] = parse_tiff_header(buffers[href])
            except NeedBytes as need:
                next_pending[href] = list(need.ranges)
            except TiffError as exc:
                results[href] = HeaderFailure(href, f"invalid TIFF header: {exc}")
            except (ValueError, IndexError, KeyError, OverflowError) as exc:
                results[href] = HeaderFailure(href, f"invalid TIFF header: {type(exc).__name__}: {exc}")
        pending = next_pending
    for href in pending:
        results[href] = HeaderFailure(href, f"TIFF header not parsed within {max_rounds} read rounds")
    return results, {h: i for h, i in identities.items() if not isinstance(results[h], HeaderFailure)}
