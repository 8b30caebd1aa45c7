"""The catalog Rasteret users know: its built-ins with licences and credentials, search,
register_local kept in the user's config directory, load("<dataset id>")."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.catalog import (
    DatasetDescriptor,
    config_dir,
    get_descriptor,
    local_registry_path,
    planetary_computer_signer,
    register,
    unregister,
)
from rasteret_dask.testing.tables import synthetic_table

NEW_BUILTINS = {
    "earthsearch/cop-dem-glo-90": ("proprietary", {"DEM": "data"}),
    "pc/io-lulc-annual-v02": ("CC-BY-4.0", {"LULC": "data"}),
    "pc/alos-dem": ("proprietary", {"DEM": "data"}),
    "pc/nasadem": ("proprietary", {"DEM": "elevation"}),
    "pc/esa-worldcover": ("CC-BY-4.0", {"MAP": "map"}),
    "pc/usda-cdl": ("proprietary", {"CDL": "cropland", "CULTIVATED": "cultivated"}),
}


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A fresh user config directory (the local registry file lives there)."""
    folder = tmp_path / "config"
    monkeypatch.setenv("RASTERET_DASK_CONFIG_DIR", str(folder))
    return folder


def test_builtins_say_their_licence_and_whether_access_needs_credentials():
    for dataset_id, (licence, bands) in NEW_BUILTINS.items():
        descriptor = get_descriptor(dataset_id)
        assert descriptor.license == licence and dict(descriptor.band_map) == bands
        assert descriptor.requires_credentials is False and descriptor.notes
        assert descriptor.license_url.startswith("https://")
        if dataset_id.startswith("pc/"):
            assert descriptor.signer is planetary_computer_signer
            assert descriptor.stac_collection == dataset_id.split("/", 1)[1]
    dem90 = get_descriptor("earthsearch/cop-dem-glo-90")
    assert dem90.url_rewrite_patterns == {"s3://copernicus-dem-90m/":
                                          "https://copernicus-dem-90m.s3.amazonaws.com/"}
    assert get_descriptor("earthsearch/landsat-c2-l2").requires_credentials is True
    assert get_descriptor("earthsearch/naip").requires_credentials is True
    for descriptor in rd.descriptors():
        assert isinstance(descriptor.license, str) and descriptor.license
        assert pickle.loads(pickle.dumps(descriptor)) == descriptor
        json.dumps(descriptor.to_dict())


def test_alphaearth_descriptor_builds_from_its_record_table_layout(tmp_path):
    aef = get_descriptor("aef/v1-annual")
    assert aef.license == "CC-BY-4.0" and not aef.requires_credentials
    assert aef.href_column == "path" and list(aef.band_index_map) == [f"A{i:02d}"
                                                                       for i in range(64)]
    assert aef.band_index_map["A63"] == 63 and aef.index_uri is None
    # a local table laid out like the published record table (fid, geom, year, path, crs)
    boxes = [shapely.box(11.3, -0.1, 11.5, 0.1), shapely.box(12.3, -0.1, 12.5, 0.1)]
    table = pa.table({"fid": ["aef-1", "aef-2"], "geom": pa.array(shapely.to_wkb(boxes)),
                      "year": [2022, 2023], "crs": ["EPSG:32632", "EPSG:32633"],
                      "path": ["s3://us-west-2.opendata.source.coop/x/1.tiff",
                               "s3://us-west-2.opendata.source.coop/x/2.tiff"]})
    pq.write_table(table, tmp_path / "index.parquet")
    built = rd.build_from_table(tmp_path / "index.parquet", name="aef", data_source=aef,
                                workspace_dir=tmp_path / "ws", enrich_cog=False)
    out = built.to_table().sort_by(S.ID)
    assert built.bands == [f"A{i:02d}" for i in range(64)] and built.data_source == aef.id
    assert out[S.DATETIME].to_pylist() == [dt.datetime(2022, 1, 1, tzinfo=dt.UTC),
                                          dt.datetime(2023, 1, 1, tzinfo=dt.UTC)]
    assert out[S.EPSG].to_pylist() == [32632, 32633]
    first = out[S.ASSETS][0].as_py()
    assert first["A17"] == {"href": "https://data.source.coop/x/1.tiff", "band_index": 17}
    with pytest.raises(ValueError, match="publishes no index.*rasteret_dask.build"):
        rd.load("aef/v1-annual")


def test_search_by_keyword():
    dems = {d.id for d in rd.search("DEM")}
    assert {"earthsearch/cop-dem-glo-30", "earthsearch/cop-dem-glo-90", "pc/alos-dem",
            "pc/nasadem"} <= dems
    assert "pc/sentinel-2-l2a" not in dems
    assert {d.id for d in rd.search("cc-by-4.0")} >= {"pc/io-lulc-annual-v02",
                                                       "pc/esa-worldcover", "aef/v1-annual"}
    assert [d.id for d in rd.search("cropland")] == ["pc/usda-cdl"]
    with pytest.raises(ValueError, match="non-empty keyword"):
        rd.search("  ")


def _index(path) -> rd.Collection:
    return rd.build_collection_from_table(synthetic_table(6, months=2), name="mine").export(path)


def test_register_local_persists_and_load_opens_it(config, tmp_path):
    _index(tmp_path / "idx")
    descriptor = rd.register_local("local/mine", tmp_path / "idx", name="My index",
                                   description="six scenes for the tests")
    assert local_registry_path() == config / "datasets.local.json"
    stored = json.loads((config / "datasets.local.json").read_text())
    assert stored == [{"id": "local/mine", "index_uri": str((tmp_path / "idx").resolve()),
                       "name": "My index", "description": "six scenes for the tests"}]
    assert descriptor.index_uri == stored[0]["index_uri"]
    loaded = rd.load("local/mine")
    assert len(loaded) == 6 and loaded.name == "mine" and loaded.version is not None
    assert [d.id for d in rd.search("six scenes")] == ["local/mine"]
    # another process with the same config directory knows it
    script = ("import rasteret_dask as rd; c = rd.load('local/mine'); "
              "print(len(c), rd.get_descriptor('local/mine').name)")
    env = {**os.environ, "RASTERET_DASK_CONFIG_DIR": str(config)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.split() == ["6", "My", "index"]
    assert rd.unregister_local("local/mine") is True
    assert json.loads((config / "datasets.local.json").read_text()) == []
    with pytest.raises(FileNotFoundError):
        rd.load("local/mine")


def test_register_local_refuses_what_it_cannot_keep(config, tmp_path):
    _index(tmp_path / "a")
    _index(tmp_path / "b")
    with pytest.raises(ValueError, match="built-in"):
        rd.register_local("earthsearch/naip", tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="nothing at"):
        rd.register_local("local/none", tmp_path / "missing")
    rd.register_local("local/a", tmp_path / "a", persist=False)
    assert not (config / "datasets.local.json").exists()  # this process only
    with pytest.raises(ValueError, match="already registered"):
        rd.register_local("local/a", tmp_path / "b", persist=False)
    rd.register_local("local/a", tmp_path / "b", persist=False, replace=True)
    assert rd.load("local/a").path == str((tmp_path / "b").resolve())
    assert rd.unregister_local("local/a") is False  # it was never in the file
    assert rd.catalog.registered("local/a") is None


def test_a_broken_local_registry_file_is_named(config, monkeypatch):
    config.mkdir()
    (config / "datasets.local.json").write_text('[{"id": "local/x"}]')
    with pytest.raises(ValueError, match=r"datasets.local.json needs an 'id' and an 'index_uri'"):
        rd.descriptors()
    (config / "datasets.local.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"datasets.local.json is not valid JSON"):
        rd.search("anything")
    monkeypatch.setenv("RASTERET_DASK_CONFIG_DIR", str(config / "elsewhere"))
    assert "local/x" not in {d.id for d in rd.descriptors()}


def test_config_directory_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("RASTERET_DASK_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_dir() == tmp_path / "xdg" / "rasteret_dask"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_dir() == tmp_path / "home" / ".config" / "rasteret_dask"


def test_a_published_index_opens_with_its_descriptor(tmp_path):
    _index(tmp_path / "pub")
    published = DatasetDescriptor(id="acme/published", index_uri=str(tmp_path / "pub"),
                                  stac_api="http://127.0.0.1:9/stac", stac_collection="c",
                                  band_map={"RED": "B04"}, license="CC0-1.0")
    register(published)
    try:
        loaded = rd.load("acme/published")
        assert len(loaded) == 6 and loaded.data_source == "acme/published"
        assert rd.load("acme/published", data_source="earthsearch/naip").data_source == \
            "earthsearch/naip"
    finally:
        unregister("acme/published")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"license": 3}, TypeError, "license must be a string"),
    ({"requires_credentials": "no"}, TypeError, "requires_credentials must be True or False"),
    ({"band_index_map": {"R": -1}, "band_map": {"R": "img"}}, TypeError, "band_index_map"),
    ({"band_index_map": {"R": True}, "band_map": {"R": "img"}}, TypeError, "band_index_map"),
    ({"band_map": {"R": ""}}, TypeError, "band_map must be a mapping of non-empty strings"),
    ({"index_uri": ""}, TypeError, "index_uri must be a non-empty string"),
    ({"href_column": "path", "band_map": {"R": "img"}, "band_index_map": {"R": 0}},
     ValueError, "band_map or href_column, not both"),
    ({"href_column": "path"}, ValueError, "href_column needs a band_index_map"),
])
def test_descriptors_are_checked_when_made(kwargs, error, match):
    with pytest.raises(error, match=match):
        DatasetDescriptor(id="acme/x", stac_api="http://127.0.0.1:9", stac_collection="c",
                          **kwargs)
    with pytest.raises(ValueError, match="stac_api, a geoparquet_uri or an index_uri"):
        DatasetDescriptor(id="acme/x")
