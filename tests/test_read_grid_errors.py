"""Bad output-grid arguments (issue 13): a clear error at the call, naming the argument and
the value, from get_xarray, get_numpy and explain alike (no pixel is fetched)."""

from __future__ import annotations

from typing import Any

import pytest
import shapely
from odc.geo.geobox import GeoBox

#: lon/lat: inside every record of the grid scenes, across both UTM zones.
BOX = shapely.box(77.96, 12.98, 78.03, 13.04)
METHODS = ("get_xarray", "get_numpy", "explain")


def _call(two_zones, method: str, geometry: Any, bands: list[str], **kwargs: Any) -> Any:
    return getattr(two_zones.collection, method)(geometry, bands, **kwargs)


def _names(error: pytest.ExceptionInfo, *words: str) -> None:
    message = str(error.value)
    for word in words:
        assert word in message, f"{word!r} is not in the error: {message}"


@pytest.mark.parametrize("method", METHODS)
def test_unknown_resampling(two_zones, grid_server, method):
    grid_server.reset()
    with pytest.raises(ValueError, match="resampling") as error:
        _call(two_zones, method, BOX, ["B02"], crs=32643, resolution=10, resampling="bicubical")
    _names(error, "bicubical", "nearest")  # the value, and the known kernels
    assert grid_server.count() == 0


@pytest.mark.parametrize("value", [0, -10, -0.5, float("nan"), float("inf"), (10, 0),
                                   (10, -10)])
def test_resolution_not_a_positive_number(two_zones, value):
    with pytest.raises(ValueError, match="resolution") as error:
        _call(two_zones, "get_xarray", BOX, ["B02"], crs=32643, resolution=value)
    _names(error, str(value))


@pytest.mark.parametrize(("value", "shown"), [("ten", "ten"), ([], "[]"), (object(), "object"),
                                              ((10, 10, 10), "(10, 10, 10)")])
def test_resolution_of_the_wrong_type(two_zones, value, shown):
    with pytest.raises((TypeError, ValueError), match="resolution") as error:
        _call(two_zones, "get_xarray", BOX, ["B02"], crs=32643, resolution=value)
    _names(error, shown)


@pytest.mark.parametrize("value", ["EPSG:999999", "not a crs", "+proj=nowhere"])
def test_crs_pyproj_cannot_parse(two_zones, value):
    with pytest.raises(ValueError, match="crs") as error:
        _call(two_zones, "get_xarray", BOX, ["B02"], crs=value, resolution=10)
    _names(error, value)


@pytest.mark.parametrize("method", METHODS)
def test_geobox_that_misses_every_record(two_zones, method):
    # 1 degree of latitude south of the scenes, same zone
    far = GeoBox.from_bbox((812160, 1320000, 822400, 1330240), "EPSG:32643", resolution=10)
    with pytest.raises(ValueError, match="geobox") as error:
        _call(two_zones, method, None, ["B02"], geobox=far)
    _names(error, "32643")


@pytest.mark.parametrize("method", METHODS)
def test_rescale_without_scale_and_offset(two_zones, method):
    with pytest.raises(ValueError, match="rescale") as error:
        _call(two_zones, method, BOX, ["B02", "SCL"], crs=32643, resolution=20, rescale=True)
    _names(error, "SCL")
