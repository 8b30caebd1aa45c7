"""Read layer: plan (pure) -> dask graph (fetch groups + decode tasks) -> xarray assembly."""

from .api import get_numpy, get_xarray, plan_reads
from .graph import RasterReadError
from .plan import ReadPlan

__all__ = ["RasterReadError", "ReadPlan", "get_numpy", "get_xarray", "plan_reads"]
