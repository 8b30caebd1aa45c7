"""Shared helpers of the read tests (no tests here): collections built from COG files, and the
rasterio oracle that every lazy read is compared with.

A record is a dict ``{"id", "datetime", "path", "assets": {band: (href, band_index)}}``; ``path``
is the local file whose bounds, reprojected to EPSG:4326, make the record's footprint (the href
may point to the same file over HTTP or S3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyproj
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S

rasterio = pytest.importorskip("rasterio")

from rasterio.features import geometry_mask  # noqa: E402
from rasterio.windows import Window  # noqa: E402

WGS84 = 4326


def to_crs(geom: shapely.Geometry, src, dst) -> shapely.Geometry:
    """Reproject with edges split into 20 pieces of the larger bbox side (as the reader does)."""
    if src == dst:
        return geom
    minx, miny, maxx, maxy = geom.bounds
    if max(maxx - minx, maxy - miny) > 0:
        geom = shapely.segmentize(geom, max(maxx - minx, maxy - miny) / 20)
    transformer = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(
        geom, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
    )


def file_info(path: str | Path) -> tuple[int, object, tuple[int, int]]:
    """(EPSG code, affine transform, (height, width)) of a file, read with rasterio."""
    with rasterio.open(path) as src:
        return src.crs.to_epsg(), src.transform, (src.height, src.width)


def footprint_wkb(path: str | Path) -> bytes:
    """The file's real footprint in EPSG:4326 (its bounds, densified and reprojected)."""
    with rasterio.open(path) as src:
        crs, bounds = src.crs.to_epsg() or src.crs.to_wkt(), src.bounds
    return shapely.to_wkb(to_crs(shapely.box(*bounds), crs, WGS84))


def record_table(records: list[dict]) -> pa.Table:
    """The four required columns for ``records`` (every record has the same bands)."""
    bands = list(records[0]["assets"])
    structs = []
    for band in bands:
        hrefs = [str(r["assets"][band][0]) for r in records]
        indices = [int(r["assets"][band][1]) for r in records]
        structs.append(pa.StructArray.from_arrays(
            [pa.array(hrefs, pa.string()), pa.array(indices, pa.int32())],
            fields=list(S.ASSET_TYPE)))
    times = np.array([r["datetime"] for r in records], dtype="datetime64[us]")
    return pa.table({
        "id": pa.array([r["id"] for r in records], pa.string()),
        "datetime": pa.array(times, pa.timestamp("us")),
        "geometry": pa.array([footprint_wkb(r["path"]) for r in records], pa.binary()),
        "assets": pa.StructArray.from_arrays(structs, names=bands),
    })


def build(records: list[dict], *, storage_options: dict | None = None,
          bands: list[str] | None = None) -> rd.Collection:
    """An in-memory collection of ``records``, enriched (every header must parse)."""
    collection = rd.build_collection_from_table(record_table(records), name="read-tests")
    report = collection.enrich(bands, progress=False, storage_options=storage_options)
    assert report.failed == 0, report.errors
    return report.collection


def single(path: str | Path, href: str | None = None, bands: dict | None = None,
           rid: str = "r0", when: str = "2024-05-01T10:00:00") -> dict:
    """A record of one file; ``bands`` maps band -> band_index (default one band ``B1``)."""
    href = str(path) if href is None else href
    bands = {"B1": 0} if bands is None else bands
    return {"id": rid, "datetime": when, "path": path,
            "assets": {b: (href, i) for b, i in bands.items()}}


def pixel_box(transform, col0: float, row0: float, col1: float, row1: float) -> shapely.Polygon:
    """A box given by fractional pixel coordinates of ``transform``, in the file's CRS."""
    x0, y0 = transform @ (col0, row0)
    x1, y1 = transform @ (col1, row1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def pixel_circle(transform, col: float, row: float, radius: float) -> shapely.Polygon:
    """A circle (64-gon) of ``radius`` pixels centred on a fractional pixel position."""
    x, y = transform @ (col, row)
    return shapely.Point(x, y).buffer(radius * abs(transform.a), quad_segs=16)


def output_window(var, transform) -> Window:
    """The window of ``transform``'s grid that an output's pixel-centre coordinates cover."""
    x, y = var["x"].values, var["y"].values
    cols = (x - transform.c) / transform.a - 0.5
    rows = (y - transform.f) / transform.e - 0.5
    col0, row0 = round(float(cols[0])), round(float(rows[0]))
    # the output grid is the file's grid: whole-pixel offsets, unit steps
    assert np.allclose(cols, col0 + np.arange(len(x)), atol=1e-6), "x is not on the file's grid"
    assert np.allclose(rows, row0 + np.arange(len(y)), atol=1e-6), "y is not on the file's grid"
    return Window(col0, row0, len(x), len(y))


def fill_of(nodata: float | None) -> float:
    return 0 if nodata is None else nodata


def expected(var, path: str | Path, band_index: int, *, geometry=None,
             all_touched: bool = False) -> np.ndarray:
    """rasterio's read of the output's window (boundless when it leaves the image), with the
    pixels outside ``geometry`` (file CRS) set to nodata, or 0 without nodata."""
    with rasterio.open(path) as src:
        window = output_window(var, src.transform)
        fill = fill_of(src.nodata)
        inside = (window.col_off >= 0 and window.row_off >= 0
                  and window.col_off + window.width <= src.width
                  and window.row_off + window.height <= src.height)
        if inside:
            data = src.read(band_index + 1, window=window)
        else:
            data = src.read(band_index + 1, window=window, boundless=True, fill_value=fill)
        transform = src.window_transform(window)
    if geometry is not None:
        outside = geometry_mask([shapely.geometry.mapping(geometry)], data.shape, transform,
                                all_touched=all_touched)
        data = np.where(outside, np.array(fill, dtype=data.dtype), data)
    return data


def assert_matches(got: np.ndarray, want: np.ndarray, tolerance: int = 0) -> None:
    """Bit-exact equality (NaN == NaN), or max |diff| <= ``tolerance`` for lossy codecs."""
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype.newbyteorder("="), (got.dtype, want.dtype)
    if tolerance:
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
        assert diff.max() <= tolerance, f"max |diff| {diff.max()} > {tolerance}"
    elif got.dtype.kind == "f":
        assert np.array_equal(got, want, equal_nan=True), mismatch(got, want)
    else:
        assert np.array_equal(got, want), mismatch(got, want)


def mismatch(got: np.ndarray, want: np.ndarray) -> str:
    with np.errstate(invalid="ignore"):
        bad = ~((got == want) | (np.isnan(got) & np.isnan(want)) if got.dtype.kind == "f"
                else got == want)
    rows, cols = np.nonzero(bad)
    return (f"{bad.sum()} of {bad.size} pixels differ; first at row {rows[0]}, col {cols[0]}: "
            f"got {got[rows[0], cols[0]]!r}, rasterio {want[rows[0], cols[0]]!r}")


def regular_chunks(var, rows: int, cols: int) -> bool:
    """Whether ``var``'s y/x chunks are ``rows``/``cols`` pixels but the last along each axis
    (Zarr-ready), whatever the window's offset from the tile grid."""
    for size, sizes in ((rows, var.chunks[1]), (cols, var.chunks[2])):
        if any(s != size for s in sizes[:-1]) or not 0 < sizes[-1] <= size:
            return False
    return True


def range_starts(requests) -> list[tuple[str, int]]:
    """(path, first byte of the Range header ``bytes=a-b``) of every logged request; the
    first byte is -1 for a request without a Range header."""
    starts = []
    for r in requests:
        if r.range is None or not r.range.startswith("bytes="):
            starts.append((r.path, -1))
        else:
            starts.append((r.path, int(r.range[6:].split("-")[0])))
    return starts


def tile_offsets(collection: rd.Collection, bands: list[str]) -> set[tuple[str, int]]:
    """(file name, tile offset) of every tile of ``bands`` in the collection's metadata."""
    table = collection.to_table()
    offsets: set[tuple[str, int]] = set()
    for band in bands:
        hrefs = table["assets"].combine_chunks().field(band).field("href").to_pylist()
        for href, md in zip(hrefs, table[S.metadata_column(band)].to_pylist(), strict=True):
            offsets.update((href.rsplit("/", 1)[-1], o) for o in md["tile_offsets"])
    return offsets
