"""The local STAC API test kit: generated Sentinel-2-like items, the rustac server and the proxy."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import pystac
import pytest
import shapely
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3 import Retry

from rasteret_dask.testing import stac as stac_module
from rasteret_dask.testing.stac import COG_TYPE, FlakyProxy, StacServer, sentinel2_items

BBOX = (77.5, 12.9, 77.7, 13.1)
COLLECTION = "sentinel-2-l2a"
MONTHS = ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06"]
N = 100


def _when(item: dict) -> datetime:
    return datetime.fromisoformat(item["properties"]["datetime"])


def _expected(items: list[dict], bbox=None, start=None, end=None) -> set[str]:
    """Ids an API must return: geometry intersects ``bbox``, datetime within [start, end]."""
    query = None if bbox is None else shapely.box(*bbox)
    return {
        item["id"] for item in items
        if (query is None or shapely.geometry.shape(item["geometry"]).intersects(query))
        and (start is None or _when(item) >= start) and (end is None or _when(item) <= end)
    }


def _month_window(month: str) -> tuple[datetime, datetime]:
    """What pystac-client sends for ``datetime="YYYY-MM"``: first 00:00:00 to last 23:59:59."""
    year, mon = map(int, month.split("-"))
    following = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    return datetime(year, mon, 1, tzinfo=UTC), following - timedelta(seconds=1)


def _ids(search) -> list[str]:
    return [item["id"] for item in search.items_as_dicts()]


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


@pytest.fixture(scope="module")
def items(http_server) -> list[dict]:
    """100 items over Jan-Jun 2024 whose data assets point at COGs served on 127.0.0.1."""
    return sentinel2_items(
        N, bbox=BBOX, href_for=lambda i, key: http_server.href(f"scene{i % 4}_B04.tif"))


@pytest.fixture(scope="module")
def server(items):
    with StacServer(items) as running:
        yield running


@pytest.fixture(scope="module")
def module_proxy(server):
    with FlakyProxy(server.url) as running:
        yield running


@pytest.fixture
def proxy(module_proxy):
    module_proxy.reset()
    yield module_proxy
    module_proxy.reset()


# -- generated items --------------------------------------------------------------------------


def test_items_are_valid_stac_and_span_the_months(items):
    assert len({item["id"] for item in items}) == N
    parsed = [pystac.Item.from_dict(item) for item in items]
    assert all(item.collection_id == COLLECTION for item in parsed)
    per_month = Counter(f"{_when(i):%Y-%m}" for i in items)
    assert per_month == dict(zip(MONTHS, [16, 17, 17, 16, 17, 17]))
    times = [_when(i) for i in items]
    assert times == sorted(times)
    stamps = {i["properties"]["datetime"] for i in items}
    assert {"2024-01-31T23:59:59Z", "2024-01-31T23:59:59.500000Z", "2024-02-01T00:00:00Z",
            "2024-05-31T23:59:59Z", "2024-06-01T00:00:00Z"} <= stamps
    first = items[0]
    assert first["id"].startswith(("S2A_43P", "S2B_43P")) and first["id"].endswith("_0_L2A")
    props = first["properties"]
    assert props["platform"] in ("sentinel-2a", "sentinel-2b")
    assert props["constellation"] == "sentinel-2"
    assert props["grid:code"] == f"MGRS-{props['s2:mgrs_tile']}"
    assert 0 <= props["eo:cloud_cover"] <= 100 and props["created"].endswith("Z")
    assert {"proj:epsg"} <= set(props) and items[3]["properties"]["proj:code"] == "EPSG:32643"
    assert sum("proj:code" in i["properties"] for i in items) == N // 4
    assert {"red", "nir", "green", "blue", "scl", "thumbnail"} == set(first["assets"])
    red = first["assets"]["red"]
    assert red["type"] == COG_TYPE and "data" in red["roles"]
    assert red["eo:bands"][0]["name"] == "red"
    assert red["href"].startswith("http://127.0.0.1:") and red["href"].endswith("scene0_B04.tif")
    assert first["assets"]["thumbnail"]["roles"] == ["thumbnail"]


def test_item_footprints_cover_touch_and_miss_the_bbox(items):
    query = shapely.box(*BBOX)
    shapes = [shapely.geometry.shape(i["geometry"]) for i in items]
    assert all(s.is_valid and s.exterior.is_ccw for s in shapes)
    assert sum(s.contains(query) for s in shapes) >= N // 3
    partly = [s for s in shapes if s.intersects(query) and not s.contains(query)]
    outside = [s for s in shapes if not s.intersects(query)]
    assert len(partly) >= 5 and len(outside) >= 5
    assert sum(len(s.exterior.coords) == 6 for s in shapes) == N // 5  # cut corners
    for item, shape in zip(items, shapes):
        assert item["bbox"] == pytest.approx(list(shape.bounds))


def test_href_templates_and_determinism():
    default = sentinel2_items(2, months=1)[0]
    assert default["assets"]["nir"]["href"] == (
        "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/43/P/"
        f"{default['properties']['mgrs:grid_square']}/2024/1/{default['id']}/B08.tif")
    templated = sentinel2_items(3, href_for="http://127.0.0.1:1/{index}/{key}-{file}.{ext}",
                                bands=("swir16",), extra_assets=("thumbnail",), seed=5)
    assert templated[2]["assets"]["swir16"]["href"] == "http://127.0.0.1:1/2/swir16-B11.tif"
    assert templated[2]["assets"]["thumbnail"]["href"].endswith("/2/thumbnail-thumbnail.jpg")
    assert templated == sentinel2_items(3, href_for="http://127.0.0.1:1/{index}/{key}-{file}.{ext}",
                                        bands=("swir16",), extra_assets=("thumbnail",), seed=5)
    plain = sentinel2_items(12, months=3, boundaries=False, collection=None)
    assert "collection" not in plain[0]
    assert not any(i["properties"]["datetime"].endswith(("T00:00:00Z", "59:59Z")) for i in plain)


def test_asset_hrefs_resolve_on_the_range_server(items, http_server):
    href = items[5]["assets"]["red"]["href"]
    request = urllib.request.Request(href, headers={"Range": "bytes=0-3"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 206 and response.read() in (b"II*\x00", b"II+\x00")


# -- the rustac server ------------------------------------------------------------------------


def test_search_by_collection_pages_through_everything(server, items):
    client = Client.open(server.url)
    assert _ids(client.search(collections=[COLLECTION])) == [i["id"] for i in items]
    assert _ids(client.search(collections=["sentinel-1-grd"])) == []
    assert client.get_collection(COLLECTION).extent.temporal.intervals[0][0] == _when(items[0])


def test_search_with_limit_pages_through_next_links(proxy, items):
    client = Client.open(proxy.url)
    pages = list(client.search(collections=[COLLECTION], limit=10).pages_as_dicts())
    assert [len(page["features"]) for page in pages] == [10] * 10
    assert [f["id"] for page in pages for f in page["features"]] == [i["id"] for i in items]
    searches = [r for r in proxy.requests if r.path == "/search"]
    assert [r.method for r in searches] == ["POST"] * 10
    assert [r.page for r in searches] == [None] + [str(k) for k in range(10, 100, 10)]
    assert all(r.body["limit"] == 10 and r.body["collections"] == [COLLECTION] for r in searches)


@pytest.mark.parametrize("month", MONTHS)
def test_search_month_window_with_bbox(server, items, month):
    client = Client.open(server.url)
    search = client.search(collections=[COLLECTION], bbox=BBOX, datetime=month, limit=7)
    expected = _expected(items, BBOX, *_month_window(month))
    got = _ids(search)
    assert len(got) == len(set(got)) and set(got) == expected
    assert 3 <= len(expected) < N // 6


def test_month_windows_miss_fractional_last_seconds_and_overlap_with_datetime_ends(server, items):
    client = Client.open(server.url)
    found = set()
    for month in MONTHS:
        found |= set(_ids(client.search(collections=[COLLECTION], datetime=month)))
    gap = {i["id"] for i in items if i["properties"]["datetime"] == "2024-01-31T23:59:59.500000Z"}
    assert found == {i["id"] for i in items} - gap and len(gap) == 1
    # datetime objects are sent verbatim and the end is inclusive: adjacent windows overlap
    jan = _ids(client.search(collections=[COLLECTION], datetime=(
        datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))))
    feb = _ids(client.search(collections=[COLLECTION], datetime=(
        datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))))
    overlap = {i["id"] for i in items if i["properties"]["datetime"] == "2024-02-01T00:00:00Z"}
    assert set(jan) & set(feb) == overlap and gap <= set(jan)


def test_bbox_filter_uses_geometry_not_item_bbox(server, items):
    cut = next(i for i in items if len(i["geometry"]["coordinates"][0]) == 6)
    x0, y0 = cut["bbox"][:2]
    corner = (x0, y0, x0 + 0.01, y0 + 0.01)  # inside the item's bbox, outside its footprint
    assert not shapely.geometry.shape(cut["geometry"]).intersects(shapely.box(*corner))
    got = set(_ids(Client.open(server.url).search(collections=[COLLECTION], bbox=corner)))
    assert cut["id"] not in got and got == _expected(items, corner)


def test_items_come_back_with_properties_and_assets_preserved(server, items):
    client = Client.open(server.url)
    returned = {i["id"]: i for i in client.search(collections=[COLLECTION]).items_as_dicts()}
    for item in items:
        back = returned[item["id"]]
        assert back["assets"] == item["assets"] and back["geometry"] == item["geometry"]
        assert back["stac_extensions"] == item["stac_extensions"]
        assert {k: v for k, v in back["properties"].items() if k != "datetime"} == {
            k: v for k, v in item["properties"].items() if k != "datetime"}
        assert _when(back) == _when(item)  # re-serialised: "...27.497000Z" -> "...27.497Z"
        rels = Counter(link["rel"] for link in back["links"])
        assert rels == {"license": 1, "root": 1, "self": 1, "collection": 1, "parent": 1}
    # pystac migrates projection v1.1 items: proj:epsg becomes proj:code
    migrated = next(client.search(collections=[COLLECTION], max_items=1).items())
    assert migrated.properties.get("proj:code") == "EPSG:32643"
    assert "proj:epsg" not in migrated.properties


def test_rustac_quirks(server):
    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(server.url + path, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    # GET paging breaks when a next link must carry an array (collections, bbox, ids)
    assert get("/search?collections=sentinel-2-l2a&limit=5") == (500, b"unsupported value")
    assert get("/search?collections=sentinel-2-l2a&limit=100")[0] == 200
    status, body = get("/search?datetime=2024-01-01T00:00:00Z/..&limit=5")
    next_link = next(link for link in json.loads(body)["links"] if link["rel"] == "next")
    assert status == 200 and next_link["href"].endswith("skip=5")
    assert get("/search?datetime=2024-02-01/2024-02-02")[0] == 400  # RFC 3339 only
    assert json.loads(get("/search")[1])["numberReturned"] == 10  # default page size
    # no query/filter/sort/fields extensions: query and filter silently match nothing
    client = Client.open(server.url)
    with pytest.warns(UserWarning, match="does not conform to QUERY"):
        assert _ids(client.search(query={"eo:cloud_cover": {"lt": 50}})) == []
    with pytest.warns(UserWarning, match="does not conform to FILTER"):
        assert _ids(client.search(filter={"op": "<", "args": [
            {"property": "eo:cloud_cover"}, 50]})) == []


def test_items_without_collection_land_in_a_default_collection():
    with StacServer(sentinel2_items(3, collection=None)) as server:
        client = Client.open(server.url)
        assert [c.id for c in client.get_collections()] == ["default-collection-id"]
        assert len(_ids(client.search(collections=["default-collection-id"]))) == 3


def test_collections_are_loaded_from_files(items):
    collection = {
        "type": "Collection", "stac_version": "1.0.0", "id": COLLECTION, "title": "S2 L2A",
        "description": "Sentinel-2 L2A", "license": "proprietary", "links": [],
        "extent": {"spatial": {"bbox": [list(BBOX)]},
                   "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]}}}
    with StacServer(items[:5], collections=[collection]) as server:
        client = Client.open(server.url)
        assert [c.id for c in client.get_collections()] == [COLLECTION]
        assert client.get_collection(COLLECTION).title == "S2 L2A"
        assert len(_ids(client.search(collections=[COLLECTION]))) == 5


# -- the proxy --------------------------------------------------------------------------------


def test_proxy_rewrites_links_and_forwards_get_and_post(proxy, server):
    client = Client.open(proxy.url)
    assert {link.href.split("/")[2] for link in client.links} == {proxy.url.removeprefix("http://")}
    page = next(client.search(collections=[COLLECTION], limit=5).pages_as_dicts())
    next_link = next(link for link in page["links"] if link["rel"] == "next")
    assert next_link["href"] == f"{proxy.url}/search" and next_link["body"]["skip"] == 5
    assert all(link["href"].startswith(proxy.url) for link in page["features"][0]["links"][1:])
    assert page["features"][0]["assets"]["red"]["href"].startswith("http://127.0.0.1:")
    assert not page["features"][0]["assets"]["red"]["href"].startswith(proxy.url)
    got = _ids(client.search(collections=[COLLECTION], datetime="2024-03", method="GET",
                             limit=100))
    assert got and proxy.count(method="GET", path="/search") == 1
    logged = next(r for r in proxy.requests if r.method == "GET" and r.path == "/search")
    assert logged.params["datetime"] == "2024-03-01T00:00:00Z/2024-03-31T23:59:59Z"
    assert proxy.count(injected=True) == 0 and f"{server.url}/" not in json.dumps(page)


def test_proxy_injects_503_and_pystac_client_does_not_retry_by_default(proxy):
    client = Client.open(proxy.url)
    proxy.fail(lambda r: r.page == "30", times=1)
    with pytest.raises(APIError) as info:
        list(client.search(collections=[COLLECTION], limit=10).items_as_dicts())
    assert info.value.status_code == 503 and "injected 503" in str(info.value)
    assert proxy.count(lambda r: r.page == "30") == 1  # no retry
    assert proxy.count(status=503, injected=True, method="POST") == 1
    assert [r.page for r in proxy.requests if r.path == "/search"] == [None, "10", "20", "30"]
    # the rule is used up: the same search now succeeds
    assert len(_ids(client.search(collections=[COLLECTION], limit=10))) == N


@pytest.mark.parametrize("status", [500, 502, 503])
def test_retry_on_5xx_for_post_searches(proxy, status):
    retry = Retry(total=3, backoff_factor=0, status_forcelist=[500, 502, 503, 504],
                  allowed_methods=None)  # None: every method, POST included
    client = Client.open(proxy.url, stac_io=StacApiIO(max_retries=retry))
    window = "2024-02-01T00:00:00Z/2024-02-29T23:59:59Z"
    proxy.fail(lambda r: r.params.get("datetime") == window, times=2, status=status)
    assert len(_ids(client.search(collections=[COLLECTION], datetime="2024-02", limit=5))) > 5
    assert proxy.count(lambda r: r.page is None, path="/search", status=status) == 2
    assert proxy.count(path="/search", status=200) == 4  # first page (3rd try) + 3 more pages

    proxy.fail(lambda r: r.page == "5", times=None, status=status)
    with pytest.raises(APIError, match="Max retries exceeded") as info:
        _ids(client.search(collections=[COLLECTION], datetime="2024-02", limit=5))
    assert not hasattr(info.value, "status_code")  # a wrapped urllib3 MaxRetryError
    assert proxy.count(lambda r: r.page == "5", injected=True) == 4  # 1 + 3 retries


def test_retry_without_raise_on_status_keeps_the_status_code(proxy):
    retry = Retry(total=2, backoff_factor=0, status_forcelist=[503], allowed_methods=None,
                  raise_on_status=False)
    client = Client.open(proxy.url, stac_io=StacApiIO(max_retries=retry))
    proxy.fail(lambda r: r.path == "/search", times=None)
    with pytest.raises(APIError) as info:
        _ids(client.search(collections=[COLLECTION]))
    assert info.value.status_code == 503 and proxy.count(path="/search") == 3


# -- lifecycle --------------------------------------------------------------------------------


def test_everything_shuts_down(items):
    with StacServer(items[:3]) as server, FlakyProxy(server.url) as proxy:
        process, stac_url, proxy_url = server.process, server.url, proxy.url
        assert process is not None and process.poll() is None
        assert len(_ids(Client.open(proxy.url).search(collections=[COLLECTION]))) == 3
    assert process.poll() is not None and server.process is None
    assert not _port_open(stac_url) and not _port_open(proxy_url)


def test_failed_starts_leave_no_process(tmp_path, monkeypatch):
    with StacServer([]) as running, pytest.raises(OSError):  # the port is taken
        StacServer([], port=running.port).start()
    script = tmp_path / "fake-rustac"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    monkeypatch.setattr(stac_module, "rustac_executable", lambda: str(script))
    spawned: list[subprocess.Popen] = []
    popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: spawned.append(popen(*a, **k))
                        or spawned[-1])
    server = StacServer([], startup_timeout=0.3)
    with pytest.raises(RuntimeError, match="is not ready"):
        server.start()
    assert server.process is None and server._tmp is None
    assert len(spawned) == 1 and spawned[0].poll() is not None  # terminated
    monkeypatch.setattr(stac_module, "rustac_executable", lambda: "/bin/false")
    with pytest.raises(RuntimeError, match="exited early"):
        StacServer([]).start()
