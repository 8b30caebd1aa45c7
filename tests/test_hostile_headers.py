"""Hostile headers: bounded memory, nothing fetched blindly, clear per-record errors.

Hand-written TIFFs (struct) declare a 65535 x 65535 sparse tile in 286 bytes, 2**32 - 1 tile
offsets, a 4 GB tile and an 8 GiB non-sparse tile; a GDAL COG with SPARSE_OK=TRUE checks that
sparse tiles read as rasterio reads them. They are served from 127.0.0.1 over HTTP, enriched
through the index API and read; memory is measured in a subprocess (``ru_maxrss``).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib

import dask
import imagecodecs
import numpy as np
import pyarrow as pa
import pyproj
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.decode import (
    DEFAULT_MAX_TILE_BYTES,
    DecodeError,
    DecodeSpec,
    TileTooLargeError,
    decode_tile,
    max_tile_bytes,
    tile_size_problem,
)
from rasteret_dask.decode.limits import bounded_tile_step
from rasteret_dask.read.graph import RasterReadError
from rasteret_dask.testing.servers import RangeServer
from rasteret_dask.tiff import MAX_TILES, SparseBuffer, TiffError, parse_tiff_header

rasterio = pytest.importorskip("rasterio")

EPSG = 32633
ORIGIN = (400000.0, 5300000.0)
PIXEL = 10.0
BIG = 65535
GROWTH_LIMIT_MB = 300

# --- a TIFF writer: classic little-endian, one IFD, values after it --------------------------
_TYPES = {3: "H", 4: "I", 12: "d", 16: "Q", 17: "q"}
_SIZES = {"H": 2, "I": 4, "d": 8, "Q": 8, "q": 8}


def tiff_bytes(entries: list[tuple[int, int, list]], declared: dict[int, int] | None = None,
               tail: bytes = b"") -> bytes:
    """A classic TIFF of one IFD: ``entries`` are (tag, type, values); ``declared`` overrides
    the count of a tag (values then hold only what is written); ``tail`` is appended."""
    declared = declared or {}
    entries = sorted(entries)
    data_at = 8 + 2 + 12 * len(entries) + 4
    body, extra = b"", b""
    for tag, kind, values in entries:
        char = _TYPES[kind]
        raw = struct.pack(f"<{len(values)}{char}", *values)
        count = declared.get(tag, len(values))
        if count * _SIZES[char] <= 4:
            field = raw.ljust(4, b"\0")
        else:
            field = struct.pack("<I", data_at + len(extra))
            extra += raw + b"\0" * (len(raw) % 2)
        body += struct.pack("<HHI", tag, kind, count) + field
    ifd = struct.pack("<H", len(entries)) + body + b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", 8) + ifd + extra + tail


def geotiff(width: int, height: int, tile: tuple[int, int], offsets: list[int],
            counts: list[int], *, kind: int = 4, declared: dict[int, int] | None = None,
            tail: bytes = b"") -> bytes:
    """A uint16 GeoTIFF (EPSG:32633, 10 m pixels) with the given tile tables."""
    geokeys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, EPSG]
    entries = [
        (256, 4, [width]), (257, 4, [height]), (258, 3, [16]), (259, 3, [1]), (262, 3, [1]),
        (277, 3, [1]), (322, 4, [tile[0]]), (323, 4, [tile[1]]), (324, kind, offsets),
        (325, kind, counts), (339, 3, [1]), (33550, 12, [PIXEL, PIXEL, 0.0]),
        (33922, 12, [0.0, 0.0, 0.0, *ORIGIN, 0.0]), (34735, 3, geokeys),
    ]
    return tiff_bytes(entries, declared, tail)


def footprint(width: int, height: int) -> bytes:
    x0, y1 = ORIGIN
    x1, y0 = x0 + PIXEL * width, y1 - PIXEL * height
    box = shapely.segmentize(shapely.box(x0, y0, x1, y1), PIXEL * max(width, height) / 20)
    to_lonlat = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True)
    return shapely.to_wkb(shapely.transform(
        box, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))))


def window_box(col: int, row: int, size: int = 500) -> shapely.Polygon:
    """A ``size`` x ``size`` pixel box with its top-left corner at (col, row)."""
    x0, y1 = ORIGIN[0] + PIXEL * col, ORIGIN[1] - PIXEL * row
    return shapely.box(x0, y1 - PIXEL * size, x0 + PIXEL * size, y1)


# name -> (bytes, image width, image height)
FILES = {
    # 286 bytes: one 65535 x 65535 uint16 tile, sparse (offset 0, byte count 0)
    "sparse_huge.tif": (geotiff(BIG, BIG, (BIG, BIG), [0], [0]), BIG, BIG),
    # TileOffsets and TileByteCounts declaring 2**32 - 1 values (16 GiB each)
    "many_tiles.tif": (geotiff(BIG, BIG, (16, 16), [0], [0],
                               declared={324: 2**32 - 1, 325: 2**32 - 1}), BIG, BIG),
    # one 256 x 256 tile whose byte count says 4 GB
    "huge_count.tif": (geotiff(256, 256, (256, 256), [512], [2**32 - 1],
                               tail=b"\x01" * 4096), 256, 256),
    # one 65535 x 65535 tile with 100 bytes: 8 GiB once decoded
    "huge_decoded.tif": (geotiff(BIG, BIG, (BIG, BIG), [300], [100], tail=b"\x01" * 200),
                         BIG, BIG),
}


def write_sparse_cog(path, nodata: float | None) -> np.ndarray:
    """A 700 x 600 uint16 deflate GeoTIFF of 256 x 256 tiles written by GDAL with
    SPARSE_OK=TRUE; the tiles of the top-left 512 x 512 pixels hold only nodata (0 without
    nodata), so GDAL writes them sparse. Returns the pixels written."""
    from affine import Affine

    fill = 0 if nodata is None else nodata
    rng = np.random.default_rng(3)
    data = rng.integers(1, 1000, (1, 600, 700), dtype=np.uint16)
    data[:, :512, :512] = fill
    profile = dict(driver="GTiff", width=700, height=600, count=1, dtype="uint16",
                   crs=f"EPSG:{EPSG}", transform=Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1]),
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                   sparse_ok=True)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    for name, (data, _, _) in FILES.items():
        (root / name).write_bytes(data)
    write_sparse_cog(root / "gdal_sparse_nodata.tif", nodata=7)
    write_sparse_cog(root / "gdal_sparse.tif", nodata=None)
    return root


@pytest.fixture(scope="module")
def server(hostile_dir):
    with RangeServer(hostile_dir) as srv:
        yield srv


def table_of(server, names: list[str], sizes: dict[str, tuple[int, int]] | None = None) -> pa.Table:
    """The four required columns: one record per file (id = file stem), band ``B1``."""
    sizes = sizes or {}
    shapes = [sizes.get(n) or FILES[n][1:] for n in names]
    asset = pa.StructArray.from_arrays(
        [pa.array([server.href(n) for n in names]), pa.array([0] * len(names), pa.int32())],
        fields=list(S.ASSET_TYPE))
    return pa.table({
        "id": [n.removesuffix(".tif") for n in names],
        "datetime": pa.array(np.array(["2024-05-01"] * len(names), "datetime64[us]")),
        "geometry": [footprint(w, h) for w, h in shapes],
        "assets": pa.StructArray.from_arrays([asset], names=["B1"]),
    })


def enriched(server, names: list[str], sizes=None) -> rd.Collection:
    collection = rd.build_collection_from_table(table_of(server, names, sizes), name="hostile")
    return collection.enrich(progress=False).collection


def errors_of(collection: rd.Collection) -> dict[str, dict[str, str]]:
    table = collection.to_table(columns=["id", S.ENRICH_ERRORS])
    return {i: dict(e or []) for i, e in zip(table["id"].to_pylist(),
                                            table[S.ENRICH_ERRORS].to_pylist(), strict=True)}


# a regression must fail fast (MemoryError), not take the machine's memory
_CAP = "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"


def run_child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter (same environment, at most 6 GiB of address space);
    it prints one JSON line."""
    done = subprocess.run([sys.executable, "-c", _CAP + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- enrichment: declared counts are bounded, per-record errors ---------------------------------

def test_enrich_refuses_a_header_declaring_billions_of_tiles(server):
    names = ["sparse_huge.tif", "many_tiles.tif", "huge_count.tif", "huge_decoded.tif"]
    server.reset()
    collection = rd.build_collection_from_table(table_of(server, names), name="hostile")
    report = collection.enrich(progress=False)
    assert (report.enriched, report.failed) == (3, 1), report.errors
    errors = errors_of(report.collection)
    message = errors["many_tiles"]["B1"]
    assert "record 'many_tiles'" in message and "band 'B1'" in message
    assert server.href("many_tiles.tif") in message
    assert f"TileOffsets declares {2**32 - 1} tiles" in message and str(MAX_TILES) in message
    # the tile tables were never fetched: one prefix request for that file
    asked = [r for r in server.requests if r.path == "many_tiles.tif"]
    assert len(asked) == 1 and asked[0].range.startswith("bytes=0-"), asked
    assert all(not e for i, e in errors.items() if i != "many_tiles")


# --- reads: sparse tiles of any declared size, tiles over the limit -----------------------------

CHILD_READ = """
    import json, resource, sys
    import numpy as np, pyarrow as pa, shapely
    import rasteret_dask as rd
    from tests.test_hostile_headers import table_of, window_box, BIG

    class Server:
        url = sys.argv[1]
        def href(self, name):
            return f"{self.url}/{name}"

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    names = ["sparse_huge.tif", "huge_count.tif", "huge_decoded.tif"]
    collection = rd.build_collection_from_table(table_of(Server(), names), name="h")
    collection = collection.enrich(progress=False).collection
    out = {}
    base = peak_mb()
    sparse = collection.subset(id="sparse_huge")
    array = sparse.get_numpy(window_box(1000, 2000), ["B1"], geometry_crs=32633)
    out["sparse"] = [list(array.shape), int(array.min()), int(array.max())]
    far = sparse.get_numpy(window_box(BIG - 700, BIG - 600), ["B1"], geometry_crs=32633)
    out["sparse_far"] = [list(far.shape), int(far.max())]
    out["sparse_growth"] = peak_mb() - base
    for rid in ("huge_count", "huge_decoded"):
        try:
            collection.subset(id=rid).get_numpy(window_box(10, 10, 200), ["B1"],
                                                geometry_crs=32633)
            out[rid] = None
        except Exception as exc:
            out[rid] = [type(exc).__name__, str(exc)]
    out["growth"] = peak_mb() - base
    print(json.dumps(out))
"""


def test_reads_of_hostile_tiles_stay_small_and_name_the_record(server):
    server.reset()
    cwd = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = run_child(f"import sys; sys.path.insert(0, {cwd!r})\n" + textwrap.dedent(CHILD_READ),
                       server.url)
    # the 65535 x 65535 sparse tile: a 500 x 500 window of zeros (rasterio reads zeros too,
    # but GDAL fills the whole 8 GiB block to do it, so it is not run here)
    assert result["sparse"] == [[1, 1, 500, 500], 0, 0]
    assert result["sparse_far"] == [[1, 1, 500, 500], 0]
    assert result["sparse_growth"] < GROWTH_LIMIT_MB, result
    assert result["growth"] < GROWTH_LIMIT_MB, result
    for rid, size in (("huge_count", f"{2**32 - 1} bytes (4.00 GiB) compressed"),
                      ("huge_decoded", "65535 x 65535 pixels x 1 sample(s) of uint16 declare "
                                       "8589672450 bytes (8.00 GiB) decoded")):
        kind, message = result[rid]
        assert kind == "RasterReadError", message
        assert f"record '{rid}', band 'B1', href {server.href(rid + '.tif')}" in message
        assert size in message, message
        assert f"limit of {DEFAULT_MAX_TILE_BYTES} bytes (256.00 MiB)" in message
        assert "rasteret_dask.max_tile_bytes" in message
    # nothing past the headers was requested: no tile of those files was fetched
    for name in ("huge_count.tif", "huge_decoded.tif", "sparse_huge.tif"):
        ranges = [r.range for r in server.requests if r.path == name]
        assert ranges and all(r.startswith("bytes=0-") for r in ranges), (name, ranges)


def test_a_huge_sparse_tile_gets_chunks_within_the_limit(server):
    collection = enriched(server, ["sparse_huge.tif"])
    ds = collection.get_xarray(window_box(0, 0, 20000), ["B1"], geometry_crs=EPSG)
    rows, cols = ds["B1"].data.chunksize[1:]
    assert rows * cols * 2 <= DEFAULT_MAX_TILE_BYTES
    assert ds["B1"].shape == (1, 20000, 20000)
    small = collection.get_xarray(window_box(0, 0, 20000), ["B1"], geometry_crs=EPSG,
                                  max_tile_bytes="1 MiB")
    rows, cols = small["B1"].data.chunksize[1:]
    assert rows * cols * 2 <= 1 << 20
    assert not small["B1"][0, :700, :700].values.any()


@pytest.mark.parametrize("nodata", [7, None])
def test_gdal_sparse_tiles_read_as_rasterio_reads_them(server, hostile_dir, nodata):
    name = "gdal_sparse.tif" if nodata is None else "gdal_sparse_nodata.tif"
    collection = enriched(server, [name], {name: (700, 600)})
    md = collection.to_table(columns=["B1_metadata"])["B1_metadata"][0].as_py()
    assert md["tile_byte_counts"][:2] == [0, 0] and all(md["tile_byte_counts"][2:3])
    server.reset()
    got = collection.get_numpy(window_box(50, 0, 600), ["B1"], geometry_crs=EPSG)[0, 0]
    with rasterio.open(hostile_dir / name) as src:
        want = src.read(1, window=((0, 600), (50, 650)))
    np.testing.assert_array_equal(got, want)
    assert (got[:512, :462] == (nodata or 0)).all() and got[:, 470:].all()
    # sparse tiles are empty ranges: no request reads bytes for them
    assert all(r.nbytes > 0 for r in server.requests)


def test_the_limit_is_set_per_call_and_in_dask_config(server):
    name = "gdal_sparse_nodata.tif"
    collection = enriched(server, [name], {name: (700, 600)})
    box = window_box(0, 0, 700)
    # the limit in force names itself; sparse-only chunks read whatever the limit
    for kwargs, config, limit in (({"max_tile_bytes": 1000}, {}, 1000),
                                  ({"max_tile_bytes": "1 KiB"}, {}, 1024),
                                  ({}, {"rasteret_dask.max_tile_bytes": 2000}, 2000)):
        with dask.config.set(config):
            ds = collection.get_xarray(box, ["B1"], geometry_crs=EPSG, **kwargs)
        assert (ds["B1"][0, :256, :256].values == 7).all()
        with pytest.raises(RasterReadError) as info:
            ds["B1"].compute()
        message = str(info.value)
        assert f"record 'gdal_sparse_nodata', band 'B1', href {server.href(name)}" in message
        assert "declares" in message and f"limit of {limit} bytes" in message
    with dask.config.set({"rasteret_dask.max_tile_bytes": 1 << 20}):
        assert collection.get_numpy(box, ["B1"], geometry_crs=EPSG).shape == (1, 1, 600, 700)
    with pytest.raises(ValueError, match="max_tile_bytes must be a positive"):
        collection.get_xarray(box, ["B1"], geometry_crs=EPSG, max_tile_bytes=0)


def test_sample_points_refuses_a_huge_tile_before_fetching(server):
    collection = enriched(server, ["huge_count.tif", "sparse_huge.tif"])
    x, y = ORIGIN[0] + 55, ORIGIN[1] - 55
    server.reset()
    with pytest.raises(RasterReadError, match="record 'huge_count', band 'B1'.*4.00 GiB"):
        collection.sample_points([shapely.Point(x, y)], ["B1"], geometry_crs=EPSG)
    assert not server.requests
    table = collection.subset(id="sparse_huge").sample_points(
        [shapely.Point(x, y)], ["B1"], geometry_crs=EPSG)
    assert table["B1"].to_pylist() == [0]


# --- decode: every allocation is bounded (pure, and bombs measured in a subprocess) ----------

def test_limit_values_and_messages():
    assert max_tile_bytes() == DEFAULT_MAX_TILE_BYTES == 256 * 1024 * 1024
    assert max_tile_bytes("2 MiB") == 2 << 20 and max_tile_bytes(4096) == 4096
    with dask.config.set({"rasteret_dask.max_tile_bytes": "1 GiB"}):
        assert max_tile_bytes() == 1 << 30 and max_tile_bytes(10) == 10
    with (dask.config.set({"rasteret_dask.max_tile_bytes": "lots"}),
          pytest.raises(ValueError, match="dask config 'rasteret_dask.max_tile_bytes'")):
        max_tile_bytes()
    for bad in (-1, 0, True, "zero"):
        with pytest.raises(ValueError):
            max_tile_bytes(bad)
    spec = DecodeSpec(8, 1, "uint16", 256, 256, 1, 1)
    assert tile_size_problem(spec, 0, 10) is None  # sparse: nothing to decode
    assert tile_size_problem(spec, 5000, 1 << 20) is None
    assert "tile 3 declares 5000 bytes" in tile_size_problem(spec, 5000, 4096, 3)
    assert "131072 bytes (128.00 kiB) decoded" in tile_size_problem(spec, 10, 4096)
    assert "negative" in tile_size_problem(spec, -5, 4096)
    assert bounded_tile_step(256, 512, 4, 1 << 20) == (256, 512)
    assert bounded_tile_step(BIG, BIG, 2, 1 << 28) == (8192, 16384)
    assert bounded_tile_step(BIG, 1, 8, 64) == (8, 1)


def test_decode_tile_checks_before_allocating():
    spec = DecodeSpec(1, 1, "uint16", BIG, BIG, 1, 1, nodata=3)
    with pytest.raises(TileTooLargeError, match="8589672450 bytes .* limit of 268435456"):
        decode_tile(b"\0" * 16, spec)
    with pytest.raises(TileTooLargeError, match="limit of 100 bytes"):
        decode_tile(b"\0" * 16, DecodeSpec(1, 1, "uint8", 16, 16, 1, 1), max_bytes=100)
    sparse = decode_tile(b"", spec)  # a view of one value, whatever the declared size
    assert sparse.shape == spec.shape and not sparse.flags.writeable
    assert sparse[123, 456, 0] == 3 and sparse.strides == (0, 0, 0)


def _sof_bomb() -> bytes:
    """A 16 x 16 RGB JPEG whose frame header says 60000 x 60000."""
    data = bytearray(imagecodecs.jpeg8_encode(np.zeros((16, 16, 3), np.uint8)))
    at = data.find(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(data)


def _deflate_bomb(size: int) -> bytes:
    packer = zlib.compressobj(9)
    block = bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(size >> 20)) + packer.flush()


CHILD_BOMBS = """
    import json, resource, sys
    import numpy as np
    from rasteret_dask.decode import DecodeError, DecodeSpec, decode_tile

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    blobs = {k: open(v, "rb").read() for k, v in json.loads(sys.argv[1]).items()}
    specs = {"jpeg": DecodeSpec(7, 1, "uint8", 16, 16, 3, 2),
             "lerc": DecodeSpec(34887, 1, "uint8", 256, 256, 1, 1, lerc_parameters=(4, 0)),
             "lerc_deflate": DecodeSpec(34887, 1, "uint8", 16, 16, 1, 1,
                                        lerc_parameters=(4, 1))}
    out, base = {}, peak_mb()
    for name, spec in specs.items():
        out[name] = []
        for into in (None, np.empty(spec.shape, np.uint8)):
            try:
                decode_tile(blobs[name], spec, into)
                out[name].append(None)
            except DecodeError as exc:
                out[name].append(str(exc))
    out["growth"] = peak_mb() - base
    print(json.dumps(out))
"""


def test_codec_streams_declaring_more_than_the_tile_fail_before_allocating(tmp_path):
    lerc = imagecodecs.lerc_encode(np.zeros((20000, 20000), np.uint8))  # 400 MB in 70 bytes
    blobs = {"jpeg": _sof_bomb(), "lerc": lerc, "lerc_deflate": _deflate_bomb(256 << 20)}
    paths = {}
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
        paths[name] = str(tmp_path / name)
    result = run_child(CHILD_BOMBS, json.dumps(paths))
    for message in result["jpeg"]:
        assert "JPEG decoding failed" in message and "60000" in message
    for message in result["lerc"]:
        assert "LERC decoding failed" in message and "20000" in message
    for message in result["lerc_deflate"]:
        assert "does not inflate within" in message
    assert result["growth"] < 100, result


# --- the header parser: bounds checked before values are fetched (pure) ------------------------

def _parse(data: bytes):
    buf = SparseBuffer(eof=len(data))
    buf.add(0, data)
    return parse_tiff_header(buf)


def test_tile_tables_over_the_bound_are_refused_before_fetching():
    at_bound = geotiff(BIG, BIG, (64, 64), [0], [0], declared={324: MAX_TILES, 325: MAX_TILES})
    buf = SparseBuffer()
    buf.add(0, at_bound)
    with pytest.raises(Exception) as info:  # NeedBytes for the 4 MiB tables, or truncation
        parse_tiff_header(buf)
    assert not isinstance(info.value, TiffError) or "truncated" in str(info.value)
    over = geotiff(BIG, BIG, (16, 16), [0], [0],
                   declared={324: MAX_TILES + 1, 325: MAX_TILES + 1})
    buf = SparseBuffer()
    buf.add(0, over)
    with pytest.raises(TiffError, match=f"TileOffsets declares {MAX_TILES + 1} tiles"):
        parse_tiff_header(buf)


def test_values_the_index_cannot_hold_are_refused():
    with pytest.raises(TiffError, match="image size value 4294967295"):
        _parse(geotiff(2**32 - 1, 16, (2**32 - 1, 16), [100], [10]))
    with pytest.raises(TiffError, match="TileByteCounts value -5"):
        _parse(geotiff(16, 16, (16, 16), [100], [-5], kind=17))
    with pytest.raises(TiffError, match="TileOffsets value 18446744073709551615"):
        _parse(geotiff(16, 16, (16, 16), [2**64 - 1], [10], kind=16))
    header = _parse(geotiff(16, 16, (16, 16), [100], [10]))
    assert header.tile_byte_counts == (10,)
    big_geokeys = tiff_bytes([(256, 4, [16]), (257, 4, [16]), (322, 4, [16]), (323, 4, [16]),
                              (324, 4, [0]), (325, 4, [0]), (34735, 3, [1, 1, 0, 0])],
                             declared={34735: 1 << 20})
    with pytest.raises(TiffError, match="tag 34735 declares a 2097152-byte value"):
        _parse(big_geokeys)


def test_a_long_chain_of_mask_ifds_is_refused():
    """300 IFDs, each a mask (NewSubfileType 4) pointing at the next: a walk without end."""
    first = geotiff(16, 16, (16, 16), [100], [10])
    count = 300
    at = len(first)
    ifds = b""
    for k in range(count):
        nxt = at + 18 * (k + 1) if k < count - 1 else 0
        ifds += struct.pack("<HHHII", 1, 254, 4, 1, 4) + struct.pack("<I", nxt)
    data = bytearray(first + ifds)
    next_at = 8 + 2 + 12 * struct.unpack_from("<H", data, 8)[0]
    struct.pack_into("<I", data, next_at, at)
    with pytest.raises(TiffError, match="more than 256 overview and mask IFDs"):
        _parse(bytes(data))
    struct.pack_into("<I", data, at + 18 * 9 + 14, 0)  # cut the chain after 10 masks
    assert _parse(bytes(data)).overviews == ()


def test_decode_error_is_a_value_error():
    assert issubclass(TileTooLargeError, DecodeError) and issubclass(DecodeError, ValueError)
