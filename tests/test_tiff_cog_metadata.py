"""CogMetadata: the typed value of a ``{band}_metadata`` struct (pure, no I/O)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from affine import Affine

from rasteret_dask import schema as S
from rasteret_dask.tiff.cog_metadata import CogMetadata, MetadataError, OverviewLevel


def _struct(**changes) -> dict:
    md = dict.fromkeys(S.METADATA_FIELDS)
    md.update(image_width=1000, image_height=600, tile_width=256, tile_height=256,
              dtype="uint16", transform=[10.0, 0.0, 500000.0, 0.0, -10.0, 4200000.0],
              tile_offsets=list(range(100, 100 + 12)), tile_byte_counts=[7] * 12,
              compression=8, predictor=2, nodata=0.0, samples_per_pixel=1,
              planar_configuration=1, photometric=1, crs_epsg=32633,
              overviews=[{"width": 500, "height": 300, "tile_width": 256, "tile_height": 256}])
    md.update(changes)
    return md


def test_from_struct_layout_and_grid():
    md = CogMetadata.from_struct(_struct())
    assert (md.tiles_down, md.tiles_across) == (3, 4)
    assert md.dtype == np.dtype("uint16") and md.transform == Affine(10, 0, 500000, 0, -10, 4200000)
    assert md.tile_index(2, 3) == 11 and md.tile_range(11) == (111, 118)
    assert md.resolution == (10.0, 10.0) and md.is_axis_aligned and md.shape == (600, 1000)
    assert md.overviews == (OverviewLevel(500, 300, 256, 256),)
    assert md.overview_transform(0) == Affine(20, 0, 500000, 0, -20, 4200000)
    assert md.tile_nbytes == 256 * 256 * 2 and md.crs_epsg == 32633
    with pytest.raises(IndexError, match="outside"):
        md.tile_index(3, 0)


def test_from_arrow_scalar_and_samples():
    md = _struct(samples_per_pixel=3, dtype="uint8", photometric=2)
    scalar = pa.array([md], S.METADATA_TYPE)[0]
    value = CogMetadata.from_struct(scalar)
    assert value.samples_per_tile == 3 and value.sample_plane(2) == 2 and not value.planar
    planar = CogMetadata.from_struct(_struct(samples_per_pixel=3, planar_configuration=2))
    assert planar.samples_per_tile == 1 and planar.sample_plane(2) == 0
    assert hash(value) is not None  # frozen: usable as a key


@pytest.mark.parametrize("changes, message", [
    ({"transform": None}, "lacks transform"),
    ({"tile_offsets": [1, 2]}, "2 tile offsets and 12 byte counts for 12 tiles"),
    ({"tile_width": 0}, "tile size must be positive"),
    ({"transform": [1.0, 2.0]}, "6 coefficients"),
])
def test_errors_name_the_context(changes, message):
    with pytest.raises(MetadataError, match=message) as info:
        CogMetadata.from_struct(_struct(**changes), context="record 'a', band 'B04', href x.tif")
    assert str(info.value).startswith("record 'a', band 'B04', href x.tif: ")
    with pytest.raises(MetadataError, match="not enriched"):
        CogMetadata.from_struct(None, context="record 'a'")
