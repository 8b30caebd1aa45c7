"""Ingest: STAC items -> index rows, month-window searches and partition writes as Dask tasks."""

from .stac_build import StacBuildSummary, conform_table, ingest_stac, partition_rows
from .stac_changes import ItemSync, changed_ids, gone_ids
from .stac_items import conform_assets, data_asset_keys, item_dicts, item_epsg, items_to_table
from .stac_search import (
    MonthWindow,
    StacQuery,
    StacSearchError,
    month_windows,
    search_items,
    search_window,
    window_rows,
)
from .stac_static import item_matches, query_matches, walk_catalog

__all__ = [
    "ItemSync",
    "changed_ids",
    "gone_ids",
    "MonthWindow",
    "StacBuildSummary",
    "StacQuery",
    "StacSearchError",
    "conform_assets",
    "conform_table",
    "data_asset_keys",
    "ingest_stac",
    "item_dicts",
    "item_epsg",
    "item_matches",
    "items_to_table",
    "month_windows",
    "partition_rows",
    "query_matches",
    "search_items",
    "search_window",
    "walk_catalog",
    "window_rows",
]
