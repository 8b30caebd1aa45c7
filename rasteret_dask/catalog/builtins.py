"""Built-in descriptors: Earth Search (Sentinel-2 L2A, Landsat C2 L2, NAIP, Copernicus DEM 30 m
and 90 m), Planetary Computer (Sentinel-2 L2A, Esri/IO annual land cover, ALOS World 3D,
NASADEM, ESA WorldCover, USDA Cropland Data Layer) and AlphaEarth Foundations annual embeddings.

Each says its licence (as the provider's STAC collection states it: an SPDX id, or
``"proprietary"`` for a bespoke licence) and whether access needs credentials; ``notes`` say
which facts were confirmed and how. Planetary Computer hrefs are signed with an anonymous SAS
token at read time (no account needed, so ``requires_credentials`` is False).
"""

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

_COPERNICUS_DEM_LICENSE = ("https://spacedata.copernicus.eu/documents/20123/121286/"
                           "CSCDA_ESA_Mission-specific+Annex_31_Oct_22.pdf")
_PC_SIGNED = ("Planetary Computer: hrefs are Azure Blob URLs signed at read time with an "
              "anonymous SAS token (RASTERET_DASK_PC_SAS_URL; PC_SDK_SUBSCRIPTION_KEY is sent "
              "when set).")

BUILTINS: tuple[DatasetDescriptor, ...] = (
    DatasetDescriptor(
        id="earthsearch/sentinel-2-l2a",
        stac_api=EARTH_SEARCH,
        stac_collection="sentinel-2-l2a",
        band_map=dict(zip(_S2_CODES, _EARTH_SEARCH_S2_KEYS, strict=True)),
        storage_options={"s3": {"anon": True}},
        description="Sentinel-2 L2A surface reflectance COGs (10-60 m) on AWS, via Earth Search.",
        name="Sentinel-2 Level-2A (Earth Search)",
        license="proprietary",
        license_url="https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice",
        notes="Copernicus Sentinel data terms: free and open, attribution required.",
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
        name="Landsat Collection 2 Level-2 (Earth Search)",
        license="proprietary",
        license_url="https://www.usgs.gov/core-science-systems/hdds/data-policy",
        requires_credentials=True,
        notes="Requester-pays bucket: reads need AWS credentials and are billed to them.",
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
        name="NAIP (Earth Search)",
        license="proprietary",
        license_url="https://www.fsa.usda.gov/help/policies-and-links/",
        requires_credentials=True,
        notes="Requester-pays bucket: reads need AWS credentials and are billed to them.",
    ),
    DatasetDescriptor(
        id="earthsearch/cop-dem-glo-30",
        stac_api=EARTH_SEARCH,
        stac_collection="cop-dem-glo-30",
        band_map={"DEM": "data"},
        url_rewrite_patterns={"s3://copernicus-dem-30m/":
                              "https://copernicus-dem-30m.s3.amazonaws.com/"},
        description="Copernicus GLO-30 digital elevation model (public bucket, read over HTTPS).",
        name="Copernicus DEM GLO-30 (Earth Search)",
        license="proprietary",
        license_url=_COPERNICUS_DEM_LICENSE,
        notes="Copernicus DEM licence: free use with attribution.",
    ),
    DatasetDescriptor(
        id="earthsearch/cop-dem-glo-90",
        stac_api=EARTH_SEARCH,
        stac_collection="cop-dem-glo-90",
        band_map={"DEM": "data"},
        url_rewrite_patterns={"s3://copernicus-dem-90m/":
                              "https://copernicus-dem-90m.s3.amazonaws.com/"},
        description="Copernicus GLO-90 digital elevation model (public bucket, read over HTTPS).",
        name="Copernicus DEM GLO-90 (Earth Search)",
        license="proprietary",
        license_url=_COPERNICUS_DEM_LICENSE,
        notes="Confirmed from public material: the Earth Search collection cop-dem-glo-90, its "
              "'data' asset, its licence link (Copernicus DEM License) and the public "
              "s3://copernicus-dem-90m bucket read without credentials.",
    ),
    DatasetDescriptor(
        id="pc/sentinel-2-l2a",
        stac_api=PLANETARY_COMPUTER,
        stac_collection="sentinel-2-l2a",
        band_map={code: code for code in _S2_CODES},
        signer=planetary_computer_signer,
        description="Sentinel-2 L2A on Microsoft Planetary Computer (Azure Blob; hrefs are "
                    "signed with a SAS token at read time).",
        name="Sentinel-2 Level-2A (Planetary Computer)",
        license="proprietary",
        license_url="https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice",
        notes=_PC_SIGNED,
    ),
    DatasetDescriptor(
        id="pc/io-lulc-annual-v02",
        stac_api=PLANETARY_COMPUTER,
        stac_collection="io-lulc-annual-v02",
        band_map={"LULC": "data"},
        signer=planetary_computer_signer,
        description="Impact Observatory / Esri 10 m annual land use and land cover (9 classes), "
                    "on Planetary Computer.",
        name="10 m Annual Land Use Land Cover v02 (Planetary Computer)",
        license="CC-BY-4.0",
        license_url="https://creativecommons.org/licenses/by/4.0/",
        notes="Confirmed from public material: collection id, the 'data' asset, CC BY 4.0. "
              + _PC_SIGNED,
    ),
    DatasetDescriptor(
        id="pc/alos-dem",
        stac_api=PLANETARY_COMPUTER,
        stac_collection="alos-dem",
        band_map={"DEM": "data"},
        signer=planetary_computer_signer,
        description="JAXA ALOS World 3D 30 m digital surface model, on Planetary Computer.",
        name="ALOS World 3D-30m (Planetary Computer)",
        license="proprietary",
        license_url="https://earth.jaxa.jp/policy/en.html",
        notes="Confirmed from public material: collection id and the 'data' asset; the "
              "licence is JAXA's own terms of use (free, attribution), not checked against "
              "the live collection. " + _PC_SIGNED,
    ),
    DatasetDescriptor(
        id="pc/nasadem",
        stac_api=PLANETARY_COMPUTER,
        stac_collection="nasadem",
        band_map={"DEM": "elevation"},
        signer=planetary_computer_signer,
        description="NASADEM 30 m elevation (SRTM reprocessed), on Planetary Computer.",
        name="NASADEM (Planetary Computer)",
        license="proprietary",
        license_url="https://lpdaac.usgs.gov/data/data-citation-and-policies/",
        notes="Confirmed from public material: collection id and the 'elevation' asset; the "
              "licence (NASA LP DAAC policy: no restrictions) is not checked against the live "
              "collection. " + _PC_SIGNED,
    ),
    DatasetDescriptor(
        id="pc/esa-worldcover",
        stac_api=PLANETARY_COMPUTER,
        stac_collection="esa-worldcover",
        band_map={"MAP": "map"},
        signer=planetary_computer_signer,
        description="ESA WorldCover 10 m global land cover (2020, 2021), on Planetary Computer.",
        name="ESA WorldCover (Planetary Computer)",
        license="CC-BY-4.0",
        license_url="https://spdx.org/licenses/CC-BY-4.0.html",
        notes="Confirmed from public material: collection id, the 'map' asset, CC BY 4.0. "
              + _PC_SIGNED,
    ),
    DatasetDescriptor(
        id="pc/usda-cdl",
        stac_api=PLANETARY_COMPUTER,
        stac_collection="usda-cdl",
        band_map={"CDL": "cropland", "CULTIVATED": "cultivated"},
        signer=planetary_computer_signer,
        description="USDA NASS Cropland Data Layer, 30 m annual crop types over CONUS "
                    "(cropland items) and cultivated land (cultivated items), on Planetary "
                    "Computer.",
        name="USDA Cropland Data Layer (Planetary Computer)",
        license="proprietary",
        license_url="https://www.nass.usda.gov/Research_and_Science/Cropland/sarsfaqs2.php",
        notes="Confirmed from public material: collection id and the 'cropland' and "
              "'cultivated' assets (items carry one of them; Rasteret maps CDL to "
              "'cultivated'); the licence (USDA NASS, public) is not checked against the live "
              "collection. " + _PC_SIGNED,
    ),
    DatasetDescriptor(
        id="aef/v1-annual",
        geoparquet_uri=("s3://us-west-2.opendata.source.coop/terrafloww/"
                        "aef-v1-annual-rasteret/index.parquet"),
        column_map={"fid": "id", "geom": "geometry", "year": "datetime"},
        href_column="path",
        band_index_map={f"A{i:02d}": i for i in range(64)},
        url_rewrite_patterns={"s3://us-west-2.opendata.source.coop/":
                              "https://data.source.coop/"},
        storage_options={"s3": {"anon": True, "client_kwargs": {"region_name": "us-west-2"}}},
        description="AlphaEarth Foundations annual satellite embeddings: 64 int8 bands "
                    "(A00-A63, nodata -128) at 10 m, one record per UTM tile and year.",
        name="AlphaEarth Foundations Satellite Embedding, annual",
        license="CC-BY-4.0",
        license_url="https://creativecommons.org/licenses/by/4.0/",
        notes="Confirmed from Google's dataset readme: CC BY 4.0 (attribution: 'The AlphaEarth "
              "Foundations Satellite Embedding dataset is produced by Google and Google "
              "DeepMind'), 64 int8 channels A00-A63, nodata -128, COGs stored bottom-up "
              "(positive y resolution). The record table is the one Rasteret publishes on "
              "Source Cooperative (columns fid, geom, year, path, crs); its location and "
              "columns were not read from here (no network). Rasteret's read-ready "
              "collection there is in Rasteret's layout, so it is not offered to load(): "
              "build('aef/v1-annual', bbox=..., date_range=...) indexes and enriches it.",
    ),
)
