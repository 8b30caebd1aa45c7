"""rasteret_dask: a GeoParquet index of COGs with lazy, tile-aligned, Dask-parallel reads."""
