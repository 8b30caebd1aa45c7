"""URL signers applied at read time: Planetary Computer SAS tokens for Azure Blob hrefs.

A token is requested per (storage account, container) from the SAS endpoint, cached until
shortly before it expires, and appended as the URL's query. Tokens never reach the index.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from datetime import datetime
from urllib.parse import urlsplit

from ..redact import redact_text, redact_url

__all__ = ["planetary_computer_signer", "SAS_ENDPOINT_ENV", "clear_token_cache"]

SAS_ENDPOINT_ENV = "RASTERET_DASK_PC_SAS_URL"
DEFAULT_SAS_ENDPOINT = "https://planetarycomputer.microsoft.com/api/sas/v1/token"
_BLOB_SUFFIX = ".blob.core.windows.net"
_REFRESH_MARGIN = 300.0  # seconds before expiry at which a token is renewed

_lock = threading.Lock()
_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}


def clear_token_cache() -> None:
    """Forget every cached token (tests; a rotated subscription key)."""
    with _lock:
        _tokens.clear()


def _expiry(document: dict) -> float:
    raw = document.get("msft:expiry")
    if not raw:
        return time.time() + 3600.0
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()


def _token(endpoint: str, account: str, container: str) -> str:
    key = (endpoint, account, container)
    with _lock:
        cached = _tokens.get(key)
        if cached is not None and cached[1] - _REFRESH_MARGIN > time.time():
            return cached[0]
    request = urllib.request.Request(f"{endpoint.rstrip('/')}/{account}/{container}")
    subscription = os.environ.get("PC_SDK_SUBSCRIPTION_KEY")
    if subscription:
        request.add_header("Ocp-Apim-Subscription-Key", subscription)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            document = json.load(response)
    except (OSError, ValueError) as exc:
        raise OSError(f"could not get a SAS token for {account}/{container} from "
                      f"{redact_url(endpoint)}: {redact_text(exc)}") from exc
    token = document.get("token") if isinstance(document, dict) else None
    if not isinstance(token, str) or not token:
        raise OSError(f"the SAS endpoint {redact_url(endpoint)} answered no token for "
                      f"{account}/{container}")
    with _lock:
        _tokens[key] = (token, _expiry(document))
    return token


def planetary_computer_signer(href: str) -> str:
    """Append a Planetary Computer SAS token to an Azure Blob ``href`` (others pass through)."""
    parts = urlsplit(href)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return href
    if not parts.hostname.endswith(_BLOB_SUFFIX) or "sig=" in parts.query:
        return href
    account = parts.hostname[: -len(_BLOB_SUFFIX)]
    container = parts.path.lstrip("/").split("/", 1)[0]
    endpoint = os.environ.get(SAS_ENDPOINT_ENV, DEFAULT_SAS_ENDPOINT)
    token = _token(endpoint, account, container)
    return f"{href}{'&' if parts.query else '?'}{token}"
