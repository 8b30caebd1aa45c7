"""The few real COGs behind the synthetic continental archive, their enriched headers, and
copies of them georeferenced where a record is.

One COG per platform and band (``cogs/S2A/B04.tif``): a Sentinel-2-like image of the archive's
record size (GDAL's COG driver, deflate; uint16 reflectance-like bands with predictor 2 at 10 m,
the uint8 SCL class band at 20 m; nodata 0; overviews down to one tile, or
``ArchiveSpec.overview_count`` levels: GDAL's ``OVERVIEW_COUNT``), georeferenced at a nominal
place (EPSG:32633). Every record of the archive points at the COGs of its platform, so a read
fetches and decodes real tiles wherever the record is. The headers are enriched once
(:func:`rasteret_dask.enrich_table_with_cog_metadata` on the local files) and kept as templates.

Tools that read a file's own georeferencing (GDAL, so odc-stac and stackstac) need a file placed
where its record is: :func:`locate_cog` copies a COG and rewrites its GeoTIFF tags (tie point,
projected CRS code and its citation) in place, so the copy has the same size, tiles and byte
offsets as its source and the record's metadata describes it unchanged.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pyarrow as pa

from .. import schema as S
from .continental_layout import ArchiveSpec

__all__ = [
    "ArchiveBand",
    "ARCHIVE_BANDS",
    "CLOUD_CLASSES",
    "NOMINAL_EPSG",
    "ArchiveCogs",
    "write_archive_cogs",
    "locate_cog",
    "band_pixels",
]

NOMINAL_EPSG = 32633
_NOMINAL_ORIGIN = (399960.0, 5300040.0)
CLOUD_CLASSES = (3, 8, 9, 10)
"""SCL classes of cloud shadow, medium and high probability clouds and cirrus."""
_FORMAT = 2  # bump when the pixels or the COG options change: cached COGs are then rewritten


@dataclass(frozen=True)
class ArchiveBand:
    """One band of the archive: name, pixel size (m), dtype, typical value (for uint16 bands)."""

    name: str
    resolution: int
    dtype: str
    level: int = 0

    @property
    def classes(self) -> bool:
        """Whether the band holds classes (SCL) rather than values."""
        return self.dtype == "uint8"


ARCHIVE_BANDS: tuple[ArchiveBand, ...] = (
    ArchiveBand("B02", 10, "uint16", 1200),
    ArchiveBand("B03", 10, "uint16", 1450),
    ArchiveBand("B04", 10, "uint16", 1600),
    ArchiveBand("B08", 10, "uint16", 3200),
    ArchiveBand("SCL", 20, "uint8"),
)


def band_pixels(spec: ArchiveSpec, band: ArchiveBand) -> int:
    """Side of ``band``'s image in pixels."""
    return round(spec.side / band.resolution)


@dataclass(frozen=True)
class ArchiveCogs:
    """The written COGs: the served folder (``cogs/`` and ``located/`` under it), each
    (platform, band)'s path and each band's enriched ``{band}_metadata`` template (one row per
    platform, in ``spec.platforms`` order, with ``last_modified`` dropped: copies keep the size
    but not the modification time)."""

    served: Path
    spec: ArchiveSpec
    bands: tuple[ArchiveBand, ...]
    paths: Mapping[tuple[str, str], Path]
    templates: Mapping[str, pa.StructArray]

    def band(self, name: str) -> ArchiveBand:
        """The band called ``name``."""
        for band in self.bands:
            if band.name == name:
                return band
        raise KeyError(f"no band {name!r} in the archive (bands: "
                       f"{', '.join(b.name for b in self.bands)})")


def _nodata_edge(rows: np.ndarray, cols: np.ndarray, size: int, platform: int) -> np.ndarray:
    """Where a record of ``platform`` has no data: a triangle in the north-east corner for
    every platform but the first (the edge of a swath)."""
    if platform == 0:
        return np.zeros((len(rows), len(cols)), bool)
    return (cols[None, :] - rows[:, None]) / size > 0.7


def _values(band: ArchiveBand, rows: np.ndarray, cols: np.ndarray, size: int,
            rng: np.random.Generator, phase: tuple[float, float, float]) -> np.ndarray:
    """uint16 reflectance-like values of a strip: crossed waves (a few km long) and noise."""
    metres = 10.0 * np.arange(size, dtype=np.float32)
    wave_x = np.sin(metres[cols] / 2600.0 + phase[0]).astype(np.float32)
    wave_y = np.cos(metres[rows] / 3700.0 - phase[1]).astype(np.float32)
    field = band.level * (1.0 + 0.25 * wave_x[None, :] + 0.2 * wave_y[:, None])
    field += rng.integers(0, 8, size=field.shape, dtype=np.int16)
    return np.clip(field, 1, 65535).astype(np.uint16)


def _classes(rows: np.ndarray, cols: np.ndarray, size: int,
             phase: tuple[float, float, float]) -> np.ndarray:
    """SCL-like classes of a strip: land cover in 600 m blocks (4 vegetation, 5 bare soil,
    6 water, 7 unclassified) under clouds (8, 9), cirrus (10) and cloud shadows (3)."""
    metres = 20.0 * np.arange(size, dtype=np.float32)
    block = (rows[:, None] // 30) * 7 + (cols[None, :] // 30) * 3
    out = (4 + (block + int(phase[2] * 10)) % 4).astype(np.uint8)
    cloud = (np.sin(metres[cols] / 1300.0 + phase[0])[None, :]
             * np.cos(metres[rows] / 1700.0 + phase[1])[:, None])
    shadow = (np.sin((metres[cols] - 400.0) / 1300.0 + phase[0])[None, :]
              * np.cos((metres[rows] + 400.0) / 1700.0 + phase[1])[:, None])
    out[shadow > 0.55] = 3
    out[cloud > 0.6] = 8
    out[cloud > 0.8] = 9
    cirrus = np.sin(metres[cols] / 700.0 - phase[1])[None, :] * np.sin(
        metres[rows] / 900.0 + phase[2])[:, None]
    out[(cirrus > 0.9) & (out < 8)] = 10
    return out


def _write_cog(path: Path, spec: ArchiveSpec, band: ArchiveBand, platform: int) -> None:
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    size = band_pixels(spec, band)
    rng = np.random.default_rng([spec.seed, platform, int.from_bytes(band.name.encode(), "big")])
    phase = tuple(float(v) for v in rng.uniform(0, 2 * math.pi, 3))
    profile = {
        "driver": "COG", "width": size, "height": size, "count": 1, "dtype": band.dtype,
        "crs": f"EPSG:{NOMINAL_EPSG}", "nodata": 0, "BLOCKSIZE": spec.blocksize,
        "transform": Affine(band.resolution, 0.0, _NOMINAL_ORIGIN[0], 0.0, -band.resolution,
                            _NOMINAL_ORIGIN[1]),
        "COMPRESS": "DEFLATE", "LEVEL": 1, "OVERVIEWS": "AUTO", "BIGTIFF": "NO",
        "NUM_THREADS": 2, "RESAMPLING": "NEAREST" if band.classes else "AVERAGE",
    }
    if not band.classes:
        profile["PREDICTOR"] = "STANDARD"
    if spec.overview_count is not None:
        profile["OVERVIEW_COUNT"] = spec.overview_count
    cols = np.arange(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, spec.blocksize):
            rows = np.arange(top, min(top + spec.blocksize, size))
            data = (_classes(rows, cols, size, phase) if band.classes
                    else _values(band, rows, cols, size, rng, phase))
            data[_nodata_edge(rows, cols, size, platform)] = 0
            dst.write(data[None], window=Window(0, top, size, len(rows)))


def _enrich(paths: Mapping[tuple[str, str], Path], spec: ArchiveSpec,
            bands: Sequence[ArchiveBand]) -> dict[str, pa.StructArray]:
    """Each band's ``{band}_metadata`` of every platform's COG, through the normal enrichment
    of local files (one row per platform)."""
    import datetime as dt

    from ..enrich import enrich_table_with_cog_metadata

    n = len(spec.platforms)
    assets = pa.StructArray.from_arrays(
        [pa.StructArray.from_arrays(
            [pa.array([str(paths[c, b.name]) for c in spec.platforms]),
             pa.array(np.zeros(n, np.int32))], fields=list(S.ASSET_TYPE)) for b in bands],
        names=[b.name for b in bands])
    table = pa.table({
        S.ID: list(spec.platforms),
        S.DATETIME: pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)] * n, S.DATETIME_TYPE),
        S.GEOMETRY: pa.nulls(n, pa.binary()), S.ASSETS: assets})
    enriched = enrich_table_with_cog_metadata(table)
    templates = {}
    for band in bands:
        column = enriched[S.metadata_column(band.name)].combine_chunks()
        errors = enriched[S.ENRICH_ERRORS].to_pylist()
        if column.null_count:
            raise RuntimeError(f"enriching the archive's {band.name} COGs failed: {errors}")
        fields = [column.field(i) if f.name != "last_modified"
                  else pa.nulls(n, f.type) for i, f in enumerate(column.type)]
        templates[band.name] = pa.StructArray.from_arrays(fields, fields=list(column.type))
    return templates


def write_archive_cogs(served: str | os.PathLike[str], spec: ArchiveSpec,
                       bands: Sequence[ArchiveBand] = ARCHIVE_BANDS) -> ArchiveCogs:
    """Write (or reuse) the archive's COGs under ``served/cogs`` and enrich their headers.

    COGs and templates written earlier for the same image size, tile size, platforms, bands
    and seed are reused (``served/cogs/manifest.json`` says which).

    Parameters
    ----------
    served : path
        The folder a local object store serves; created if missing.
    spec : ArchiveSpec
        The archive (``pixels``, ``blocksize``, ``overview_count``, ``platforms`` and ``seed``
        matter here).
    bands : sequence of ArchiveBand
        The bands.

    Returns
    -------
    ArchiveCogs
    """
    import pyarrow.parquet as pq

    served = Path(served)
    folder = served / "cogs"
    key = {"format": _FORMAT, "pixels": spec.pixels, "blocksize": spec.blocksize,
           "overview_count": spec.overview_count,
           "platforms": list(spec.platforms), "seed": spec.seed,
           "bands": [asdict(b) for b in bands]}
    paths = {(code, band.name): folder / code / f"{band.name}.tif"
             for code in spec.platforms for band in bands}
    manifest, cached = folder / "manifest.json", folder / "templates.parquet"
    reuse = (manifest.is_file() and json.loads(manifest.read_text()) == key
             and cached.is_file() and all(p.is_file() for p in paths.values()))
    if reuse:
        table = pq.read_table(cached)
        templates = {b.name: table[S.metadata_column(b.name)].combine_chunks().cast(
            S.METADATA_TYPE) for b in bands}
    else:
        manifest.unlink(missing_ok=True)
        for index, code in enumerate(spec.platforms):
            for band in bands:
                _write_cog(paths[code, band.name], spec, band, index)
        templates = _enrich(paths, spec, bands)
        pq.write_table(pa.table({S.metadata_column(b): a for b, a in templates.items()}),
                       cached)
        manifest.write_text(json.dumps(key, indent=1))
    (served / "located").mkdir(parents=True, exist_ok=True)
    return ArchiveCogs(served, spec, tuple(bands), MappingProxyType(paths),
                       MappingProxyType(templates))


def locate_cog(source: str | os.PathLike[str], target: str | os.PathLike[str], *, epsg: int,
               origin: tuple[float, float]) -> Path:
    """Copy the COG ``source`` to ``target``, georeferenced at ``origin`` (top-left corner) in
    UTM north ``epsg`` (32610-32660): the tie point, the projected CRS code and its citation
    are rewritten in place, so sizes, tiles and offsets stay the source's.

    The source must be one of :func:`write_archive_cogs`' files (GDAL's tags: a tie point, a
    ``ProjectedCSTypeGeoKey`` of a UTM north zone and a ``UTM zone NNN`` citation).
    """
    import tifffile

    if not 32610 <= int(epsg) <= 32660:
        raise ValueError(f"epsg must be a UTM north zone 10-60 (32610-32660), not {epsg!r}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    with tifffile.TiffFile(partial) as tif:
        order, page = tif.byteorder, tif.pages.first
        tie, keys = page.tags.get(33922), page.tags.get(34735)
        citation = page.tags.get(34737)
        if tie is None or keys is None or citation is None or len(tie.value) != 6:
            raise ValueError(f"{source}: not a GeoTIFF with a tie point and GeoKeys")
        entries = keys.value
        code_at = next((4 + 4 * i for i in range(entries[3])
                        if entries[4 + 4 * i] == 3072 and entries[5 + 4 * i] == 0), None)
        text = citation.value.encode("ascii")
        zone_at = text.find(b"UTM zone ")
        if code_at is None or zone_at < 0 or not 32610 <= entries[code_at + 3] <= 32660:
            raise ValueError(f"{source}: no UTM north ProjectedCSTypeGeoKey to rewrite")
        patches = [
            (tie.valueoffset + 24, struct.pack(order + "2d", *origin)),
            (keys.valueoffset + 2 * (code_at + 3), struct.pack(order + "H", int(epsg))),
            (citation.valueoffset + zone_at + 9, f"{int(epsg) - 32600:02d}N".encode("ascii")),
        ]
    with open(partial, "r+b") as handle:
        for offset, data in patches:
            handle.seek(offset)
            handle.write(data)
    os.replace(partial, target)
    return target
