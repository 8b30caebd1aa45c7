"""The overview a coarser read uses (odc-stac's rule, tiff/levels.py) and CogMetadata's levels."""

from __future__ import annotations

import pytest
from affine import Affine

from rasteret_dask.tiff.cog_metadata import CogMetadata, MetadataError, OverviewLevel
from rasteret_dask.tiff.levels import choose_level, overview_factors, pick_level, read_shrink


def test_read_shrink_floors_snaps_and_never_goes_below_one():
    assert [read_shrink(s) for s in (0.3, 1.0, 1.99, 2.0, 2.8, 2.9995, 3.0004, 7.5)] == \
        [1, 1, 1, 2, 2, 3, 3, 7]
    assert read_shrink(2.99, tol=0.02) == 3 and read_shrink(2.99) == 2
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive finite"):
            read_shrink(bad)


def test_the_rule_is_odc_stacs():
    """odc-geo's read scale and odc-loader's overview pick, over a grid of scales."""
    from odc.geo.overlap import _pick_read_scale
    from odc.loader._reader import pick_overview

    scales = [k / 1000 for k in range(1, 40000, 7)] + [n + d for n in range(1, 40)
                                                        for d in (-1e-3, -9e-4, 9e-4, 1e-3)]
    for factors in ((2, 4, 8, 16), (2, 4), (3, 9, 27), (4, 16)):
        for scale in scales:
            shrink = read_shrink(scale)
            assert shrink == _pick_read_scale(scale), scale
            odc = pick_overview(shrink, factors) if shrink > 1 else None
            assert pick_level(shrink, factors) == (0 if odc is None else odc + 1), (scale, factors)


def test_overview_factors_are_rasterios_rounded_width_ratios():
    assert overview_factors(1024, [512, 256, 128, 64]) == (2, 4, 8, 16)
    # odd sizes: GDAL rounds overview sizes up, the ratio still rounds to the power of two
    assert overview_factors(1001, [501, 251, 126, 63]) == (2, 4, 8, 16)
    assert overview_factors(10980, [5490, 2745, 1373, 687]) == (2, 4, 8, 16)
    assert overview_factors(1000, [333, 100]) == (3, 10)


def test_pick_level_is_the_coarsest_overview_not_coarser_than_the_read():
    factors = (2, 4, 8, 16)
    assert [pick_level(s, factors) for s in range(1, 20)] == \
        [0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4]
    assert pick_level(5, ()) == 0
    assert pick_level(2, (3, 9)) == 0 and pick_level(3, (3, 9)) == 1 and pick_level(8, (3, 9)) == 1
    # odc-stac's pick_overview cases, shifted by one (0 = full resolution here)
    assert [pick_level(s, (2, 4, 8)) for s in (2, 3, 4, 7, 8, 20)] == [1, 1, 2, 2, 3, 3]


def test_choose_level_between_levels_and_at_the_tolerance():
    widths = [512, 256, 128, 64]
    assert choose_level(1.0, 1024, widths) == 0
    assert choose_level(1.9, 1024, widths) == 0
    assert choose_level(2.0, 1024, widths) == 1
    assert choose_level(3.6, 1024, widths) == 1  # GDAL's nearest rule would read level 2 (4x)
    assert choose_level(3.9995, 1024, widths) == 2  # within 1e-3 of 4: snaps up
    assert choose_level(3.998, 1024, widths) == 1
    assert choose_level(64.0, 1024, widths) == 4
    assert choose_level(5.0, 1001, [501, 251, 126, 63]) == 2


def _metadata(overviews, size=(1024, 768), tile=256, res=10.0) -> CogMetadata:
    width, height = size
    tiles = -(-width // tile) * -(-height // tile)
    return CogMetadata(image_width=width, image_height=height, tile_width=tile,
                       tile_height=tile, dtype="uint16",  # type: ignore[arg-type]
                       transform=Affine(res, 0, 500000, 0, -res, 4200000),
                       tile_offsets=tuple(range(tiles)), tile_byte_counts=(1,) * tiles,
                       overviews=tuple(overviews))


def _level(width: int, height: int, tile: int = 256, tiles: bool = True) -> OverviewLevel:
    n = -(-width // tile) * -(-height // tile)
    if not tiles:
        return OverviewLevel(width, height, tile, tile)
    return OverviewLevel(width, height, tile, tile, tuple(range(100, 100 + n)), (5,) * n)


def test_cog_metadata_levels_and_choice():
    md = _metadata([_level(512, 384), _level(256, 192), _level(128, 96)])
    assert md.has_overview_tiles
    assert md.level(0) is md
    two = md.level(2)
    assert (two.image_width, two.image_height, two.tile_width) == (256, 192, 256)
    assert two.tile_offsets == (100,) and two.tile_byte_counts == (5,)
    assert two.transform == Affine(40, 0, 500000, 0, -40, 4200000) == md.overview_transform(1)
    assert two.overviews == () and two.dtype == md.dtype and two.resolution == (40.0, 40.0)
    assert [md.choose_level(r) for r in (5, 10, 19.9, 20, 39, 40, (40, 80), (80, 40), 1000)] == \
        [0, 0, 0, 1, 1, 2, 2, 2, 3]
    with pytest.raises(MetadataError, match=r"^rec 'a', band 'B04': no overview level 4"):
        md.level(4, context="rec 'a', band 'B04'")
    with pytest.raises(ValueError, match="positive"):
        md.choose_level((0, 10))


def test_levels_without_tiles_are_not_chosen_and_name_the_record():
    old = _metadata([_level(512, 384, tiles=False), _level(256, 192, tiles=False)])
    assert not old.has_overview_tiles and old.choose_level(40) == 0
    with pytest.raises(MetadataError, match=r"^r1, B04, http://h/a.tif: overview level 1 "
                                            r"\(512 x 384\) has no tile offsets.*only_missing"):
        old.level(1, context="r1, B04, http://h/a.tif")
    mixed = _metadata([_level(512, 384), _level(256, 192, tiles=False)])
    assert not mixed.has_overview_tiles and mixed.choose_level(40) == 1
    assert _metadata([]).has_overview_tiles and _metadata([]).choose_level(100) == 0


def test_rotated_grids_choose_by_their_pixels_sides():
    """Issue 15 item 4: rotated grids are read onto output grids (they were refused here):
    the read scale compares the output pixel with the length of a source pixel's side."""
    md = _metadata([_level(512, 384)])
    rotated = CogMetadata(**{**{f: getattr(md, f) for f in md.__slots__},
                             "transform": Affine(8, 6, 0, 6, -8, 0)})  # 10-unit pixels
    assert rotated.resolution == (10.0, 10.0)
    assert [rotated.choose_level(r) for r in (19.9, 20, 40)] == [0, 1, 1]
