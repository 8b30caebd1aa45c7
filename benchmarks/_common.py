"""What the read benchmarks share: the served latency, GDAL's settings for the peers, per-run
measurements (wall, CPU, requests, bytes, peak RSS), GDAL's cache reset, and the pieces of the
decode floor (a COG level's tile bytes, imagecodecs' fastest decode of one tile).

Imported by ``read_bench.py``, ``grid_bench.py`` and ``_grid_floor.py`` as ``_common`` (the
scripts' folder is first on ``sys.path`` when they run).
"""

from __future__ import annotations

import ctypes
import gc
import glob
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

from rasteret_dask.testing.server_process import RangeServerProcess

LATENCY = 0.040
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
}


@dataclass
class Measure:
    """One tool on one AOI: per-run seconds, requests, bytes and peak RSS above the start."""

    seconds: list[float] = field(default_factory=list)
    plan_seconds: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    nbytes: list[int] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    output_bytes: int = 0
    tracemalloc_peak: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# --- memory -----------------------------------------------------------------------------------

def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def status_bytes(key: str, pid: int | str = "self") -> int | None:
    """A size field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``) in bytes; None when the
    process is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakRSS:
    """Resident-set high-water mark of a block above the RSS at its start (Linux only).

    Freed heap is returned to the OS first (gc + malloc_trim) so memory kept by the allocator
    from earlier runs does not hide this run's allocations; VmHWM is reset via clear_refs.
    """

    def __enter__(self) -> PeakRSS:
        gc.collect()
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        self.base = status_bytes("VmRSS")
        self.peak: int | None = None
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            self.base = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        high = status_bytes("VmHWM")
        if self.base is not None and high is not None:
            self.peak = high - self.base


# --- data -------------------------------------------------------------------------------------

def cached_file(path: Path, write: Callable[[Path], object]) -> Path:
    """``path``, written by ``write`` (into a partial file, then renamed) unless it exists."""
    if not path.exists():
        started = time.perf_counter()
        partial = path.parent / f".partial-{os.getpid()}-{path.name}"
        write(partial)
        os.replace(partial, path)
        print(f"  wrote {path} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


# --- runs -------------------------------------------------------------------------------------

def gdal_clear_cache() -> Callable[[], None]:
    """VSICurlClearCache from the libgdal rasterio loaded (the wheel's bundled copy if any)."""
    import rasterio

    candidates = glob.glob(os.path.join(os.path.dirname(rasterio.__file__) + ".libs", "libgdal*"))
    candidates += ["libgdal.so"]
    for name in candidates:
        try:
            function = ctypes.CDLL(name).VSICurlClearCache
        except (OSError, AttributeError):
            continue
        function.restype = None
        function.argtypes = []
        return function
    raise RuntimeError("cannot find VSICurlClearCache in GDAL; run with a fresh process instead")


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def measured(server: RangeServerProcess, measure: Measure,
             run: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Run once, recording wall time, request and byte deltas and the peak RSS."""
    requests, sent = server.count(method=None), server.bytes_sent
    with PeakRSS() as memory:
        cpu = cpu_seconds()
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu
    measure.seconds.append(seconds)
    measure.cpu_seconds.append(cpu)
    measure.requests.append(server.count(method=None) - requests)
    measure.nbytes.append(server.bytes_sent - sent)
    if memory.peak is not None:
        measure.peak_rss.append(memory.peak)
    measure.output_bytes = sum(a.nbytes for a in result.values())
    return result


def mb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:.1f} MB"


def spread(values: list) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


# --- the floor's pieces -----------------------------------------------------------------------

def tile_bytes(path: Path, level: int, rows: Iterable[int], cols: Iterable[int]) -> list[bytes]:
    """The compressed tiles (row, col) of IFD ``level`` (0: full resolution) of a tiled TIFF."""
    cols = list(cols)
    blobs = []
    with tifffile.TiffFile(path) as tif, open(path, "rb") as handle:
        page = tif.pages[level]
        across = -(-page.imagewidth // page.tilewidth)
        for r in rows:
            for c in cols:
                handle.seek(page.dataoffsets[r * across + c])
                blobs.append(handle.read(page.databytecounts[r * across + c]))
    return blobs


def decode_tile(blob: bytes, out: np.ndarray) -> np.ndarray:
    """imagecodecs' fastest path for a deflate + horizontal-predictor tile: libdeflate into the
    pre-sized ``out`` (C-contiguous, the tile's shape and dtype), then the predictor in place."""
    imagecodecs.deflate_decode(blob, out=out.reshape(-1).view(np.uint8))
    return imagecodecs.delta_decode(out, axis=1, out=out)
