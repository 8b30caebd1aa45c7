"""Enrichment layer: COG headers -> ``{band}_metadata`` columns, as Dask partition tasks."""

from .headers import HeaderFailure, fetch_headers
from .partitions import EnrichReport, EnrichTaskError, enrich_collection
from .table import EnrichStats, enrich_table, enrich_table_with_cog_metadata
from .verify import Verification

__all__ = [
    "EnrichReport",
    "EnrichStats",
    "EnrichTaskError",
    "HeaderFailure",
    "Verification",
    "enrich_collection",
    "enrich_table",
    "enrich_table_with_cog_metadata",
    "fetch_headers",
]
