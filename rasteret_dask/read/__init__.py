"""Read layer: selection (bands, source, index query) -> plan (pure) -> dask graph (fetch groups +
decode tasks) -> xarray assembly."""

from .api import get_numpy, get_xarray, plan_reads
from .assemble import spatial_ref
from .buffers import SHARED_BUFFERS_KEY
from .failures import ReadErrors
from .graph import RasterReadError
from .plan import ReadPlan
from .select import Record, Selection, band_records, query_geometries, read_bands, select
from .skipped import MissingRecordsError, SkippedRecord

__all__ = ["MissingRecordsError", "RasterReadError", "ReadErrors", "ReadPlan", "Record",
           "SHARED_BUFFERS_KEY", "Selection", "SkippedRecord", "band_records", "get_numpy", "get_xarray", "plan_reads",
           "query_geometries", "read_bands", "select", "spatial_ref"]
