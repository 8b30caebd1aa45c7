"""Redaction of credentials in every text the package shows, raises or writes (stdlib only).

One set of rules, imported by every layer like ``schema.py``:

- :func:`redact_url` keeps an href's scheme, host and path and masks what may be a credential:
  the query (``?<redacted>``: SAS tokens, presigned signatures), the fragment, and any userinfo
  (``https://***@host``).
- :func:`redact_mapping` masks the values of secret-looking keys (``key``, ``secret``,
  ``token``, ``password``, ``credential``, ``authorization``, ``sas``, ``signature``,
  ``api_key``, ...), case-insensitively and recursively (``headers``, ``client_kwargs``), and
  the URLs in every other value; objects that are not plain data are shown by type only.
- :func:`redact_text` redacts free text that may embed URLs or ``secret=value`` pairs.

Only text forms are redacted: the objects keep their real values (a pickled reader still
carries its credentials to the workers).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "MASK",
    "REDACTED",
    "describe_callable",
    "is_secret_key",
    "redact_mapping",
    "redact_text",
    "redact_url",
]

MASK = "***"
"""Replaces a secret value or a URL's userinfo."""

REDACTED = "<redacted>"
"""Replaces a URL's query or fragment."""

_SECRET_PARTS = ("secret", "token", "passw", "credential", "authoriz", "signature", "apikey",
                 "cookie", "private")
_SECRET_WORDS = frozenset({"key", "sas", "sig", "pwd", "auth", "session"})
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# scheme://authority path ?query #fragment, stopping at whitespace, quotes and brackets
_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^\s/?#'\"<>()\[\]{}]*)"
    r"(?P<path>[^\s?#'\"<>()\[\]{}]*)(?P<query>\?[^\s#'\"()\[\]{}]*)?(?P<fragment>#[^\s'\"()\[\]{}]*)?"
)
# a scheme-less path with a query (``bucket/key.tif?X-Amz-Signature=...``)
_PATH_QUERY = re.compile(r"(?<![\w:/?])(?P<path>[\w.\-~%]+(?:/[\w.\-~%]*)+)\?(?P<query>[^\s#'\"()\[\]{}]+)")
_TRAILING = ".,;:!"
_WORD = r"[\w\-]*"
_SECRET_NAME = rf"{_WORD}(?:secret|token|passw|credential|authoriz|signature|api[_\-]?key|sig|sas){_WORD}"
# name=value (query-like) and 'name': 'value' (a dict repr inside a message)
_ASSIGNMENT = re.compile(rf"(?i)\b(?P<name>{_SECRET_NAME})=(?P<value>[^\s&,;'\"]+)")
_QUOTED = re.compile(
    rf"(?i)(?P<head>(?P<q>['\"])(?P<name>{_SECRET_NAME}|{_WORD}key{_WORD})(?P=q)\s*:\s*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s,}]+)"
)
_BEARER = re.compile(r"\b(?P<scheme>Bearer|bearer|Basic|SharedKey|AWS4-HMAC-SHA256)\s+(?P<value>[^\s,'\"]+)")


def is_secret_key(name: str) -> bool:
    """Whether a mapping key (an option or header name) may hold a credential.

    Matches case-insensitively on parts (``aws_secret_access_key``, ``X-Amz-Security-Token``,
    ``Authorization``) and on whole words (``key``, ``sas``, ``sig``, ``SubscriptionKey``).
    """
    text = str(name)
    lowered = text.lower()
    if any(part in lowered for part in _SECRET_PARTS):
        return True
    words = _WORD_SPLIT.split(_CAMEL.sub("_", text).lower())
    return any(word in _SECRET_WORDS for word in words)


def _authority(authority: str) -> str:
    return f"{MASK}@{authority.rsplit('@', 1)[1]}" if "@" in authority else authority


def redact_url(href: str) -> str:
    """``href`` without what may be a credential: query, fragment and userinfo are masked.

    ``https://user:pw@host/a.tif?sig=x`` becomes ``https://***@host/a.tif?<redacted>``; paths
    without a scheme lose their query the same way; anything else is returned unchanged.

    Parameters
    ----------
    href : str
        A URL or path (other values are converted with ``str``).

    Returns
    -------
    str
        The redacted href (idempotent: redacting twice gives the same text).
    """
    text = str(href)
    if "?" not in text and "#" not in text and "@" not in text:
        return text  # nothing to mask (the common case, kept cheap: plans label every record)
    match = _URL.match(text)
    if match is not None and match.end() == len(text):
        out = match["scheme"] + _authority(match["authority"]) + match["path"]
        if match["query"] is not None and len(match["query"]) > 1:
            out += "?" + REDACTED
        if match["fragment"] is not None and len(match["fragment"]) > 1:
            out += "#" + REDACTED
        return out
    if "://" in text or "?" in text or "#" in text:
        return redact_text(text)
    return text


def _url_in_text(match: re.Match[str]) -> str:
    query, fragment = match["query"] or "", match["fragment"] or ""
    tail = fragment or query
    trailing = ""
    while tail and tail[-1] in _TRAILING:  # sentence punctuation after the URL is kept
        trailing = tail[-1] + trailing
        tail = tail[:-1]
    if fragment:
        fragment = tail
    else:
        query = tail
    out = match["scheme"] + _authority(match["authority"]) + match["path"]
    if len(query) > 1:
        out += "?" + REDACTED
    if len(fragment) > 1:
        out += "#" + REDACTED
    return out + trailing


def _path_query(match: re.Match[str]) -> str:
    query = match["query"]
    stripped = query.rstrip(_TRAILING)
    if stripped == REDACTED or "=" not in stripped:
        return match[0]
    return f"{match['path']}?{REDACTED}{query[len(stripped):]}"


def _quoted(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match['head']}{quote}{MASK}{quote}"


def redact_text(message: Any) -> str:
    """Free text (an exception message, a log line) with its credentials masked.

    URLs are redacted as by :func:`redact_url`; ``secret=value`` pairs, ``'key': 'value'``
    pairs of secret-looking names and ``Bearer``/``Basic`` credentials lose their values.

    Parameters
    ----------
    message : Any
        The text, or any object (converted with ``str``).

    Returns
    -------
    str
        The redacted text (idempotent).
    """
    text = str(message)
    text = _URL.sub(_url_in_text, text)
    text = _PATH_QUERY.sub(_path_query, text)
    text = _ASSIGNMENT.sub(lambda m: f"{m['name']}={MASK}", text)
    text = _QUOTED.sub(_quoted, text)
    return _BEARER.sub(lambda m: f"{m['scheme']} {MASK}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return f"<{type(value).__name__}>"


def redact_mapping(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain-dict copy of ``options`` safe to show: secret-looking keys have masked values.

    Recurses into nested mappings (protocol-keyed storage options, ``client_kwargs``,
    ``headers``) and sequences; strings elsewhere go through :func:`redact_text`; objects that
    are not plain data (sessions, credential providers) are replaced by ``<TypeName>``. The
    input is not modified.

    Parameters
    ----------
    options : Mapping or None
        fsspec storage options, HTTP headers or any nested configuration.

    Returns
    -------
    dict
        The redacted copy (empty for ``None``).
    """
    out: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if is_secret_key(key) and value is not None:
            out[str(key)] = MASK
        else:
            out[str(key)] = _redact_value(value)
    return out


def describe_callable(function: Callable[..., Any] | None) -> str | None:
    """``module.qualname`` of a callable (a signer), never its bound arguments or closure.

    A ``functools.partial`` is named after the function it wraps.
    """
    if function is None:
        return None
    inner = getattr(function, "func", function)
    module = getattr(inner, "__module__", None) or "?"
    name = getattr(inner, "__qualname__", None) or type(inner).__name__
    return f"{module}.{name}"
