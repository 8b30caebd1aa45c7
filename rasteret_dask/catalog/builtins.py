"""Built-in descriptors: Earth Search Sentinel-2 L2A, Landsat C2 L2, NAIP, Copernicus DEM; PC S2."""

from __future__ import annotations

from .descriptor import DatasetDescriptor
from .signing import planetary_computer_signer

__all__ = ["BUILTINS"]

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"

_S2_CODES = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11",
             "B12", "SCL")
_EARTH_SEARCH_S2_KEYS = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3",
                         "nir", "nir08", "nir09", "swir16", "swir22", "scl")

BUILTINS: tuple[DatasetDescriptor, ...] = (
    DatasetDescriptor(
        id="earthsearch/sentinel-2-l2a",
        stac_api=EARTH_SEARCH,
        stac_collection="sentinel-2-l2a",
        band_map=dict(zip(_S2_CODES, _EARTH_SEARCH_S2_KEYS, strict=True)),
        storage_options={"s3": {"anon": True}},
        description="Sentinel-2 L2A surface reflectance COGs (10-60 m) on AWS, via Earth Search.",
    ),
    DatasetDescriptor(
        id="earthsearch/landsat-c2-l2",
        stac_api=EARTH_SEARCH,
        stac_collection="landsat-c2-l2",
        band_map={"B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "nir08",
                  "B6": "swir16", "B7": "swir22", "ST_B10": "lwir11", "QA_PIXEL": "qa_pixel"},
        storage_options={"s3": {"requester_pays": True,
                                "client_kwargs": {"region_name": "us-west-2"}}},
        description="Landsat Collection 2 Level-2 surface reflectance and temperature "
                    "(requester-pays s3://usgs-landsat), via Earth Search.",
    ),
    DatasetDescriptor(
        id="earthsearch/naip",
        stac_api=EARTH_SEARCH,
        stac_collection="naip",
        band_map={"R": "image", "G": "image", "B": "image", "NIR": "image"},
        band_index_map={"R": 0, "G": 1, "B": 2, "NIR": 3},
        storage_options={"s3": {"requester_pays": True,
                                "client_kwargs": {"region_name": "us-west-2"}}},
        description="NAIP 4-band aerial imagery (R, G, B, NIR samples of one file; "
                    "requester-pays s3://naip-analytic), via Earth Search.",
    ),
    DatasetDescriptor(
        id="earthsearch/cop-dem-glo-30",
        stac_api=EARTH_SEARCH,
        stac_collection="cop-dem-glo-30",
        band_map={"DEM": "data"},
        url_rewrite_patterns={"s3://copernicus-dem-30m/":
                              "https://copernicus-dem-30m.s3.amazonaws.com/"},
        description="Copernicus GLO-30 digital elevation model (public bucket, read over HTTPS).",
    ),
    DatasetDescriptor(
        id="pc/sentinel-2-l2a",
        stac_api=PLANETARY_COMPUTER,
        stac_collection="sentinel-2-l2a",
        band_map={code: code for code in _S2_CODES},
        signer=planetary_computer_signer,
        description="Sentinel-2 L2A on Microsoft Planetary Computer (Azure Blob; hrefs are "
                    "signed with a SAS token at read time).",
    ),
)
