"""A local STAC API for tests: :func:`sentinel2_items` (Earth Search-like Item dicts),
:class:`StacServer` (``rustac serve`` on 127.0.0.1), :class:`FlakyProxy` (a proxy in front
of it that rewrites links to itself and answers 5xx on demand) and :func:`descriptor_served_at`
(a built-in descriptor answering for a local server's URL, as it does for its own API)."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from aiohttp import ClientSession, ClientTimeout, web

__all__ = ["COG_TYPE", "EARTH_SEARCH_BANDS", "FlakyProxy", "ProxyRequest", "StacServer",
           "descriptor_served_at", "rustac_executable", "sentinel2_items"]

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_EXT = "https://stac-extensions.github.io/{}/schema.json"
_EXTENSIONS = ("eo/v1.1.0", "raster/v1.1.0", "mgrs/v1.0.0", "grid/v1.1.0", "view/v1.0.0",
               "processing/v1.1.0")
#: Earth Search asset key -> (file stem, centre wavelength um, gsd m).
EARTH_SEARCH_BANDS: dict[str, tuple[str, float, int]] = {
    "coastal": ("B01", 0.443, 60), "blue": ("B02", 0.49, 10), "green": ("B03", 0.56, 10),
    "red": ("B04", 0.665, 10), "rededge1": ("B05", 0.704, 20), "rededge2": ("B06", 0.74, 20),
    "rededge3": ("B07", 0.783, 20), "nir": ("B08", 0.842, 10), "nir08": ("B8A", 0.865, 20),
    "nir09": ("B09", 0.945, 60), "swir16": ("B11", 1.61, 20), "swir22": ("B12", 2.19, 20)}
_FILES = {"scl": "SCL", "aot": "AOT", "wvp": "WVP", "visual": "TCI", "thumbnail": "thumbnail"}
_HREF = ("https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/"
         "{utm_zone}/{lat_band}/{square}/{year}/{month}/{id}/{file}.{ext}")
_LICENSE = "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxies from env


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def _datetimes(n: int, first: datetime, months: int, rnd: random.Random,
               boundaries: bool) -> list[datetime]:
    """Nondecreasing times, even over the months; ``boundaries``: see :func:`sentinel2_items`."""
    out: list[datetime] = []
    for k in range(months):
        year, month = first.year + (first.month - 1 + k) // 12, (first.month - 1 + k) % 12 + 1
        ndays = calendar.monthrange(year, month)[1]
        times = sorted(datetime(year, month, rnd.randint(1, ndays), 5, rnd.randint(10, 40),
                                rnd.randint(0, 59), rnd.randint(0, 999) * 1000, tzinfo=UTC)
                       for _ in range((k + 1) * n // months - k * n // months))
        if boundaries and k > 0 and times:
            times[0] = datetime(year, month, 1, tzinfo=UTC)
        if boundaries and k < months - 1 and len(times) > 1:
            times[-1] = datetime(year, month, ndays, 23, 59, 59, tzinfo=UTC)
            if k == 0 and len(times) > 2:
                times[-2] = times[-1] + timedelta(microseconds=500_000)
        out.extend(sorted(times))
    return out


def _footprint(i: int, bbox: Sequence[float], rnd: random.Random) -> list[list[float]]:
    """A lon/lat ring; see :func:`sentinel2_items`."""
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    if i % 3 == 0:
        hw, hh = w / 2 + rnd.uniform(0.05, 0.3), h / 2 + rnd.uniform(0.05, 0.3)
        cx, cy = cx + rnd.uniform(-0.04, 0.04), cy + rnd.uniform(-0.04, 0.04)
    else:
        hw, hh = rnd.uniform(0.08, 0.3), rnd.uniform(0.08, 0.3)
        cx += rnd.uniform(-1, 1) * (w / 2 + 2 * hw)
        cy += rnd.uniform(-1, 1) * (h / 2 + 2 * hh)
    x0, y0, x1, y1 = cx - hw, cy - hh, cx + hw, cy + hh
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    if i % 5 == 4:
        ring = [[x0 + 1.2 * hw, y0], *ring[1:4], [x0, y0 + 1.2 * hh], [x0 + 1.2 * hw, y0]]
    return [[round(x, 6), round(y, 6)] for x, y in ring]


def _asset(key: str, href: str, square: str) -> dict[str, Any]:
    if key not in EARTH_SEARCH_BANDS:
        thumb = key == "thumbnail"
        return {"href": href, "type": "image/jpeg" if thumb else COG_TYPE, "title": key.upper(),
                "roles": ["thumbnail" if thumb else "data"]}
    file, centre, gsd = EARTH_SEARCH_BANDS[key]
    return {"href": href, "type": COG_TYPE, "title": f"{key} ({file}) - {gsd}m", "gsd": gsd,
            "eo:bands": [{"name": key, "common_name": key, "center_wavelength": centre}],
            "proj:shape": [109800 // gsd] * 2, "proj:transform":
            [gsd, 0, 699960, 0, -gsd, 1500000 if square == "GQ" else 1400040],
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                              "spatial_resolution": gsd, "scale": 0.0001, "offset": -0.1}],
            "roles": ["data", "reflectance"]}


def sentinel2_items(
    n: int, *, start: str = "2024-01-01", months: int = 6,
    bbox: tuple[float, float, float, float] = (77.5, 12.9, 77.7, 13.1),
    href_for: Callable[[int, str], str] | str | None = None,
    collection: str | None = "sentinel-2-l2a", seed: int = 0,
    bands: Sequence[str] = ("red", "nir", "green", "blue"),
    extra_assets: Sequence[str] = ("scl", "thumbnail"), epsg: int = 32643, boundaries: bool = True,
) -> list[dict[str, Any]]:
    """``n`` Earth Search-like Sentinel-2 L2A STAC 1.0 Item dicts, nondecreasing in datetime.

    Hrefs: ``href_for(index, key)`` or a template with ``{index} {id} {key} {file} {ext}`` (and
    ``{tile} {utm_zone} {lat_band} {square} {year} {month}``). Footprints: every 3rd covers
    ``bbox``, the others lie around it (partly or wholly outside), every 5th has a corner cut off
    (swath edge). Every 4th item has ``proj:code`` instead of ``proj:epsg``. ``boundaries``: each
    month's first/last item at 00:00:00 / 23:59:59, one at 23:59:59.5 in the first month.
    """
    rnd = random.Random(seed)
    times = _datetimes(n, datetime.fromisoformat(start).replace(tzinfo=UTC), months, rnd,
                       boundaries)
    zone, lat_band = epsg % 100, "CDEFGHJKLMNPQRSTUVWX"[int(((bbox[1] + bbox[3]) / 2 + 80) // 8)]
    template = _HREF if href_for is None else href_for
    items: list[dict[str, Any]] = []
    ids: set[str] = set()
    for i, when in enumerate(times):
        square, sat = rnd.choice(("GQ", "GQ", "GQ", "GP")), rnd.choice("AB")
        tile, seq = f"{zone}{lat_band}{square}", 0
        while (item_id := f"S2{sat}_{tile}_{when:%Y%m%d}_{seq}_L2A") in ids:
            seq += 1
        ids.add(item_id)
        names = {"index": i, "id": item_id, "tile": tile, "utm_zone": zone, "lat_band": lat_band,
                 "square": square, "year": when.year, "month": when.month}
        assets = {key: _asset(key, template(i, key) if callable(template) else template.format(
            key=key, file=EARTH_SEARCH_BANDS[key][0] if key in EARTH_SEARCH_BANDS else _FILES[key],
            ext="jpg" if key == "thumbnail" else "tif", **names), square)
            for key in (*bands, *extra_assets)}
        ring, proj_v2 = _footprint(i, bbox, rnd), i % 4 == 3
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        properties: dict[str, Any] = {
            "created": _iso(when + timedelta(hours=3, seconds=i)),
            "platform": f"sentinel-2{sat.lower()}", "constellation": "sentinel-2",
            "instruments": ["msi"], "eo:cloud_cover": round(rnd.uniform(0, 100), 6),
            **({"proj:code": f"EPSG:{epsg}"} if proj_v2 else {"proj:epsg": epsg}),
            "mgrs:utm_zone": zone, "mgrs:latitude_band": lat_band, "mgrs:grid_square": square,
            "grid:code": f"MGRS-{tile}", "s2:mgrs_tile": tile, "s2:processing_baseline": "05.10",
            "s2:nodata_pixel_percentage": 40.0 if i % 5 == 4 else 0.0,
            "view:sun_azimuth": round(rnd.uniform(110, 150), 4),
            "view:sun_elevation": round(rnd.uniform(45, 70), 4),
            "processing:software": {"sentinel2-to-stac": "0.1.1"},
            "earthsearch:boa_offset_applied": True, "datetime": _iso(when),
            "updated": _iso(when + timedelta(hours=3, seconds=i))}
        items.append({
            "type": "Feature", "stac_version": "1.0.0",
            "stac_extensions": [_EXT.format(e) for e in _EXTENSIONS]
            + [_EXT.format("projection/v2.0.0" if proj_v2 else "projection/v1.1.0")],
            "id": item_id, "geometry": {"type": "Polygon", "coordinates": [ring]},
            "bbox": [min(xs), min(ys), max(xs), max(ys)], "properties": properties,
            "links": [{"rel": "license", "href": _LICENSE}], "assets": assets,
            **({"collection": collection} if collection else {})})
    return items


def rustac_executable() -> str:
    """The ``rustac`` console script next to ``sys.executable``, else the one on PATH."""
    local = Path(sys.executable).with_name("rustac")
    found = str(local) if local.is_file() else shutil.which("rustac")
    if found is None:
        raise FileNotFoundError("rustac executable not found (pip install rustac)")
    return found


def _terminate(proc: subprocess.Popen[bytes]) -> None:  # terminate() is a no-op once exited
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class StacServer:
    """``rustac serve`` (in-memory backend) over ``items`` and ``collections``, a subprocess."""

    def __init__(self, items: Sequence[Mapping[str, Any]], *,
                 collections: Sequence[Mapping[str, Any]] | None = None,
                 host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0) -> None:
        self.items = [dict(item) for item in items]
        self.collections = [dict(c) for c in collections or ()]
        self.host, self.port, self.startup_timeout = host, port, startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Write the inputs, start rustac and wait until ``GET /`` answers 200."""
        if self.process is not None:
            return self
        try:
            self._tmp = tempfile.TemporaryDirectory(prefix="rasteret-stac-")
            root = Path(self._tmp.name)
            hrefs = [root / f"collection-{k}.json" for k in range(len(self.collections))]
            hrefs.append(root / "items.json")
            for path, doc in zip(hrefs, [*self.collections, {"type": "FeatureCollection",
                                                             "features": self.items}]):
                path.write_text(json.dumps(doc))
            with socket.socket() as sock:  # port 0: a free one; a taken port fails here
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self.port))
                self.port = int(sock.getsockname()[1])
            cmd = [rustac_executable(), "serve", *map(str, hrefs), "--create-collections",
                   "--addr", f"{self.host}:{self.port}"]
            with (root / "rustac.log").open("wb") as log:
                self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL)
            # terminated by stop(), on garbage collection or at interpreter exit
            self._finalizer = weakref.finalize(self, _terminate, self.process)
            deadline = time.monotonic() + self.startup_timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError), _OPENER.open(self.url, timeout=1) as response:
                    if response.status == 200:
                        return self
                time.sleep(0.05)
            state = "exited early" if self.process.poll() is not None else "is not ready"
            output = (root / "rustac.log").read_text(errors="replace")
            raise RuntimeError(f"rustac serve {state}:\n{output}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the process (kill after 5 s) and remove the temporary files."""
        if self._finalizer is not None:
            self._finalizer()
        self.process = self._finalizer = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass(frozen=True)
class ProxyRequest:
    """A request seen by :class:`FlakyProxy`; ``status``/``injected`` are set in the log."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    status: int = 0
    injected: bool = False

    @property
    def params(self) -> dict[str, Any]:
        """Query parameters updated with the JSON body (when it is an object)."""
        return {**self.query, **(self.body if isinstance(self.body, dict) else {})}

    @property
    def page(self) -> str | None:
        """The paging parameter (rustac's ``skip``, or ``token``/``page``) past page one."""
        values = (self.params.get(k) for k in ("skip", "token", "page"))
        return next((str(v) for v in values if v not in (None, "", 0, "0")), None)


@dataclass
class _Fault:
    match: Callable[[ProxyRequest], bool] | None
    remaining: int | None
    status: int


class FlakyProxy:
    """HTTP proxy to a STAC API (aiohttp, background thread) that moves the upstream's URLs in
    JSON answers to its own and injects 5xx answers; GET and POST (JSON bodies) are forwarded."""

    def __init__(self, upstream_url: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.host, self.port = host, port
        self._lock = threading.RLock()  # a match predicate may call count()
        self._log: list[ProxyRequest] = []
        self._faults: list[_Fault] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The proxy's API root, e.g. ``http://127.0.0.1:41235``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Start serving; returns self once the port is bound."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
            self._thread.start()
            try:
                asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result(timeout=10)
            except BaseException:
                self.stop()
                raise
        return self

    async def _setup(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None:
            if self._runner is not None:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def fail(self, match: Callable[[ProxyRequest], bool] | None = None, *, times: int | None = 1,
             status: int = 503) -> None:
        """Answer ``status`` to the next ``times`` requests matching ``match`` (None: any;
        ``times=None``: no limit; a fail rate: ``match=lambda r: rng.random() < 0.3``)."""
        with self._lock:
            self._faults.append(_Fault(match, times, status))

    @property
    def requests(self) -> list[ProxyRequest]:
        """A copy of the request log, in the order the answers were decided."""
        with self._lock:
            return list(self._log)

    def count(self, match: Callable[[ProxyRequest], bool] | None = None, **fields: Any) -> int:
        """Number of logged requests matching ``match`` with these field values (``status=503``)."""
        return sum(1 for r in self.requests if (match is None or match(r))
                   and all(getattr(r, k) == v for k, v in fields.items()))

    def reset(self) -> None:
        """Clear the request log and every fault rule."""
        with self._lock:
            self._log.clear()
            self._faults.clear()

    def _decide(self, request: ProxyRequest) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining != 0 and (fault.match is None or fault.match(request)):
                    fault.remaining = None if fault.remaining is None else fault.remaining - 1
                    return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        seen = ProxyRequest(request.method, request.path, dict(request.query), body)
        fault = self._decide(seen)
        if fault is not None:
            with self._lock:
                self._log.append(replace(seen, status=fault.status, injected=True))
            error = {"code": "Injected", "description": f"injected {fault.status}"}
            return web.json_response(error, status=fault.status)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("accept", "content-type")}
        async with ClientSession() as session, session.request(
                request.method, self.upstream_url + request.path_qs, data=raw or None,
                headers=headers, timeout=ClientTimeout(total=30)) as upstream:
            data, status = await upstream.read(), upstream.status
            ctype = upstream.headers.get("Content-Type", "application/octet-stream")
        if "json" in ctype:  # every JSON string that starts with the upstream URL
            for end in ("/", '"'):
                data = data.replace(f'"{self.upstream_url}{end}'.encode(),
                                    f'"{self.url}{end}'.encode())
        with self._lock:
            self._log.append(replace(seen, status=status))
        return web.Response(body=data, status=status, headers={"Content-Type": ctype})


@contextlib.contextmanager
def descriptor_served_at(dataset_id: str, stac_api: str) -> Any:
    """For the block, the registered descriptor ``dataset_id`` has ``stac_api`` as its API, so
    ``build_from_stac(stac_api=<local server>, collection=...)`` applies it as it would on the
    real API (a descriptor applies only on its own API); restored afterwards.

    Yields
    ------
    DatasetDescriptor
        The descriptor as registered during the block.
    """
    from ..catalog import get_descriptor, register

    original = get_descriptor(dataset_id)
    local = register(replace(original, stac_api=stac_api), replace=True)
    try:
        yield local
    finally:
        register(original, replace=True)

