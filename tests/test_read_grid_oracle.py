"""Output grids (issue 13) against odc-stac on the same grid, and stackstac for ``rescale``.

The scenes (:mod:`rasteret_dask.testing.grids`): Sentinel-2-like records in EPSG:32643 and
EPSG:32644 overlapping across 78 E, three passes, B02 10 m / B11 20 m / B01 60 m, served over
HTTP. odc-stac loads the pystac Items, rasteret_dask reads the index built from the same Items;
both write onto one ``GeoBox`` (or onto the grid each derives from ``crs``/``resolution`` and a
geometry). Nearest agrees pixel for pixel but for at most 0.1 % of the pixels, each of which
holds a source pixel next to the sampled position; the other kernels agree within one count.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import odc.stac
import pyarrow.compute as pc
import pyproj
import pytest
import shapely
import stackstac
import tifffile
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import BoundingBox, Geometry

from rasteret_dask.testing.grids import GridFixture, GridRecord

#: lon/lat: 32643 alone (west), both zones, 32644 alone (east), inside every record N-S.
BOX = (77.93, 12.95, 78.08, 13.07)
#: A lon/lat quadrilateral across the zones (not a box).
QUAD = shapely.Polygon([(77.96, 12.97), (78.07, 12.99), (78.05, 13.06), (77.94, 13.04)])
#: A quadrilateral in EPSG:32643 metres whose bounds are off the 10 m grid.
QUAD_32643 = shapely.Polygon([(819523.4, 1434867.3), (831017.7, 1437101.2),
                              (828876.1, 1444706.9), (817254.6, 1442538.8)])
TARGETS = {32643: 10.0, 3857: 10.0, 4326: 0.0001}
RESAMPLINGS = ("nearest", "bilinear", "cubic", "average")
ODC_CHUNKS = {"x": 1024, "y": 1024}
SHARE = 0.999
#: rasterio's overview_level of the 16x overview (the COG's factors are 2, 4, 8, 16).
LEVEL_16X = 3


# -- helpers


@dataclass(frozen=True)
class SourceImage:
    """A source raster as sampled: pixels, affine transform, EPSG code and nodata."""

    pixels: np.ndarray
    transform: Affine
    epsg: int
    nodata: float = 0


def source_image(record: GridRecord, band: str, overview_level: int | None = None
                 ) -> SourceImage:
    """``record``'s ``band`` at full resolution or at one overview level."""
    pixels = record.read(band, overview_level)
    height, width = record.shape(band)
    transform = Affine(*record.transform(band)) * Affine.scale(width / pixels.shape[1],
                                                               height / pixels.shape[0])
    return SourceImage(pixels, transform, record.epsg)


def geobox_over(bbox: tuple[float, float, float, float], epsg: int, resolution: float
                ) -> GeoBox:
    """The GeoBox covering a lon/lat box in EPSG:``epsg``, edges on multiples of the
    resolution."""
    bounds = BoundingBox(*bbox, crs="EPSG:4326").to_crs(f"EPSG:{epsg}")
    return GeoBox.from_bbox(bounds, f"EPSG:{epsg}", resolution=resolution)


def load_odc(two_zones: GridFixture, bands: Sequence[str], **kwargs: Any) -> xr.Dataset:
    """odc-stac's load of every item, computed."""
    kwargs.setdefault("groupby", None)
    return odc.stac.load(list(two_zones.items), bands=list(bands), chunks=ODC_CHUNKS,
                         **kwargs).compute()


def load_ours(two_zones: GridFixture, bands: Sequence[str], geometry: Any = None,
              **kwargs: Any) -> xr.Dataset:
    """rasteret_dask's read of the index, computed."""
    return two_zones.collection.get_xarray(geometry, list(bands), **kwargs).compute()


def assert_same_grid(ours: xr.Dataset, theirs: xr.Dataset) -> None:
    """Identical pixel-centre coordinates (odc-stac names them latitude/longitude in a
    geographic CRS, y/x otherwise), GeoBox, CRS and time steps."""
    for mine, other in zip(ours.odc.spatial_dims, theirs.odc.spatial_dims, strict=True):
        np.testing.assert_array_equal(ours[mine].values, theirs[other].values)
    assert ours.odc.geobox == theirs.odc.geobox
    assert pyproj.CRS(ours.odc.crs) == pyproj.CRS(theirs.odc.crs)
    np.testing.assert_array_equal(ours["time"].values.astype("datetime64[ns]"),
                                  theirs["time"].values.astype("datetime64[ns]"))


def _pixel_centres(geobox: GeoBox, rows: np.ndarray, cols: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    a, b, c, d, e, f = tuple(geobox.affine)[:6]
    col, row = cols + 0.5, rows + 0.5
    return a * col + b * row + c, d * col + e * row + f


def _neighbourhoods(source: SourceImage, epsg: int, x: np.ndarray, y: np.ndarray
                    ) -> np.ndarray:
    """(n, 9) values of the 3 x 3 source pixels around each point (outside: nodata)."""
    to_source = pyproj.Transformer.from_crs(epsg, source.epsg, always_xy=True)
    sx, sy = to_source.transform(x, y)
    inverse = ~source.transform
    col = np.floor(inverse.a * sx + inverse.b * sy + inverse.c).astype(np.int64)
    row = np.floor(inverse.d * sx + inverse.e * sy + inverse.f).astype(np.int64)
    height, width = source.pixels.shape
    out = np.full((x.size, 9), source.nodata, dtype=np.float64)
    for k, (dr, dc) in enumerate(itertools.product((-1, 0, 1), (-1, 0, 1))):
        rr, cc = row + dr, col + dc
        inside = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        out[inside, k] = source.pixels[rr[inside], cc[inside]]
    return out


def assert_nearest_agrees(ours: xr.DataArray, theirs: xr.DataArray,
                          sources: Sequence[SourceImage], *, share: float = SHARE,
                          nodata: float = 0) -> None:
    """Nearest on one (y, x) slice: equal on at least ``share`` of the pixels either side has
    data for, and every differing pixel holds a value of the 3 x 3 source pixels around the
    pixel centre's position in some source (which odc-stac's own value must do too)."""
    a, b = np.asarray(ours.values, np.float64), np.asarray(theirs.values, np.float64)
    assert a.shape == b.shape
    valid = (a != nodata) | (b != nodata)
    differ = valid & (a != b)
    n_valid, n_differ = int(valid.sum()), int(differ.sum())
    assert n_valid > 0, "nothing to compare: both sides are nodata everywhere"
    assert n_differ <= (1 - share) * n_valid, (
        f"nearest: {n_differ} of {n_valid} pixels differ (more than {1 - share:.3%})")
    if not n_differ:
        return
    geobox = theirs.odc.geobox
    rows, cols = np.nonzero(differ)
    x, y = _pixel_centres(geobox, rows, cols)
    epsg = geobox.crs.epsg
    candidates = np.concatenate([_neighbourhoods(s, epsg, x, y) for s in sources], axis=1)
    theirs_ok = (candidates == b[rows, cols][:, None]).any(axis=1)
    assert theirs_ok.all(), "odc-stac's nearest value is not a source pixel near the centre"
    ours_ok = (candidates == a[rows, cols][:, None]).any(axis=1)
    bad = np.flatnonzero(~ours_ok)[:5]
    assert ours_ok.all(), (
        f"{(~ours_ok).sum()} differing pixels hold no source pixel adjacent to odc-stac's, "
        f"e.g. (row, col, ours, odc-stac): "
        f"{[(int(rows[i]), int(cols[i]), a[rows[i], cols[i]], b[rows[i], cols[i]]) for i in bad]}")


def assert_close_within(ours: xr.DataArray, theirs: xr.DataArray, tolerance: float,
                        share: float, *, nodata: float = 0) -> None:
    """Both sides have data and differ by at most ``tolerance`` on at least ``share`` of the
    pixels either side has data for (NaN is nodata for float data)."""
    a, b = np.asarray(ours.values, np.float64), np.asarray(theirs.values, np.float64)
    assert a.shape == b.shape
    a_valid = ~np.isnan(a) & (a != nodata)
    b_valid = ~np.isnan(b) & (b != nodata)
    valid = a_valid | b_valid
    close = a_valid & b_valid & (np.abs(a - b) <= tolerance)
    n_valid, n_close = int(valid.sum()), int(close.sum())
    assert n_valid > 0, "nothing to compare: both sides are nodata everywhere"
    worst = float(np.nanmax(np.abs(a - b)[a_valid & b_valid])) if (a_valid & b_valid).any() \
        else float("nan")
    assert n_close >= share * n_valid, (
        f"only {n_close} of {n_valid} pixels within {tolerance} (need {share:.3%}); largest "
        f"difference {worst}; data on one side only: {int((a_valid ^ b_valid).sum())}")


def assert_agrees(resampling: str, ours: xr.DataArray, theirs: xr.DataArray,
                  sources: Sequence[SourceImage]) -> None:
    """Nearest: :func:`assert_nearest_agrees`; any other kernel: within one count."""
    if resampling == "nearest":
        assert_nearest_agrees(ours, theirs, sources)
    else:
        assert_close_within(ours, theirs, 1, SHARE)


def _valid_share(values: xr.DataArray) -> float:
    return float((values.values != 0).mean())


# -- the same GeoBox


@pytest.mark.parametrize("resampling", RESAMPLINGS)
@pytest.mark.parametrize("epsg", list(TARGETS))
def test_two_zones_onto_one_geobox(two_zones, epsg, resampling):
    gbox = geobox_over(BOX, epsg, TARGETS[epsg])
    theirs = load_odc(two_zones, ["B02"], geobox=gbox, resampling=resampling)
    records = two_zones.scenes.records
    assert theirs.sizes["time"] == len(records)
    assert all(_valid_share(theirs["B02"][t]) > 0.3 for t in range(len(records)))

    ours = load_ours(two_zones, ["B02"], geobox=gbox, resampling=resampling)
    assert_same_grid(ours, theirs)
    assert list(ours["id"].values) == [r.id for r in records]
    assert ours["B02"].dtype == theirs["B02"].dtype == np.uint16
    for t, record in enumerate(records):
        assert_agrees(resampling, ours["B02"][t], theirs["B02"][t],
                      [source_image(record, "B02")])


@pytest.mark.parametrize("resampling", RESAMPLINGS)
def test_three_resolutions_into_10m(two_zones, resampling):
    bands = ["B02", "B11", "B01"]
    gbox = geobox_over(BOX, 32643, 10.0)
    theirs = load_odc(two_zones, bands, geobox=gbox, resampling=resampling)
    ours = load_ours(two_zones, bands, geobox=gbox, resampling=resampling)
    assert_same_grid(ours, theirs)
    for band in bands:
        assert ours[band].dtype == theirs[band].dtype == np.uint16
        for t, record in enumerate(two_zones.scenes.records):
            assert_agrees(resampling, ours[band][t], theirs[band][t],
                          [source_image(record, band)])


# -- a 16x coarser read: the overview only


def _tile_spans(path, shape: tuple[int, int]) -> list[tuple[int, int]]:
    """(first byte, end) of every tile of the IFD with this (height, width)."""
    with tifffile.TiffFile(path) as tif:
        page = next(p for p in tif.pages if p.shape[:2] == shape)
        return [(int(o), int(o) + int(n)) for o, n in zip(page.dataoffsets,
                                                          page.databytecounts, strict=True)]


_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


@pytest.mark.parametrize("resampling", ["nearest", "average"])
def test_sixteen_times_coarser_reads_only_the_overview(two_zones, grid_server, resampling):
    zone = two_zones.scenes.in_zone(32643)
    gbox = GeoBox.from_bbox(zone[0].bounds, "EPSG:32643", resolution=160)
    expected = [source_image(r, "B02", LEVEL_16X).pixels for r in zone]
    assert gbox.shape == expected[0].shape == (120, 120)
    items = two_zones.items_in_zone(32643)
    theirs = odc.stac.load(items, bands=["B02"], geobox=gbox, resampling=resampling,
                           groupby=None, chunks=ODC_CHUNKS).compute()
    for t in range(len(zone)):  # odc-stac reads the 16x overview, 1:1
        np.testing.assert_array_equal(theirs["B02"][t].values, expected[t])

    spans = {r.paths["B02"].relative_to(two_zones.scenes.root).as_posix():
             _tile_spans(r.paths["B02"], (120, 120)) for r in zone}
    collection = two_zones.collection.where(pc.field("proj:epsg") == 32643)
    grid_server.reset()
    ours = collection.get_xarray(None, ["B02"], geobox=gbox, resampling=resampling).compute()
    requests = grid_server.requests
    assert requests, "the read made no request"
    fetched = {path: 0 for path in spans}
    for request in requests:
        assert request.path in spans, f"{request.path} is not a B02 file of the zone"
        assert request.status == 206 and request.range is not None
        first, last = map(int, _RANGE.fullmatch(request.range).groups())
        level = spans[request.path]
        assert min(start for start, _ in level) <= first <= last < max(e for _, e in level), (
            f"{request.path} {request.range} is outside the 16x overview's tiles {level}")
        fetched[request.path] += last + 1 - first
    for path, level in spans.items():
        assert 0 < fetched[path] <= sum(end - start for start, end in level) + 8 * len(level)
    assert grid_server.bytes_sent == sum(fetched.values())

    assert_same_grid(ours, theirs)
    for t in range(len(zone)):
        np.testing.assert_array_equal(ours["B02"][t].values, expected[t])


# -- groupby="solar_day": a mosaic of both zones per pass


def _on_grid(record: GridRecord, band: str, gbox: GeoBox) -> np.ndarray:
    """A record's pixels on a GeoBox of its own CRS and resolution (nodata outside)."""
    image = source_image(record, band)
    col, row = ~image.transform * (gbox.affine.c, gbox.affine.f)
    col, row = round(col), round(row)
    out = np.zeros(gbox.shape, image.pixels.dtype)
    height, width = gbox.shape
    r0, c0 = max(row, 0), max(col, 0)
    r1 = min(row + height, image.pixels.shape[0])
    c1 = min(col + width, image.pixels.shape[1])
    out[r0 - row:r1 - row, c0 - col:c1 - col] = image.pixels[r0:r1, c0:c1]
    return out


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_solar_day_mosaic_of_two_zones(two_zones, resampling):
    gbox = geobox_over(BOX, 32643, 10.0)
    passes = two_zones.scenes.passes
    theirs = load_odc(two_zones, ["B02"], geobox=gbox, resampling=resampling, groupby="solar_day")
    first_times = [group[0].datetime.replace(tzinfo=None) for group in passes]
    np.testing.assert_array_equal(theirs["time"].values,
                                  np.array(first_times, dtype="datetime64[ns]"))
    swath = next(t for t, group in enumerate(passes) if group[0].swath_edge)
    own = _on_grid(passes[swath][0], "B02", gbox)  # the 32643 record: first of its pass
    fused = theirs["B02"][swath].values
    assert ((own == 0) & (fused != 0)).mean() > 0.05, "the 32644 record fills nothing"
    if resampling == "nearest":
        assert ((own != 0) & (fused == own)).mean() > 0.3

    ours = load_ours(two_zones, ["B02"], geobox=gbox, resampling=resampling, groupby="solar_day")
    assert_same_grid(ours, theirs)
    for t, group in enumerate(passes):
        assert_agrees(resampling, ours["B02"][t], theirs["B02"][t],
                      [source_image(r, "B02") for r in group])


# -- rescale=True: stackstac's physical values


def _stackstac_items(two_zones: GridFixture) -> list[dict]:
    """Item dicts with ``proj:epsg`` on every asset (stackstac 0.5 reads no ``proj:code``)."""
    out = []
    for item in two_zones.items:
        data = item.to_dict()
        for asset in data["assets"].values():
            asset["proj:epsg"] = int(asset["proj:code"].split(":")[1])
        out.append(data)
    return out


@pytest.mark.parametrize("epsg", [32643, 32644])
def test_rescale_equals_stackstac(two_zones, epsg):
    # on each zone's own grid (stackstac's warper samples other zones differently from
    # odc-stac's on about 0.3 % of the pixels; the warped values are odc-stac's business)
    bands = ["B02", "B11"]
    gbox = geobox_over(BOX, epsg, 10.0)
    records = two_zones.scenes.in_zone(epsg)
    items = [d for d in _stackstac_items(two_zones) if d["id"] in {r.id for r in records}]
    theirs = stackstac.stack(items, assets=bands, epsg=epsg, resolution=10.0,
                             bounds=gbox.boundingbox.bbox, rescale=True, xy_coords="center",
                             chunksize=1024).compute()
    assert theirs.dtype == np.float64 and theirs.sizes["time"] == len(records)
    np.testing.assert_array_equal(theirs["x"].values, gbox.coords["x"].values)
    np.testing.assert_array_equal(theirs["y"].values, gbox.coords["y"].values)

    zone = two_zones.collection.where(pc.field("proj:epsg") == epsg)
    ours = zone.get_xarray(None, bands, geobox=gbox, rescale=True).compute()
    raw = zone.get_xarray(None, bands, geobox=gbox).compute()
    assert list(ours["id"].values) == [r.id for r in records]
    for band in bands:
        spec = next(b for b in two_zones.scenes.bands if b.name == band)
        assert ours[band].dtype == np.float32
        counts, physical = raw[band].values, ours[band].values
        assert np.isnan(physical[counts == 0]).all()
        np.testing.assert_allclose(physical[counts != 0],
                                   counts[counts != 0] * spec.scale + spec.offset,
                                   rtol=1e-6, atol=1e-7)
        for t in range(len(records)):
            # both defined and equal within float32 rounding; NaN (nodata) on the same pixels
            assert_close_within(ours[band][t], theirs.sel(band=band)[t], 1e-6, 1.0,
                                nodata=np.nan)


# -- crs= / resolution= and a geometry: the same grid as odc-stac derives


@pytest.mark.parametrize(("form", "epsg"), [
    ("bbox", 32643), ("bbox", 3857), ("bbox", 4326), ("polygon", 32643), ("polygon", 32644),
    ("polygon", 3857), ("native polygon", 32643)])
def test_geometry_grid_matches_odc_stac(two_zones, form, epsg):
    resolution = TARGETS.get(epsg, 20.0)
    if form == "bbox":
        geometry, geometry_crs = shapely.box(*BOX), 4326
        odc_args: dict[str, Any] = {"bbox": BOX}
    elif form == "polygon":
        geometry, geometry_crs = QUAD, 4326
        odc_args = {"geopolygon": Geometry(QUAD, "EPSG:4326")}
    else:  # a polygon in the output CRS itself, bounds off the grid
        geometry, geometry_crs = QUAD_32643, epsg
        odc_args = {"geopolygon": Geometry(geometry, f"EPSG:{epsg}")}
    # odc-stac takes the bounds of the projected vertices (no densification); a densified
    # outline has the same bounds here. The lon/lat box into 4326 lies on grid lines and the
    # polygon into 32644 ends 0.0024 px past one: odc-geo's 1/100 px tolerance snaps inwards.
    projected = Geometry(geometry, f"EPSG:{geometry_crs}").to_crs(f"EPSG:{epsg}")
    densified = Geometry(geometry, f"EPSG:{geometry_crs}").to_crs(
        f"EPSG:{epsg}", resolution=0.001 if geometry_crs == 4326 else 10.0)
    assert np.allclose(projected.boundingbox.bbox, densified.boundingbox.bbox,
                       rtol=0, atol=resolution / 1000)

    theirs = load_odc(two_zones, ["B02"], crs=f"EPSG:{epsg}", resolution=resolution, **odc_args)
    ours = load_ours(two_zones, ["B02"], geometry, crs=epsg, resolution=resolution,
                     geometry_crs=geometry_crs)
    assert_same_grid(ours, theirs)
    # inside the geometry (pixel centres) the nearest values agree; outside ours is nodata
    gbox = theirs.odc.geobox
    rows, cols = np.indices(gbox.shape)
    x, y = _pixel_centres(gbox, rows.ravel(), cols.ravel())
    inside = shapely.contains_xy(densified.geom, x, y).reshape(gbox.shape)
    # centres within 1/100 pixel of the outline are in or out by how finely each side
    # densifies the projected edges: compared nowhere
    edge = shapely.dwithin(densified.geom.boundary, shapely.points(x, y),
                           resolution / 100).reshape(gbox.shape)
    for t, record in enumerate(two_zones.scenes.records):
        outside = int(((ours["B02"][t].values != 0) & ~inside).sum())
        assert outside <= (1 - SHARE) * inside.sum(), f"{outside} pixels outside hold data"
        clipped = theirs["B02"][t].where(inside & ~edge, 0)
        assert_nearest_agrees(ours["B02"][t].where(~edge, 0), clipped,
                              [source_image(record, "B02")])
