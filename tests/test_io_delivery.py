"""Handing a merged request's members over (pure, no I/O): as the body streams, at the end,
on failure; each member once, in the caller's positions."""

from __future__ import annotations

from rasteret_dask.io.delivery import RequestDelivery, member_error
from rasteret_dask.io.errors import FetchError
from rasteret_dask.io.ranges import ByteRange, coalesce

HREF = "https://host/a.tif"
BODY = bytes(range(100))


def delivery_of(ranges: list[ByteRange], positions: list[int]
                ) -> tuple[RequestDelivery, dict[int, object]]:
    (request,) = coalesce(ranges, gap=100, max_size=1000)
    got: dict[int, object] = {}

    def deliver(index: int, value: object) -> None:
        assert index not in got, f"position {index} delivered twice"
        got[index] = value

    return RequestDelivery(request, positions, deliver), got


def test_members_are_handed_over_as_their_last_byte_arrives() -> None:
    ranges = [ByteRange(HREF, 40, 50), ByteRange(HREF, 0, 10), ByteRange(HREF, 20, 30)]
    delivery, got = delivery_of(ranges, [7, 8, 9])
    view = memoryview(bytearray(50))
    view[:25] = BODY[:25]
    delivery.arrived(view, 25)
    assert got == {8: BODY[0:10]}
    view[25:] = BODY[25:50]
    delivery.arrived(view, 30)
    assert got == {8: BODY[0:10], 9: BODY[20:30]}
    delivery.arrived(view, 50)
    assert got == {8: BODY[0:10], 9: BODY[20:30], 7: BODY[40:50]}
    delivery.finish(view, 1, None, False)  # nothing left to deliver
    assert len(got) == 3


def test_members_wait_for_earlier_starts() -> None:
    # [0, 30) starts first: [10, 15) waits for it though its bytes are in
    ranges = [ByteRange(HREF, 0, 30), ByteRange(HREF, 10, 15)]
    delivery, got = delivery_of(ranges, [0, 1])
    view = memoryview(bytearray(BODY[:30]))
    delivery.arrived(view, 20)
    assert got == {}
    delivery.arrived(view, 30)
    assert got == {0: BODY[0:30], 1: BODY[10:15]}


def test_the_rest_is_split_at_the_end_and_a_retry_skips_handed_over_members() -> None:
    ranges = [ByteRange(HREF, 0, 10), ByteRange(HREF, 10, 20), ByteRange(HREF, 30, 40)]
    delivery, got = delivery_of(ranges, [0, 1, 2])
    first = memoryview(bytearray(BODY[:40]))
    delivery.arrived(first, 12)  # the attempt fails after 12 bytes
    retried = memoryview(bytearray(BODY[:40]))
    delivery.arrived(retried, 10)  # the retry streams again from its first byte
    assert list(got) == [0]
    delivery.finish(retried, 2, None, False)
    assert got == {0: BODY[0:10], 1: BODY[10:20], 2: BODY[30:40]}


def test_members_past_the_end_of_the_object_fail_unless_short_is_allowed() -> None:
    ranges = [ByteRange(HREF, 0, 10), ByteRange(HREF, 20, 40)]
    delivery, got = delivery_of(ranges, [0, 1])
    delivery.finish(BODY[:25], 2, 25, False)
    assert got[0] == BODY[:10]
    error = got[1]
    assert isinstance(error, FetchError)
    assert (error.start, error.end, error.attempts) == (20, 40, 2)
    assert error.reason == "range ends past the end of the object (25 bytes)"

    delivery, got = delivery_of(ranges, [0, 1])
    delivery.finish(BODY[:25], 1, None, True)
    assert bytes(got[1]) == BODY[20:25]


def test_a_failed_request_fails_each_member_not_yet_handed_over_with_its_own_range() -> None:
    ranges = [ByteRange(HREF, 0, 10), ByteRange(HREF, 10, 20), ByteRange(HREF, 30, 40)]
    delivery, got = delivery_of(ranges, [5, 6, 7])
    delivery.arrived(memoryview(bytearray(BODY[:40])), 10)
    cause = ConnectionResetError("reset")
    failure = FetchError(HREF, 0, 40, 5, "ConnectionResetError: reset")
    failure.__cause__ = cause
    delivery.fail(failure)
    assert got[5] == BODY[:10]
    for position, (start, end) in ((6, (10, 20)), (7, (30, 40))):
        error = got[position]
        assert isinstance(error, FetchError)
        assert (error.href, error.start, error.end) == (HREF, start, end)
        assert (error.attempts, error.reason) == (5, failure.reason)
        assert error.__cause__ is cause


def test_member_error_keeps_status_and_cause() -> None:
    failure = FetchError(HREF, 0, 40, 3, "HTTP 503", 503)
    failure.__cause__ = OSError("cause")
    error = member_error(failure, ByteRange(HREF, 5, 9))
    assert (error.start, error.end, error.status, error.attempts) == (5, 9, 503, 3)
    assert error.__cause__ is failure.__cause__
