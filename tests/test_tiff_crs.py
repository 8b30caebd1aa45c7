"""CRSs rebuilt from GeoKeys without an EPSG code equal GDAL's, method by method; what cannot be
rebuilt is refused with the reason; ``CogMetadata.crs`` reads either form."""

from __future__ import annotations

import warnings

import numpy as np
import pyproj
import pytest

from rasteret_dask.tiff import SparseBuffer, TiffError, parse_tiff_header
from rasteret_dask.tiff.cog_metadata import CogMetadata
from rasteret_dask.tiff.crs import PROJECTION_METHODS, GeoKeyCrsError, crs_from_geo_keys

rasterio = pytest.importorskip("rasterio")

from affine import Affine  # noqa: E402
from rasterio.io import MemoryFile  # noqa: E402

# PROJ definitions GDAL writes as user-defined GeoKeys (or, for geostationary, as an ESRI PE
# string citation); every ProjCoordTransGeoKey method the module rebuilds is here
CASES = {
    "tmerc": "+proj=tmerc +lat_0=10 +lon_0=20 +k=0.9995 +x_0=300000 +y_0=100000 +ellps=intl",
    "tmerc-south": "+proj=tmerc +axis=wsu +lat_0=0 +lon_0=25 +k=1 +x_0=0 +y_0=0 +ellps=WGS84",
    "merc-1sp": "+proj=merc +lon_0=10 +k=0.99 +x_0=100 +y_0=200 +datum=WGS84",
    "merc-2sp": "+proj=merc +lon_0=10 +lat_ts=30 +x_0=100 +y_0=200 +datum=WGS84",
    "lcc-1sp": "+proj=lcc +lat_1=45 +lat_0=45 +lon_0=3 +k_0=0.9998 +x_0=700000 +y_0=200000 "
               "+ellps=GRS80",
    "lcc-2sp-usft": "+proj=lcc +lat_1=33 +lat_2=45 +lat_0=39 +lon_0=-96 +x_0=1000000 +y_0=500 "
                    "+datum=NAD83 +units=us-ft",
    "laea": "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80",
    "albers": "+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=23 +lon_0=-96 +x_0=0 +y_0=0 "
              "+datum=WGS84",
    "aeqd": "+proj=aeqd +lat_0=40 +lon_0=-100 +x_0=5 +y_0=6 +datum=WGS84",
    "eqdc": "+proj=eqdc +lat_1=20 +lat_2=60 +lat_0=40 +lon_0=-96 +x_0=0 +y_0=0 +datum=WGS84",
    "stere": "+proj=stere +lat_0=40 +lon_0=10 +k=0.999 +x_0=10 +y_0=20 +datum=WGS84",
    "polar-a": "+proj=stere +lat_0=-90 +lon_0=0 +k=0.994 +x_0=2000000 +y_0=2000000 "
               "+datum=WGS84",
    "polar-b": "+proj=stere +lat_0=90 +lat_ts=70 +lon_0=-45 +x_0=0 +y_0=0 +datum=WGS84",
    "sterea": "+proj=sterea +lat_0=52.15616055555555 +lon_0=5.38763888888889 +k=0.9999079 "
              "+x_0=155000 +y_0=463000 +ellps=bessel",
    "eqc": "+proj=eqc +lat_ts=30 +lat_0=0 +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84",
    "cass": "+proj=cass +lat_0=10 +lon_0=-61 +x_0=40000 +y_0=50000 +ellps=clrk80",
    "gnom": "+proj=gnom +lat_0=90 +lon_0=0 +datum=WGS84",
    "mill": "+proj=mill +lon_0=0 +datum=WGS84",
    "ortho": "+proj=ortho +lat_0=40 +lon_0=-100 +datum=WGS84",
    "poly": "+proj=poly +lat_0=0 +lon_0=-54 +x_0=5000000 +y_0=10000000 +ellps=aust_SA",
    "robin": "+proj=robin +lon_0=0 +datum=WGS84",
    "sinu": "+proj=sinu +lon_0=0 +R=6371007.181",
    "vandg": "+proj=vandg +lon_0=0 +R=6371000",
    "nzmg": "+proj=nzmg +lat_0=-41 +lon_0=173 +x_0=2510000 +y_0=6023150 +ellps=intl",
    "cea": "+proj=cea +lon_0=0 +lat_ts=30 +datum=WGS84",
    "omerc-a": "+proj=omerc +lat_0=4 +lonc=102.25 +alpha=323.0257905 +k=0.99984 +x_0=804671 "
               "+y_0=0 +no_uoff +gamma=323.1301023611111 +ellps=evrst69",
    "omerc-b": "+proj=omerc +lat_0=46.5 +lonc=8 +alpha=90 +k=1 +x_0=600000 +y_0=200000 "
               "+gamma=90 +ellps=bessel",
    "utm-on-towgs84": "+proj=utm +zone=33 +ellps=intl +towgs84=-87,-98,-121 +units=m",
    "towgs84-7": "+proj=tmerc +lat_0=0 +lon_0=9 +k=1 +x_0=3500000 +y_0=0 +ellps=bessel "
                 "+towgs84=598.1,73.7,418.2,0.202,0.045,-2.455,6.7",
    "paris-meridian": "+proj=lcc +lat_1=46.8 +lat_0=46.8 +lon_0=0 +k_0=0.99987742 "
                      "+x_0=600000 +y_0=2200000 +a=6378249.2 +b=6356515 +pm=paris",
    "geostationary": "+proj=geos +h=35785831 +lon_0=-75 +sweep=x +ellps=GRS80 +units=m",
    "sphere-lonlat": "+proj=longlat +a=6371000 +b=6371000",
    "moon-eqc": "+proj=eqc +lat_ts=0 +lon_0=180 +R=1737400 +units=m",
    "moon-lonlat": "+proj=longlat +R=1737400",
    "mars-2000": 'GEOGCS["Mars 2000",DATUM["D_Mars_2000",SPHEROID["Mars_2000_IAU_IAG",3396190,'
                 '169.894447223612]],PRIMEM["Greenwich",0],UNIT["Decimal_Degree",'
                 '0.0174532925199433]]',
}


def _gdal_file(crs: str) -> tuple[bytes, pyproj.CRS]:
    """A small tiled GeoTIFF written by GDAL in ``crs``, and the CRS GDAL reads back."""
    with MemoryFile() as memory:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with memory.open(driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                             tiled=True, blockxsize=16, blockysize=16, crs=crs,
                             transform=Affine(1, 0, 0, 0, -1, 0)) as dst:
                dst.write(np.zeros((1, 8, 8), np.uint8))
            with memory.open() as src:
                gdal = pyproj.CRS.from_wkt(src.crs.to_wkt())
        return memory.read(), gdal


def _header(data: bytes):
    buf = SparseBuffer(len(data))
    buf.add(0, data)
    return parse_tiff_header(buf)


@pytest.mark.parametrize("name", list(CASES))
def test_crs_rebuilt_from_geokeys_equals_gdals(name):
    data, gdal = _gdal_file(CASES[name])
    header = _header(data)
    assert header.crs_epsg is None, "GDAL wrote an EPSG code: not a custom CRS case"
    ours = pyproj.CRS.from_wkt(header.crs_wkt)
    assert ours == gdal, (ours.to_wkt("WKT1_GDAL"), gdal.to_wkt("WKT1_GDAL"))
    md = CogMetadata.from_struct(header.to_metadata())
    assert md.crs == gdal and md.crs is CogMetadata.from_struct(header.to_metadata()).crs


def test_every_rebuilt_method_is_covered():
    written = set()
    for crs in CASES.values():
        keys = _header(_gdal_file(crs)[0]).geo_keys
        if 3075 in keys:
            written.add(keys[3075])
    # GDAL writes Hotine variant A as 3, variant B as its private 9815; 9 is LCC 1SP, 16 the
    # oblique stereographic, 17 equirectangular, 27 the south-orientated transverse Mercator
    assert written == set(PROJECTION_METHODS)


def test_epsg_files_keep_their_code_and_no_wkt():
    header = _header(_gdal_file("EPSG:32633")[0])
    assert header.crs_epsg == 32633 and header.crs_wkt is None
    md = CogMetadata.from_struct(header.to_metadata())
    assert md.crs == pyproj.CRS.from_epsg(32633)
    assert CogMetadata.from_struct({**header.to_metadata(), "crs_epsg": None}).crs is None


def test_geokeys_that_cannot_be_rebuilt_say_why():
    with pytest.raises(GeoKeyCrsError, match="ProjCoordTransGeoKey 4 is not a projection"):
        crs_from_geo_keys({1024: 1, 2048: 4326, 3072: 32767, 3075: 4})
    with pytest.raises(GeoKeyCrsError, match="no ellipsoid"):
        crs_from_geo_keys({1024: 2, 2048: 32767, 2050: 32767})
    with pytest.raises(GeoKeyCrsError, match="ProjLinearUnitsGeoKey 1 is not"):
        crs_from_geo_keys({1024: 1, 2048: 4326, 3072: 32767, 3075: 1, 3076: 1})
    with pytest.raises(GeoKeyCrsError, match="without an EPSG code, ProjCoordTransGeoKey"):
        crs_from_geo_keys({1024: 1, 2048: 4326, 3072: 32767})
    assert crs_from_geo_keys({}) is None
    assert crs_from_geo_keys({1024: 32767, 1026: "a local grid"}) is None  # GDAL's LOCAL_CS


def test_a_header_whose_geokeys_cannot_be_rebuilt_is_refused_with_the_reason():
    data, _ = _gdal_file(CASES["albers"])
    header = _header(data)
    directory = bytearray(data)
    # rewrite ProjCoordTransGeoKey (3075) = 11 in the GeoKeyDirectory to the unknown code 5
    needle = np.array([3075, 0, 1, 11], "<u2").tobytes()
    at = bytes(directory).index(needle)
    directory[at:at + 8] = np.array([3075, 0, 1, 5], "<u2").tobytes()
    assert header.crs_wkt is not None
    with pytest.raises(TiffError, match="GeoKeys give no EPSG code and their CRS cannot be "
                                        "rebuilt: ProjCoordTransGeoKey 5"):
        _header(bytes(directory))
