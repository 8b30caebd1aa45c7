"""Handing the ranges a merged request serves to their callers (pure, no I/O).

A merged request (:class:`~.ranges.MergedRange`) serves several input ranges, its members.
While its body streams in, each member whose last byte has arrived is handed over at once
(:meth:`RequestDelivery.arrived`); when the request ends, the members not yet handed over get
their bytes, or an error naming their own range (:meth:`RequestDelivery.finish`,
:meth:`RequestDelivery.fail`). Every member is delivered exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rasteret_dask.io.errors import FetchError
from rasteret_dask.io.ranges import ByteRange, MergedRange, Payload

__all__ = ["Deliver", "RequestDelivery", "member_error"]

Deliver = Callable[[int, Payload | FetchError], None]
"""Receives one range's outcome: (its position in the caller's input, bytes or error)."""


def member_error(error: FetchError, member: ByteRange) -> FetchError:
    """``error`` (a merged request's) restated for one of the ranges the request served."""
    out = FetchError(
        member.href, member.start, member.end, error.attempts, error.reason, error.status
    )
    out.__cause__ = error.__cause__
    return out


class RequestDelivery:
    """The delivery of one merged request's members, each once.

    Parameters
    ----------
    request
        The merged request.
    positions
        For each index :func:`~.ranges.coalesce` gave a member, its position in the input
        of :attr:`deliver`'s caller.
    deliver
        Called once per member.
    """

    def __init__(
        self, request: MergedRange, positions: Sequence[int], deliver: Deliver
    ) -> None:
        self.request = request
        self.positions = positions
        self.deliver = deliver
        # members handed over while streaming: a prefix of ``request.members`` (by start)
        self.streamed = 0

    def arrived(self, view: memoryview, received: int) -> None:
        """The body streams: hand over each member whose bytes are all in ``view[:received]``.

        Members go in start order; a retried attempt streams again from its first byte and
        hands over only members not yet delivered.
        """
        request = self.request
        members = request.members
        available = request.start + received
        while self.streamed < len(members):
            member_index, member = members[self.streamed]
            if member.end > available:
                break
            self.streamed += 1
            lo = member.start - request.start
            self.deliver(self.positions[member_index], view[lo:lo + member.size])

    def fail(self, error: FetchError) -> None:
        """The request failed: every member not yet handed over gets ``error``, restated for
        its own range."""
        for member_index, member in self.request.members[self.streamed:]:
            self.deliver(self.positions[member_index], member_error(error, member))

    def finish(self, data: Payload, attempts: int, size: int | None, allow_short: bool) -> None:
        """The request's payload is in: split it to the members not yet handed over.

        Parameters
        ----------
        data
            The bytes from the request's start (fewer than asked only at the object's end).
        attempts
            Attempts the request took, for the errors of members past the end.
        size
            The object's size, when known.
        allow_short
            Hand a member that the object's end cuts its truncated bytes instead of an error.
        """
        request = self.request
        available_end = request.start + len(data)
        chunks = request.split(data)
        for (member_index, member), (_, chunk) in zip(
            request.members[self.streamed:], chunks[self.streamed:], strict=True
        ):
            if member.end > available_end and not allow_short:
                reason = "range ends past the end of the object"
                reason += f" ({size} bytes)" if size is not None else ""
                value: Payload | FetchError = FetchError(
                    member.href, member.start, member.end, attempts, reason
                )
            else:
                value = chunk
            self.deliver(self.positions[member_index], value)
