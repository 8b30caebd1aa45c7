"""TIFF/BigTIFF header parsing from bytes (sans-I/O): tiled GeoTIFF/COG headers -> metadata.

The parser reads a `SparseBuffer` and raises `NeedBytes` with every missing byte range;
drivers (`read_tiff_header`, or the enrichment layer's multi-file driver) fetch and retry.
"""

from .buffer import NeedBytes, SparseBuffer, TiffError, merge_ranges
from .driver import ReadRanges, read_tiff_header
from .header import Overview, TiffHeader, parse_tiff_header
from .ifd import IFD_READAHEAD, MAX_TILES
from .tags import SUPPORTED_COMPRESSIONS, compression_name, sample_dtype

__all__ = [
    "NeedBytes",
    "SparseBuffer",
    "TiffError",
    "merge_ranges",
    "IFD_READAHEAD",
    "MAX_TILES",
    "Overview",
    "TiffHeader",
    "parse_tiff_header",
    "read_tiff_header",
    "ReadRanges",
    "SUPPORTED_COMPRESSIONS",
    "compression_name",
    "sample_dtype",
]
