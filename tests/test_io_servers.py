"""RangeServerProcess: the RangeServer API, served from a child process."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rasteret_dask.io import ByteRange, FetchError, RangeReader
from rasteret_dask.testing.server_process import RangeServerProcess
from rasteret_dask.testing.servers import RequestRecord

pytestmark = pytest.mark.timeout(120)


def _get(url: str, first: int, last: int) -> bytes:
    request = urllib.request.Request(url, headers={"Range": f"bytes={first}-{last}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def test_serves_ranges_and_forwards_the_log_and_faults(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.bin").write_bytes(data)
    with RangeServerProcess(tmp_path, latency=0.01) as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        href = server.href("sub/x.bin")
        assert _get(href, 10, 19) == data[10:20]
        assert server.count() == 1 and server.count(method=None, path="sub/x.bin") == 1
        assert server.bytes_sent == 10 and server.max_in_flight == 1
        assert server.requests == [RequestRecord("GET", "sub/x.bin", "bytes=10-19", 206, 10)]
        assert server.latency == 0.01
        server.latency = 0.0
        assert server.latency == 0.0
        server.set_status("sub/x.bin", 404)
        with pytest.raises(urllib.error.HTTPError):
            _get(href, 0, 9)
        server.clear_faults()
        server.fail_first = 2
        got = RangeReader(backoff_base=0.001).fetch([ByteRange(href, 0, 100)])
        assert got == [data[:100]]
        server.fail_first = 0
        server.set_truncate("sub/x.bin", 5)
        with pytest.raises(FetchError, match="short read"):
            RangeReader(retries=2, backoff_base=0.001).fetch([ByteRange(href, 0, 100)])
        server.clear_faults()
        with pytest.raises(ValueError, match="fail_rate"):
            server.fail_rate = 2.0
        with pytest.raises(AttributeError):
            server.no_such_attribute  # noqa: B018
        server.reset()
        assert server.count(method=None) == 0
    with pytest.raises(RuntimeError, match="not running"):
        server.count()
    server.stop()  # stopping twice is fine
