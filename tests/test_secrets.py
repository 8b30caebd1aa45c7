"""Secrets stay secret: planted credentials, headers and signed-URL tokens appear in no repr,
description, raised message, log record, ``enrich_errors`` value or file of the index, while
the objects that carry them to the workers keep them."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import traceback
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import rasteret_dask as rd
from rasteret_dask import schema as S
from rasteret_dask.catalog import DatasetDescriptor
from rasteret_dask.io import ByteRange, FetchError, RangeReader
from rasteret_dask.read.source import ReadSource
from rasteret_dask.redact import (
    MASK,
    REDACTED,
    describe_callable,
    is_secret_key,
    redact_mapping,
    redact_text,
    redact_url,
)
from rasteret_dask.testing.servers import RangeServer

from .conftest import BUCKET
from .test_read_helpers import file_info, pixel_box, record_table

SIG = "PLANTEDSIG0001"
AUTH = "PLANTEDAUTH0002"
KEY = "PLANTEDKEY0003"
SECRET = "PLANTEDSECRET0004"
API_KEY = "PLANTEDAPIKEY0005"
USER, PASSWORD = "PLANTEDUSER0006", "PLANTEDPASSWORD0007"
PRESIGNED = "PLANTEDPRESIGNED0008"
STAC_KEY = "PLANTEDSTACKEY0009"
PLANTED = (SIG, AUTH, KEY, SECRET, API_KEY, USER, PASSWORD, PRESIGNED, STAC_KEY)

OPTIONS = {
    "http": {"headers": {"Authorization": f"Bearer {AUTH}"},
             "client_kwargs": {"headers": {"X-Api-Key": API_KEY}}},
    "s3": {"key": KEY, "secret": SECRET, "client_kwargs": {"region_name": "us-east-1"}},
}
SIGNED: list[str] = []


def sign(href: str) -> str:
    """A signer appending a query token, like a SAS or presigned URL (module level: pickles)."""
    SIGNED.append(href)
    return f"{href}?sig={SIG}&se=2030-01-01"


def _descriptor() -> DatasetDescriptor:
    return DatasetDescriptor(
        id="test/secrets", stac_api=f"https://{USER}:{PASSWORD}@stac.invalid/v1?subscription-key={STAC_KEY}",
        stac_collection="scenes", storage_options=OPTIONS, signer=sign,
        url_rewrite_patterns={"s3://bucket/": f"https://bucket.invalid/?sig={SIG}"},
    )


def _assert_clean(texts, where: str) -> None:
    for text in texts:
        for planted in PLANTED:
            assert planted not in text, f"{planted} leaked through {where}: {text[:500]}"


def _exception_texts(exc: BaseException) -> list[str]:
    """The message of ``exc`` and of every exception chained to it, and their tracebacks."""
    texts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(str(current))
        texts.append(repr(current))
        current = current.__cause__ or current.__context__
    texts.append("".join(traceback.format_exception(exc)))
    return texts


def _log_texts(caplog) -> list[str]:
    return [record.getMessage() + (record.exc_text or "") for record in caplog.records]


# --- the rules ------------------------------------------------------------------------------

def test_redact_url_keeps_scheme_host_and_path():
    assert redact_url(f"https://{USER}:{PASSWORD}@host:8443/a/b.tif?sig={SIG}&se=1#frag") == (
        f"https://{MASK}@host:8443/a/b.tif?{REDACTED}#{REDACTED}")
    assert redact_url("https://host/a.tif") == "https://host/a.tif"
    assert redact_url("s3://bucket/key.tif") == "s3://bucket/key.tif"
    assert redact_url("/data/scene.tif") == "/data/scene.tif"
    once = redact_url(f"https://host/a.tif?X-Amz-Signature={PRESIGNED}")
    assert once == f"https://host/a.tif?{REDACTED}" and redact_url(once) == once


def test_redact_text_finds_urls_pairs_and_credentials_in_messages():
    messages = [
        f"bytes 0-9 of https://host/a.tif?sig={SIG}: HTTP 404 after 1 attempt",
        f"404, message='Not Found', url='http://127.0.0.1:1/a.tif?sig={SIG}&se=1'",
        f"Cannot connect to URL(\"https://{USER}:{PASSWORD}@host/p?q=1\")",
        f"NoSuchKey: bucket/key.tif?X-Amz-Signature={PRESIGNED}.",
        f"__init__() got {{'key': '{KEY}', 'secret': \"{SECRET}\", 'anon': False}}",
        f"Authorization: Bearer {AUTH}, retry",
        f"token={SIG}&page=2 and X-Amz-Signature={PRESIGNED}",
        f"AWS4-HMAC-SHA256 Credential={KEY}/20240101/us-east-1/s3/aws4_request, Signature={SIG}",
    ]
    for message in messages:
        redacted = redact_text(message)
        _assert_clean([redacted], "redact_text")
        assert redact_text(redacted) == redacted
    assert redact_text(f"href https://host/a.tif?sig={SIG}: gone.") == (
        f"href https://host/a.tif?{REDACTED}: gone.")
    assert redact_text("a plain message, no/path?here") == "a plain message, no/path?here"


def test_redact_mapping_masks_secret_keys_at_any_depth():
    shown = redact_mapping(OPTIONS | {"gcs": {"token": {"refresh": SIG}, "session": object(),
                                              "endpoint_url": f"https://h/?key={KEY}"}})
    _assert_clean([json.dumps(shown)], "redact_mapping")
    assert shown["s3"]["key"] == MASK and shown["s3"]["client_kwargs"] == {"region_name": "us-east-1"}
    assert shown["http"]["headers"] == {"Authorization": MASK}
    assert shown["gcs"]["session"] == MASK and shown["gcs"]["token"] == MASK
    assert shown["gcs"]["endpoint_url"] == f"https://h/?{REDACTED}"
    assert OPTIONS["s3"]["key"] == KEY  # the input is untouched
    assert [is_secret_key(k) for k in ("aws_secret_access_key", "X-Amz-Security-Token",
                                       "Ocp-Apim-Subscription-Key", "SSECustomerKey", "sas",
                                       "anon", "requester_pays", "endpoint_url", "client_kwargs",
                                       "region_name")] == [True] * 5 + [False] * 5
    assert redact_mapping({"opaque": object()}) == {"opaque": "<object>"}


# --- reprs, descriptions, pickles --------------------------------------------------------------

def test_reader_and_descriptor_text_forms_are_redacted_but_pickles_keep_credentials():
    descriptor = _descriptor()
    reader = ReadSource(descriptor).reader()
    assert reader.storage_options == OPTIONS and reader.signer is sign
    texts = [repr(reader), str(reader), repr(descriptor), str(descriptor),
             json.dumps(descriptor.to_dict()), repr(ReadSource(descriptor, {"B04": "B04"})),
             repr(RangeReader(storage_options=OPTIONS["s3"]))]
    _assert_clean(texts, "a repr or to_dict")
    assert "headers" in repr(reader) and "tests.test_secrets.sign" in repr(reader)
    described = descriptor.to_dict()
    assert described["storage_options"]["s3"] == {"key": MASK, "secret": MASK,
                                                  "client_kwargs": {"region_name": "us-east-1"}}
    assert described["stac_api"] == f"https://{MASK}@stac.invalid/v1?{REDACTED}"
    assert described["signer"] == describe_callable(sign) == "tests.test_secrets.sign"
    back = pickle.loads(pickle.dumps(reader))
    assert back.storage_options == OPTIONS and back.signer is sign
    again = pickle.loads(pickle.dumps(descriptor))
    assert again.storage_options_dict() == OPTIONS and again.stac_api == descriptor.stac_api


def test_fetch_errors_and_ranges_show_no_query():
    href = f"https://host/a.tif?X-Amz-Signature={PRESIGNED}"
    error = FetchError(href, 0, 10, 2, f"url='{href}' said no; token={SIG}", 403)
    texts = [str(error), repr(error), error.reason, repr(ByteRange(href, 0, 10)),
             ByteRange(href, 0, 10).describe()]
    _assert_clean(texts, "FetchError/ByteRange")
    assert error.href == href  # kept for callers that match on it
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    with pytest.raises(ValueError) as info:
        ByteRange(href, 5, 1)
    _assert_clean(_exception_texts(info.value), "an invalid ByteRange")


# --- end to end over the local HTTP server ----------------------------------------------------

@pytest.fixture()
def served(cog_dir, tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    for name in ("scene0_B04.tif", "scene1_B04.tif"):
        shutil.copy(cog_dir / name, root / name)
    with RangeServer(root) as server:
        yield server, root


def _records(server: RangeServer, root: Path) -> list[dict]:
    files = ["scene0_B04.tif", "scene1_B04.tif", "missing.tif"]
    return [{"id": f"r{k}", "datetime": f"2024-05-0{k + 1}T10:00:00",
             "path": root / ("scene0_B04.tif" if name == "missing.tif" else name),
             "assets": {"B04": (server.href(name), 0)}} for k, name in enumerate(files)]


def _scan_index(root: Path) -> list[str]:
    """Every file under ``root`` as raw bytes, and every Parquet file decoded (values and
    schema metadata), since zstd pages would hide a planted string from a byte scan."""
    texts = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        texts.append(raw.decode("latin-1"))
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            texts.append(json.dumps(table.to_pylist(), default=str))
            texts.append(str(table.schema.metadata))
    return texts


def test_enrichment_and_reads_over_http_leak_nothing(served, tmp_path, caplog):
    server, root = served
    descriptor = _descriptor()
    index = tmp_path / "index"
    texts: list[str] = []
    SIGNED.clear()
    with caplog.at_level(logging.DEBUG):
        collection = rd.build_collection_from_table(
            record_table(_records(server, root)), name="secrets").export(index)
        report = collection.enrich(data_source=descriptor, progress=False)
        assert (report.enriched, report.failed) == (2, 1)
        assert SIGNED  # the hrefs were signed before they were fetched
        texts += [str(report), repr(report)]
        texts += report.errors
        enriched = rd.load(index)
        errors = [e for e in enriched.to_table()[S.ENRICH_ERRORS].to_pylist() if e]
        assert len(errors) == 1 and "record 'r2', band 'B04'" in errors[0][0][1]
        assert f"{server.url}/missing.tif" in errors[0][0][1] and "404" in errors[0][0][1]
        texts += [message for row in errors for _, message in row]

        # a read whose tile requests fail: the error names the record and href, not the token
        server.set_status("scene1_B04.tif", 404)
        epsg, transform, (height, width) = file_info(root / "scene0_B04.tif")
        aoi = pixel_box(transform, 10, 10, width - 10, height - 10)
        reported = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                enriched.get_numpy(aoi, ["B04"], geometry_crs=epsg, data_source=descriptor)
            except Exception as exc:  # noqa: BLE001 - every raised text is scanned
                reported += _exception_texts(exc)
        reported += [str(w.message) for w in caught]
        assert any("scene1_B04.tif" in text for text in reported), reported
        texts += reported
    texts += _log_texts(caplog)
    texts += _scan_index(index)
    _assert_clean(texts, "enrichment, a failed read, the logs or the index files")


def test_presigned_hrefs_in_the_table_are_masked_in_errors(served):
    server, _ = served
    table = record_table([{"id": "p0", "datetime": "2024-05-01T10:00:00",
                           "path": served[1] / "scene0_B04.tif",
                           "assets": {"B04": (server.href(f"missing.tif?X-Amz-Signature={PRESIGNED}"),
                                              0)}}])
    enriched = rd.enrich_table_with_cog_metadata(table)
    message = enriched[S.ENRICH_ERRORS][0].as_py()[0][1]
    assert f"href {server.url}/missing.tif?{REDACTED}" in message
    _assert_clean([message], "enrich_errors")
    # a later read skips the record and says why, without the signature
    from rasteret_dask.read.skipped import missing_records

    skipped = [str(r) for r in missing_records(enriched, "B04")]
    assert skipped == [f"record 'p0', band 'B04', href {server.url}/missing.tif?{REDACTED}: "
                       + message.split(": ", 1)[1]]
    _assert_clean(skipped, "skipped records")
    reader = RangeReader(retries=1)
    with pytest.raises(FetchError) as info:
        reader.fetch([ByteRange(server.href(f"missing.tif?X-Amz-Signature={PRESIGNED}"), 0, 10)])
    _assert_clean(_exception_texts(info.value), "a raised FetchError")


def test_s3_credentials_stay_out_of_errors(s3_server, caplog):
    options = {"s3": {**s3_server.storage_options, "key": KEY, "secret": SECRET}}
    reader = RangeReader(storage_options=options, retries=1)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(FetchError) as info:
            reader.fetch([ByteRange(f"s3://{BUCKET}/missing.tif", 0, 10)])
        ok = reader.fetch([ByteRange(f"s3://{BUCKET}/scene0_B04.tif", 0, 4)])
    assert bytes(ok[0])[:2] in (b"II", b"MM")  # the planted credentials were used
    _assert_clean(_exception_texts(info.value) + [repr(reader)], "an S3 fetch")
    ours = [r for r in caplog.records if r.name.startswith("rasteret_dask")]
    _assert_clean([r.getMessage() for r in ours], "rasteret_dask's logs")
    # botocore's own DEBUG log shows the signed request (access key id, signature); the
    # secret key itself is never in any log record
    assert not any(SECRET in text for text in _log_texts(caplog))


def refuse(href: str) -> str:
    """A signer whose error quotes the signed URL it could not finish."""
    raise ValueError(f"token expired for {href}?sig={SIG}&se=2020-01-01")


def test_signer_failures_and_bad_signed_urls_are_redacted(served):
    server, _ = served
    with pytest.raises(FetchError) as info:
        RangeReader(signer=refuse, retries=1).fetch([ByteRange(server.href("scene0_B04.tif"), 0, 8)])
    assert "cannot sign the href" in str(info.value) and "token expired" in str(info.value)
    _assert_clean([str(info.value), repr(info.value), info.value.reason], "a signer failure")

    def bad_port(href: str) -> str:
        return f"http://{USER}:{PASSWORD}@127.0.0.1:99999/x.tif?sig={SIG}"

    with pytest.raises(FetchError) as info:
        RangeReader(signer=bad_port, retries=1).fetch([ByteRange(server.href("scene0_B04.tif"), 0, 8)])
    _assert_clean([str(info.value), repr(info.value), info.value.reason], "an invalid signed URL")
