"""One call from a table or a (stac-)GeoParquet file to an enriched, exported, partitioned index."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from . import schema as S
from .catalog import DatasetDescriptor, find_descriptor, get_descriptor
from .collection import Collection, as_input_table, build_collection_from_table
from .index.assets import (
    asset_keys,
    assets_from_href_columns,
    raster_asset_keys,
    rewrite_hrefs,
    select_assets,
)

__all__ = ["build_from_table", "build_from_stac", "build", "DEFAULT_WORKSPACE", "rewrite_hrefs",
           "select_assets", "index_root", "validate_name", "EnrichmentFailedError"]

DEFAULT_WORKSPACE = "rasteret_workspace"


def validate_name(name: str) -> str:
    """``name`` if it can name an index folder inside a workspace, else ``ValueError``.

    A name is one path component: not empty, no ``/`` or ``\\``, not ``.`` or ``..``, not
    absolute, no leading or trailing spaces, no control characters.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid index name {name!r}: it must be a non-empty string")
    problems = []
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        problems.append("it contains a path separator")
    if name in (".", ".."):
        problems.append("it names a parent or the workspace itself")
    if os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        problems.append("it is absolute")
    if name != name.strip():
        problems.append("it starts or ends with white space")
    if any(ord(c) < 32 for c in name):
        problems.append("it contains control characters")
    if problems:
        raise ValueError(f"invalid index name {name!r}: {'; '.join(problems)}; use one folder "
                         "name such as 's2-bangalore'")
    return name


def index_root(workspace_dir: str | os.PathLike | None, name: str) -> str:
    """``workspace_dir/name`` (a local path or an fsspec URL), after :func:`validate_name`."""
    workspace = os.fspath(workspace_dir if workspace_dir is not None else DEFAULT_WORKSPACE)
    validate_name(name)
    if "://" in workspace:
        return f"{workspace.rstrip('/')}/{name}"
    return os.path.join(workspace, name)


def _scan(source: Any, filter_expr: ds.Expression | None, columns: Sequence[str] | None,
          storage_options: dict | None) -> pa.Table:
    """A Parquet file or folder (local or any fsspec URL), with the filter and columns pushed
    into the scan."""
    text = os.fspath(source)
    if "://" in text and not text.startswith("file://"):
        from .io.state import resolve

        fs, path = resolve(text, storage_options)
        dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    else:
        local = text[len("file://"):] if text.startswith("file://") else text
        dataset = ds.dataset(local, format="parquet", partitioning="hive")
    return dataset.to_table(columns=None if columns is None else list(columns),
                            filter=filter_expr)


def _is_items(data: Any) -> bool:
    from .ingest.stac_items import item_dicts

    return item_dicts(data) is not None


def _band_map(band_codes: Mapping[str, str] | Sequence[str] | None) -> dict[str, str] | None:
    if band_codes is None:
        return None
    return dict(band_codes) if isinstance(band_codes, Mapping) else {b: b for b in band_codes}


class EnrichmentFailedError(RuntimeError):
    """Every header of a build's enrichment failed: the index was written, nothing enriched."""


def _checked(report: Any, call: str) -> Collection:
    """The enriched collection of a build; no silent failures: raise when every header failed,
    warn (with the count and where the reasons are) when some did."""
    if report.failed and not report.enriched:
        first = "; ".join(report.errors[:3])
        raise EnrichmentFailedError(
            f"{call}: all {report.failed} headers failed to enrich (first: {first}); the index "
            f"was written without COG metadata, fix the hrefs or storage options and run "
            f"collection.enrich()")
    if report.failed:
        warnings.warn(f"{call}: {report.failed} of {report.failed + report.enriched} headers "
                      f"failed to enrich; the reasons are in the index's `enrich_errors` column "
                      f"(first: {report.errors[0] if report.errors else 'not recorded'}); reads "
                      "skip those records", stacklevel=3)
    return report.collection


def build_from_table(
    table_or_path: Any,
    *,
    name: str,
    workspace_dir: str | os.PathLike | None = None,
    enrich_cog: bool = True,
    band_codes: Mapping[str, str] | Sequence[str] | None = None,
    column_map: Mapping[str, str] | None = None,
    href_column: str | Mapping[str, str] | None = None,
    band_index_map: Mapping[str, int] | None = None,
    url_rewrite_patterns: Mapping[str, str] | None = None,
    data_source: str | DatasetDescriptor | None = None,
    storage_options: dict | None = None,
    client: Any = None,
    progress: bool = False,
    overwrite: bool = False,
    filter_expr: ds.Expression | None = None,
    columns: Sequence[str] | None = None,
) -> Collection:
    """Normalise, export (``workspace_dir/name``, partitioned) and enrich a table or Parquet file.

    Reads stac-geoparquet (stac-geoparquet, rustac) as is: with a descriptor (``data_source``)
    its band map, band indices, href column, href rewriting and column map apply; without one
    the GeoTIFF data assets become the bands.

    Parameters
    ----------
    table_or_path : table, STAC items or path
        An Arrow table/batch/reader, a pandas/geopandas frame, an object with
        ``__arrow_c_stream__`` / ``__arrow_c_array__`` (polars, DuckDB), a pystac
        ``ItemCollection`` or list of items (pystac or dicts), or a Parquet file or folder
        (local or an fsspec URL); None with a descriptor that publishes a record table.
    name : str
        One folder name inside ``workspace_dir`` (no separators, not ``..``, not empty).
    workspace_dir : str or os.PathLike, optional
        Default ``./rasteret_workspace``; a local folder or an fsspec URL (the index's
        credentials come from the ``rasteret_dask.storage_options`` dask config).
    enrich_cog : bool, default True
        Fetch the COG headers after the export.
    band_codes : mapping or sequence of str, optional
        Band code -> asset key (or the asset keys to keep as bands).
    column_map : mapping, optional
        Renames input columns to the contract's (``{"scene_id": "id"}``).
    href_column : str or mapping, optional
        A column of hrefs (or band -> column) that becomes the ``assets`` struct.
    band_index_map : mapping, optional
        Band -> sample index within its file (several bands in one file).
    url_rewrite_patterns : mapping, optional
        Href prefix rewrites (``{"s3://bucket/": "https://bucket.s3.amazonaws.com/"}``).
    data_source : str or DatasetDescriptor, optional
        A descriptor whose band map, band indices, rewrites, column map and storage options
        apply where the arguments give none.
    storage_options : dict, optional
        fsspec options for the COGs.
    client : distributed.Client, optional
        Where enrichment runs; default the active client, else local threads.
    progress : bool, default False
        Show progress bars (``rasteret_dask.progress``): the enrichment's tasks.
    overwrite : bool, default False
        Replace an existing index of that name (only its own files are removed).
    filter_expr : pyarrow.dataset.Expression, optional
        Rows to keep, on the input's own column names (before ``column_map``); pushed into
        the Parquet scan (partitions and row groups are skipped), or applied to a table.
    columns : sequence of str, optional
        Input columns to read (before ``column_map``); they must include what the contract
        needs (or what ``column_map`` / ``href_column`` turn into it).

    Returns
    -------
    Collection
        The exported (and enriched) index, loaded.

    Raises
    ------
    ValueError
        For an invalid ``name`` (before anything is read or written), a table missing a
        required column, or footprints outside CRS84's range.
    NotAnIndexError, IndexExistsError
        When ``workspace_dir/name`` is a foreign folder, or an index and not ``overwrite``.
    EnrichmentFailedError
        When every header failed to enrich (the index is written; the first errors are named).
        When only some failed, a ``UserWarning`` gives the count and points to ``enrich_errors``.
    """
    root = index_root(workspace_dir, name)
    descriptor = get_descriptor(data_source) if data_source is not None else None
    if descriptor is not None:
        band_index_map = band_index_map or dict(descriptor.band_index_map) or None
        href_column = href_column or descriptor.href_column
        url_rewrite_patterns = url_rewrite_patterns or dict(descriptor.url_rewrite_patterns) or None
        column_map = column_map or dict(descriptor.column_map) or None
        storage_options = storage_options or descriptor.storage_options_dict()
        data_source = descriptor.id
    if table_or_path is None and descriptor is not None and descriptor.geoparquet_uri:
        table_or_path = descriptor.geoparquet_uri
    if table_or_path is None:
        raise ValueError("build_from_table needs a table or a path (or a data_source whose "
                         "descriptor has a geoparquet_uri)")
    described = (descriptor is not None and band_codes is None and bool(descriptor.band_map))
    if described:
        band_codes = dict(descriptor.band_map)
    items_mapped = False
    if isinstance(table_or_path, str | os.PathLike):
        table = _scan(table_or_path, filter_expr, columns, storage_options)
    else:
        items_mapped = _is_items(table_or_path)
        table = as_input_table(table_or_path, band_map=_band_map(band_codes),
                               band_index_map=band_index_map)
        if filter_expr is not None or columns is not None:
            table = ds.dataset(table).to_table(
                columns=None if columns is None else list(columns), filter=filter_expr)
    if described and not items_mapped:
        present = asset_keys(table)  # only the descriptor's bands this table has
        band_codes = {b: k for b, k in band_codes.items() if present is None or k in present}
    if band_codes is None and href_column is None and not items_mapped:
        raster_keys = raster_asset_keys(table)
        if raster_keys is not None:
            band_codes = raster_keys
    if column_map:
        table = table.rename_columns([column_map.get(c, c) for c in table.column_names])
    if href_column is not None:
        table = assets_from_href_columns(table, href_column, band_codes, band_index_map)
    elif band_codes is not None and S.ASSETS in table.column_names and not items_mapped:
        table = table.set_column(table.schema.get_field_index(S.ASSETS), S.ASSETS,
                                 select_assets(table[S.ASSETS], band_codes, band_index_map))
    collection = build_collection_from_table(table, name=name, data_source=data_source)
    if url_rewrite_patterns:
        normalized = collection.to_table()
        normalized = normalized.set_column(
            normalized.schema.get_field_index(S.ASSETS), S.ASSETS,
            rewrite_hrefs(normalized[S.ASSETS], url_rewrite_patterns))
        collection = build_collection_from_table(normalized, name=name, data_source=data_source)
    collection = collection.export(root, overwrite=overwrite)
    if enrich_cog:
        report = collection.enrich(client=client, storage_options=storage_options, progress=progress)
        collection = _checked(report, f"build_from_table({name!r})")
    return collection


def build_from_stac(
    *,
    name: str,
    stac_api: str | None = None,
    collection: str | None = None,
    bbox: Sequence[float] | None = None,
    date_range: Sequence[Any] | None = None,
    static_catalog: str | os.PathLike | None = None,
    workspace_dir: str | os.PathLike | None = None,
    query: dict | None = None,
    data_source: str | DatasetDescriptor | None = None,
    band_map: Mapping[str, str] | None = None,
    band_index_map: Mapping[str, int] | None = None,
    max_items: int | None = None,
    client: Any = None,
    enrich_cog: bool = True,
    intersects: Any = None,
    storage_options: dict | None = None,
    description: str | None = None,
    page_size: int = 100,
    retries: int = 5,
    progress: bool = False,
    timeout: float = 60.0,
) -> Collection:
    """Search a STAC API (or walk a static catalog) month by month, write, then enrich.

    Each calendar month is one Dask task. Rerunning on the same workspace adds only items
    whose ids are new; nothing is written unless every month's search succeeded.

    Parameters
    ----------
    name : str
        One folder name inside ``workspace_dir`` (no separators, not ``..``, not empty).
    stac_api : str, optional
        The STAC API's URL (give this or ``static_catalog``).
    collection : str, optional
        The STAC collection id (required with ``stac_api``; with a static catalog, only
        items of this collection are kept).
    bbox : (minx, miny, maxx, maxy), optional
        Search area in degrees.
    date_range : (start, end), optional
        Search window (ISO dates or datetimes, both ends included), split into calendar
        months; required with ``stac_api``; a static catalog's default is the span of its
        items.
    static_catalog : str or os.PathLike, optional
        A static STAC catalog's root document (``catalog.json``): a local path or a URL
        (http(s), s3 with ``storage_options``). The client reads the root; each of its
        children is walked with pystac by one Dask task, then each month window's task keeps
        the items a search would return (datetime, bbox/intersects, ``query``, collection).
    workspace_dir : str or os.PathLike, optional
        Default ``./rasteret_workspace``; a local folder or an fsspec URL.
    query : dict, optional
        A STAC ``query`` object (``{"eo:cloud_cover": {"lt": 20}}``).
    data_source : str or DatasetDescriptor, optional
        The descriptor; default the one registered for this ``stac_api`` and ``collection``
        (a descriptor of the same collection id on another API is not applied: pass it
        here to use its band map on a mirror).
    band_map : mapping, optional
        Band code -> asset key; default the descriptor's, else every GeoTIFF data asset.
    band_index_map : mapping, optional
        Band -> sample index within its file.
    max_items : int, optional
        Keep only the earliest ``max_items`` items.
    client : distributed.Client or connect() target, optional
        Where the searches and the enrichment run; a target given here is closed afterwards.
    enrich_cog : bool, default True
        Fetch the COG headers after writing.
    intersects : geometry, optional
        Search geometry (instead of ``bbox``).
    storage_options : dict, optional
        fsspec options for the COGs.
    description : str, optional
        Stored in the collection metadata.
    page_size : int, default 100
        Items per search page.
    retries : int, default 5
        Retries of 429 and 5xx answers (with backoff; each logged on
        ``rasteret_dask.ingest``).
    progress : bool, default False
        Show progress bars (``rasteret_dask.progress``): month-window searches, partition
        writes and the enrichment's tasks.
    timeout : float, default 60
        Seconds a STAC request may wait for an answer: an API that does not answer fails
        after this long (not retried), naming its URL.

    Returns
    -------
    Collection
        The index, loaded.

    Raises
    ------
    ValueError
        For an invalid ``name`` or date range, or a search that found no items.
    StacSearchError
        When a month's search keeps failing (nothing is written).
    """
    from .runner import using_client

    root = index_root(workspace_dir, name)
    from .ingest import StacQuery, ingest_stac

    if (stac_api is None) == (static_catalog is None):
        raise ValueError("build_from_stac needs either stac_api (with collection and "
                         "date_range) or static_catalog, not both")
    if stac_api is not None and (not collection or date_range is None):
        raise ValueError("build_from_stac with a stac_api needs collection= and date_range=")
    if static_catalog is not None:
        stac_api = _catalog_href(static_catalog)
    descriptor = (get_descriptor(data_source) if data_source is not None
                  else find_descriptor(collection, stac_api, same_api=True))
    if band_map is None and descriptor is not None and descriptor.band_map:
        band_map = dict(descriptor.band_map)
        band_index_map = band_index_map or dict(descriptor.band_index_map) or None
    if intersects is not None and not isinstance(intersects, dict):
        import shapely

        from .plan.geometry import coerce_geometries

        intersects = json.loads(shapely.to_geojson(coerce_geometries(intersects)[0]))
    spec = StacQuery(
        stac_api=stac_api, collection=collection,
        bbox=tuple(float(v) for v in bbox) if bbox is not None else None,
        intersects=intersects, query=query, band_map=band_map, band_index_map=band_index_map,
        url_rewrite_patterns=dict(descriptor.url_rewrite_patterns) if descriptor else None,
        max_items=max_items, page_size=page_size, retries=retries, timeout=float(timeout),
        static_catalog=static_catalog is not None, storage_options=storage_options,
    )
    with using_client(client) as active:
        ingest_stac(spec, date_range, root, name=name,
                    data_source=descriptor.id if descriptor else None,
                    description=description or (descriptor.description if descriptor else None),
                    client=active, progress=progress)
        from .collection import load

        built = load(root)
        if enrich_cog:
            built = _checked(built.enrich(client=active, storage_options=storage_options,
                                          progress=progress), f"build_from_stac({name!r})")
        return built


def _catalog_href(static_catalog: str | os.PathLike) -> str:
    """A static catalog's root as an absolute path or a URL (it is stored in the index)."""
    text = os.fspath(static_catalog)
    if "://" in text and not text.startswith("file://"):
        return text
    local = text[len("file://"):] if text.startswith("file://") else text
    if not os.path.exists(local):
        raise FileNotFoundError(f"static catalog {local} does not exist")
    return os.path.abspath(local)


def build(dataset_id: str, *, bbox: Sequence[float] | None = None, date_range: Sequence[Any],
          workspace_dir: str | os.PathLike | None = None, name: str | None = None,
          **kwargs: Any) -> Collection:
    """Build a registered dataset (``"earthsearch/sentinel-2-l2a"``) from its STAC API or file.

    Parameters
    ----------
    dataset_id : str
        A registered descriptor id (``rasteret_dask.descriptors()``).
    bbox : (minx, miny, maxx, maxy), optional
        Area in degrees.
    date_range : (start, end)
        ISO dates or datetimes, both ends included.
    workspace_dir : str or os.PathLike, optional
        Default ``./rasteret_workspace``.
    name : str, optional
        The index folder's name; default the id with ``/`` replaced by ``-``.
    **kwargs
        Passed to ``build_from_stac`` (or ``build_from_table`` for file-backed datasets).

    Returns
    -------
    Collection
        The index, loaded (and enriched unless ``enrich_cog=False``).

    Raises
    ------
    ValueError
        For an unknown dataset id (the message lists the registered ones).
    """
    descriptor = get_descriptor(dataset_id)
    name = validate_name(name or descriptor.id.replace("/", "-"))
    if descriptor.stac_api is None and descriptor.geoparquet_uri is None:
        raise ValueError(f"dataset {descriptor.id!r} publishes an index, not a source to build "
                         f"from: open it with rasteret_dask.load({descriptor.id!r})")
    if descriptor.stac_api is not None:
        return build_from_stac(name=name, stac_api=descriptor.stac_api,
                               collection=descriptor.stac_collection, bbox=bbox,
                               date_range=date_range, workspace_dir=workspace_dir,
                               data_source=descriptor, **kwargs)
    collection = build_from_table(None, name=name, workspace_dir=workspace_dir,
                                  data_source=descriptor, enrich_cog=False,
                                  **{k: v for k, v in kwargs.items() if k != "enrich_cog"})
    subset = collection.subset(date_range=date_range, bbox=bbox)
    collection = subset.export(index_root(workspace_dir, name), overwrite=True)
    if kwargs.get("enrich_cog", True):
        collection = collection.enrich(client=kwargs.get("client"),
                                       progress=kwargs.get("progress", False)).collection
    return collection
