"""pystac Items of the continental archive's records (for odc-stac, stackstac and STAC tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from .. import schema as S

if TYPE_CHECKING:
    import pystac

__all__ = ["record_items"]

_RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
_COLLECTION = "synthetic-continental-s2"


def _add_asset(item: pystac.Item, href: str, band: str, metadata: dict, epsg: int) -> None:
    import pystac
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    asset = pystac.Asset(href=href, media_type=pystac.MediaType.COG, roles=["data"], title=band)
    item.add_asset(band, asset)
    proj = ProjectionExtension.ext(asset, add_if_missing=True)
    proj.code = f"EPSG:{epsg}"
    proj.shape = [metadata["image_height"], metadata["image_width"]]
    proj.transform = list(metadata["transform"])
    raster = RasterBand.create(nodata=metadata["nodata"],
                               data_type=DataType(metadata["dtype"]),
                               spatial_resolution=abs(metadata["transform"][0]))
    RasterExtension.ext(asset, add_if_missing=True).bands = [raster]


def record_items(table: pa.Table, bands: Sequence[str]) -> list[pystac.Item]:
    """One Item per row of an archive table (``id``, ``datetime``, ``geometry``, ``assets``,
    ``proj:epsg``, ``eo:cloud_cover``, ``platform``, ``s2:mgrs_tile`` and the bands'
    ``{band}_metadata``), in datetime then id order.

    Every asset of ``bands`` carries ``proj:code``, ``proj:shape``, ``proj:transform`` and
    ``raster:bands`` (data type, nodata, resolution) from the record's metadata.
    """
    import pystac
    import shapely

    items = []
    for row in sorted(table.to_pylist(), key=lambda r: (r[S.DATETIME], r[S.ID])):
        footprint = shapely.from_wkb(row[S.GEOMETRY])
        item = pystac.Item(
            id=row[S.ID], geometry=footprint.__geo_interface__, bbox=list(footprint.bounds),
            datetime=row[S.DATETIME], collection=_COLLECTION,
            properties={"platform": row["platform"], "constellation": "sentinel-2",
                        "eo:cloud_cover": row[S.CLOUD_COVER],
                        "s2:mgrs_tile": row["s2:mgrs_tile"]})
        for band in bands:
            metadata = row[S.metadata_column(band)]
            if metadata is None:
                raise ValueError(f"record {row[S.ID]}, band {band}: no metadata")
            _add_asset(item, row[S.ASSETS][band]["href"], band, metadata, row[S.EPSG])
        if _RASTER_EXT not in item.stac_extensions:
            item.stac_extensions.append(_RASTER_EXT)
        items.append(item)
    return items
