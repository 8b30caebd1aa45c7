"""Read layer: plan (pure) -> dask graph (fetch groups + decode tasks) -> xarray assembly."""

from .api import get_numpy, get_xarray, plan_reads
from .failures import ReadErrors
from .graph import RasterReadError
from .plan import ReadPlan
from .skipped import MissingRecordsError, SkippedRecord

__all__ = ["MissingRecordsError", "RasterReadError", "ReadErrors", "ReadPlan", "SkippedRecord",
           "get_numpy", "get_xarray", "plan_reads"]
