"""COG factories for tests, the demo and benchmarks: small deterministic GeoTIFFs of any flavour.

rasterio (GDAL) is a dependency of the package (the demo writes its COGs with it on a plain
``pip install``); it is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "S2_SIZE",
    "S2_BLOCKSIZE",
    "S2_TRANSFORM",
    "synthetic_pixels",
    "default_transform",
    "write_cog",
    "write_s2_like_cog",
    "write_strip_tiff",
    "write_masked_tiff",
    "ellipse_mask",
    "natural_rgb",
]

S2_SIZE = 10980
S2_BLOCKSIZE = 1024
# Sentinel-2 L2A 10 m band of MGRS tile 33UUP: 10 m pixels, corner-based origin.
S2_TRANSFORM = (10.0, 0.0, 399960.0, 0.0, -10.0, 5300040.0)

_COG_PREDICTORS = {1: "NO", 2: "STANDARD", 3: "FLOATING_POINT"}


def _level(dtype: np.dtype) -> tuple[float, float, float]:
    """(centre, amplitude of the smooth pattern, amplitude of the noise) for a dtype."""
    if dtype.kind == "f":
        return 0.5, 0.2, 0.01
    info = np.iinfo(dtype)
    if dtype.itemsize == 1:
        centre = 128.0 if dtype.kind == "u" else 0.0
        return centre, 45.0, 15.0
    if dtype.itemsize == 2:
        centre = 2000.0 if dtype.kind == "u" else 0.0
        return centre, 800.0, 31.0
    span = float(min(info.max, 2**31 - 1))
    centre = span / 2 if dtype.kind == "u" else 0.0
    return centre, span / 8, 255.0


def synthetic_pixels(
    width: int, height: int, dtype: Any = "uint16", count: int = 1, seed: int = 0
) -> np.ndarray:
    """Deterministic, compressible pixels of shape (count, height, width): smooth waves plus a
    little noise, sized to the dtype's range (so decode bugs show, and files stay small)."""
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    centre, amplitude, noise = _level(dt)
    out = np.empty((count, height, width), dtype=dt)
    ys = np.arange(height, dtype=np.float64)[:, None]
    xs = np.arange(width, dtype=np.float64)[None, :]
    for band in range(count):
        phase = rng.uniform(0, 2 * math.pi)
        px, py = rng.uniform(20, 90), rng.uniform(20, 90)
        smooth = np.sin(xs / px + phase) + np.cos(ys / py - phase)  # in [-2, 2]
        values = centre + amplitude / 2 * smooth
        if dt.kind == "f":
            values = values + noise * rng.standard_normal((height, width))
        else:
            values = values + rng.integers(0, int(noise) + 1, size=(height, width))
            info = np.iinfo(dt)
            values = np.clip(np.rint(values), info.min, info.max)
        out[band] = values.astype(dt)
    return out


def default_transform(crs: Any) -> tuple[float, float, float, float, float, float]:
    """The factory's default transform: 10 m pixels at a UTM-like origin, or 0.0001 degree
    pixels for geographic CRSs."""
    from rasterio.crs import CRS

    if crs is not None and CRS.from_user_input(crs).is_geographic:
        return (0.0001, 0.0, 12.0, 0.0, -0.0001, 46.0)
    return (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def _overview_factors(width: int, height: int, blocksize: int) -> list[int]:
    """Power-of-two factors until a level fits in one tile, like the COG driver's AUTO."""
    factors: list[int] = []
    factor = 1
    while max(-(-width // factor), -(-height // factor)) > blocksize:
        factor *= 2
        factors.append(factor)
    return factors


def write_cog(
    path: str | os.PathLike[str],
    *,
    width: int = 512,
    height: int = 512,
    dtype: str = "uint16",
    count: int = 1,
    blocksize: int = 256,
    compress: str | None = "deflate",
    predictor: int = 1,
    crs: Any = "EPSG:32633",
    transform: Sequence[float] | None = None,
    nodata: float | None = None,
    interleave: str = "pixel",
    bigtiff: bool = False,
    overviews: bool = True,
    endianness: str | None = None,
    photometric: str | None = None,
    data: np.ndarray | None = None,
    seed: int = 0,
    **creation_options: Any,
) -> Path:
    """Write a tiled GeoTIFF with GDAL and return its path: a COG (COG driver) for pixel
    interleave, a tiled GTiff for planar (``interleave="band"``), big-endian or photometric files.

    ``data`` (count, height, width) overrides width/height/count/dtype; with ``nodata`` set, a
    16 x 16 corner of every band holds the nodata value. Extra keyword arguments are passed as
    GDAL creation options.
    """
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling

    if data is None:
        data = synthetic_pixels(width, height, dtype, count, seed)
    else:
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[None]
        count, height, width = data.shape
        data = data.copy()
    dt = data.dtype
    codec = "NONE" if compress is None else str(compress).upper()
    if codec == "JPEG" and dt != np.uint8:
        raise ValueError(f"JPEG compression needs uint8 data, not {dt}")
    if nodata is not None:
        data[:, :16, :16] = nodata
    if transform is None:
        transform = default_transform(crs)
    profile: dict[str, Any] = {
        "width": width,
        "height": height,
        "count": count,
        "dtype": dt.name,
        "crs": crs,
        "transform": Affine(*transform[:6]),
        "nodata": nodata,
    }
    interleave = interleave.lower()
    if interleave not in ("pixel", "band"):
        raise ValueError(f"interleave must be 'pixel' or 'band', not {interleave!r}")
    use_cog = interleave == "pixel" and endianness is None and photometric is None
    options: dict[str, Any] = {"COMPRESS": codec, "BIGTIFF": "YES" if bigtiff else "NO"}
    if codec != "JPEG" and predictor != 1:
        options["PREDICTOR"] = _COG_PREDICTORS[predictor] if use_cog else predictor
    if use_cog:
        options.update(BLOCKSIZE=blocksize, OVERVIEWS="AUTO" if overviews else "NONE")
        driver = "COG"
    else:
        driver = "GTiff"
        options.update(
            TILED="YES", BLOCKXSIZE=blocksize, BLOCKYSIZE=blocksize, INTERLEAVE=interleave.upper()
        )
        if endianness is not None:
            options["ENDIANNESS"] = endianness.upper()
        if photometric is not None:
            options["PHOTOMETRIC"] = photometric.upper()
    options.update({key.upper(): value for key, value in creation_options.items()})
    path = Path(path)
    with rasterio.open(path, "w", driver=driver, **profile, **options) as dst:
        dst.write(data)
        if not use_cog and overviews:
            factors = _overview_factors(width, height, blocksize)
            if factors:
                dst.build_overviews(factors, Resampling.average)
    return path


def write_s2_like_cog(path: str | os.PathLike[str], *, band_seed: int = 0) -> Path:
    """Write a Sentinel-2-like 10 m band (10980 x 10980 uint16, 1024 tiles, deflate +
    predictor 2, overviews, EPSG:32633, nodata 0) in a few seconds, for benchmarks and round-trip tests."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    rng = np.random.default_rng(band_seed)
    phase = rng.uniform(0, 2 * math.pi)
    cols = np.arange(S2_SIZE, dtype=np.float32)
    row_wave = (1500 + 600 * np.sin(cols / 700.0 + phase)).astype(np.uint16)[None, :]
    path = Path(path)
    profile = {
        "driver": "COG",
        "width": S2_SIZE,
        "height": S2_SIZE,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": Affine(*S2_TRANSFORM),
        "nodata": 0,
        "BLOCKSIZE": S2_BLOCKSIZE,
        "COMPRESS": "DEFLATE",
        "PREDICTOR": "STANDARD",
        "LEVEL": 1,
        "OVERVIEWS": "AUTO",
        "NUM_THREADS": 2,
        "BIGTIFF": "NO",
    }
    step = 1098
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, S2_SIZE, step):
            rows = np.arange(top, min(top + step, S2_SIZE), dtype=np.float32)
            col_wave = (500 * np.cos(rows / 900.0 - phase) + 500).astype(np.uint16)[:, None]
            block = row_wave + col_wave
            block += rng.integers(0, 4, size=block.shape, dtype=np.uint16)
            dst.write(block[None], window=Window(0, top, S2_SIZE, len(rows)))
    return path


def write_strip_tiff(
    path: str | os.PathLike[str],
    *,
    width: int = 300,
    height: int = 200,
    dtype: str = "uint8",
    count: int = 1,
    compress: str | None = "deflate",
    interleave: str = "pixel",
    rows_per_strip: int | None = None,
    crs: Any = "EPSG:32633",
    transform: Sequence[float] | None = None,
    nodata: float | None = None,
    data: np.ndarray | None = None,
    seed: int = 0,
    **creation_options: Any,
) -> Path:
    """Write a strip-organised (untiled) GeoTIFF with GDAL's GTiff driver and return its path.

    ``rows_per_strip`` defaults to GDAL's choice (strips of about 8 KB); ``data`` (count,
    height, width) overrides width/height/count/dtype; extra keyword arguments are GDAL
    creation options (``NBITS=1``, ``PHOTOMETRIC="YCBCR"``, ...).
    """
    import rasterio
    from affine import Affine

    if data is None:
        data = synthetic_pixels(width, height, dtype, count, seed)
    else:
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[None]
        count, height, width = data.shape
    options: dict[str, Any] = {
        "TILED": "NO", "COMPRESS": "NONE" if compress is None else str(compress).upper(),
        "INTERLEAVE": interleave.upper(),
    }
    if rows_per_strip is not None:
        options["BLOCKYSIZE"] = rows_per_strip
    options.update({key.upper(): value for key, value in creation_options.items()})
    path = Path(path)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=data.dtype.name,
        crs=crs,
        transform=Affine(*(transform or default_transform(crs))[:6]),
        nodata=nodata,
        **options,
    ) as dst:
        dst.write(data)
    return path


def natural_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Deterministic uint8 RGB pixels (3, height, width) that look like imagery: smooth colour
    gradients, fields of other colours with sharp edges, and sensor noise (what a lossy
    codec's colour handling shows on)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.empty((3, height, width))
    for channel in range(3):
        image[channel] = 120 + 60 * np.sin(x / (40 + 20 * channel) + rng.uniform(0, 6)) \
            * np.cos(y / (55 + 10 * channel))
    for _ in range(max(1, width * height // 25000)):
        cx, cy, radius = rng.integers(0, width), rng.integers(0, height), rng.integers(10, 80)
        field = (x - cx) ** 2 + (y - cy) ** 2 < radius * radius
        colour = rng.integers(20, 235, 3)
        for channel in range(3):
            image[channel][field] = 0.5 * image[channel][field] + 0.5 * colour[channel]
    image += rng.normal(0, 6, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def ellipse_mask(width: int, height: int) -> np.ndarray:
    """A (height, width) uint8 GDAL mask: 255 inside the ellipse inscribed in the image
    (shifted a little off centre), 0 outside it and in a band across its middle."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    inside = ((x - width * 0.52) / (width * 0.47)) ** 2 + \
        ((y - height * 0.48) / (height * 0.46)) ** 2 <= 1
    inside[height * 5 // 11:height * 6 // 11, width // 4:width * 3 // 4] = False
    return np.where(inside, 255, 0).astype(np.uint8)


def write_masked_tiff(
    path: str | os.PathLike[str],
    *,
    data: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    width: int = 512,
    height: int = 512,
    dtype: str = "uint16",
    count: int = 1,
    compress: str = "deflate",
    blocksize: int = 256,
    overviews: bool = True,
    striped: bool = False,
    crs: Any = "EPSG:32633",
    transform: Sequence[float] | None = None,
    nodata: float | None = None,
    seed: int = 0,
    **creation_options: Any,
) -> Path:
    """Write a GeoTIFF with a GDAL internal mask (``GDAL_TIFF_INTERNAL_MASK=YES`` and
    ``dataset.write_mask()``: a 1-bit deflate mask IFD, NewSubfileType 4) and return its path:
    a COG (the COG driver; each overview gets its own mask, NewSubfileType 5) or, with
    ``striped``, a striped GTiff whose mask is striped too.

    ``data`` (count, height, width) overrides width/height/count/dtype; ``mask`` (height,
    width; 0 = masked) defaults to :func:`ellipse_mask`. Extra keyword arguments are GDAL
    creation options of the output.
    """
    import rasterio
    from affine import Affine
    from rasterio.shutil import copy as copy_dataset

    if data is None:
        data = synthetic_pixels(width, height, dtype, count, seed)
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    if mask is None:
        mask = ellipse_mask(width, height)
    path = Path(path)
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": count,
        "dtype": data.dtype.name, "crs": crs, "nodata": nodata,
        "transform": Affine(*(transform or default_transform(crs))[:6]),
    }
    options = {key.upper(): value for key, value in creation_options.items()}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        if striped:
            with rasterio.open(path, "w", **profile, TILED="NO", COMPRESS=compress.upper(),
                               **options) as dst:
                dst.write(data)
                dst.write_mask(mask)
            return path
        source = path.with_name(path.name + ".source.tif")
        try:
            with rasterio.open(source, "w", **profile, TILED="YES", BLOCKXSIZE=blocksize,
                               BLOCKYSIZE=blocksize) as dst:
                dst.write(data)
                dst.write_mask(mask)
            copy_dataset(source, path, driver="COG", COMPRESS=compress.upper(),
                         BLOCKSIZE=blocksize, OVERVIEWS="AUTO" if overviews else "NONE",
                         **options)
        finally:
            source.unlink(missing_ok=True)
    return path
