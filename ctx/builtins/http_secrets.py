"""Secrets of the http source and provider kinds: ``${VAR}``s read from the environment only inside a fetch,
and kept out of everything shown.

A header value names an environment variable (a token is never pasted into ctx.toml); a URL and query parameters
may hold ``${VAR}`` too (many APIs take their key in the query string). Every value handed out is remembered, so
that a URL shown in a message, a block's provenance or httpx's own log line carries ``***`` in its place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from ctx.errors import SourceError
from ctx.observe.redact import forms, scrub

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def check_headers(value: dict[str, str]) -> dict[str, str]:
    """Header values must name environment variables: a token can never be pasted into ctx.toml."""
    for name, ref in value.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"bad header name {name!r}")
        if not _ENV_NAME.fullmatch(ref) and (not ENV_REF.search(ref) or "${" in ENV_REF.sub("", ref)):
            raise ValueError(
                f"header {name!r} must name an environment variable, e.g. 'LUMEN_API_TOKEN' "
                "or 'Bearer ${LUMEN_API_TOKEN}'"
            )
    return value


class Secrets:
    """The ``${VAR}``s of one fetch, read from the environment: the only place secrets exist, only inside fetch.

    It remembers every value it handed out (in each form it takes in a URL) and the query parameters that
    carry one, so that every URL it shows (``shown``) and every log line of httpx has ``***`` in their place.
    """

    def __init__(self, env: Mapping[str, str], label: str) -> None:
        self.env = env
        self.label = label
        self.values: list[str] = []
        self.names: set[str] = set()

    def get(self, var: str) -> str:
        value = self.env.get(var)
        if not value:
            raise SourceError(f"{self.label}: environment variable {var} is not set")
        self.values.extend(forms(value))
        return value

    def expand(self, template: str, encode: Callable[[str], str] = lambda value: value) -> str:
        return ENV_REF.sub(lambda m: encode(self.get(m.group(1))), template)

    def url(self, template: str) -> str:
        # Percent-encoded: a key holding "/", "?" or "#" stays one piece of the URL.
        return self.expand(template, lambda value: quote(value, safe=""))

    def params(self, templates: Mapping[str, str]) -> dict[str, str]:
        """Query parameters, expanded (httpx encodes them); those that held a ``${VAR}`` are secret by name."""
        self.names.update(name for name, template in templates.items() if ENV_REF.search(template))
        return {name: self.expand(template) for name, template in templates.items()}

    def header(self, var: str) -> str:
        value = self.get(var)
        # httpx would fail on these with an error that carries the value itself.
        if not value.isascii() or "\r" in value or "\n" in value:
            raise SourceError(f"{self.label}: environment variable {var} is not a valid header value")
        return value

    def shown(self, url: httpx.URL) -> str:
        """What a message may show of a URL: no query, no userinfo, no secret value."""
        return scrub(safe_url(url), self.values)


def resolve_headers(settings: Any, env: Secrets) -> dict[str, str]:
    resolved = {}
    for name, ref in settings.headers.items():
        if _ENV_NAME.fullmatch(ref):
            resolved[name] = env.header(ref)
        else:
            resolved[name] = ENV_REF.sub(lambda m: env.header(m.group(1)), ref)
    return resolved


def header_guard(origin: httpx.URL, secret: set[str]) -> Callable[[httpx.Request], None]:
    """Drop the configured headers from any request (redirect or next link) that leaves the origin.

    httpx strips only ``Authorization`` on cross-origin redirects; an ``X-Api-Key`` would leak.
    """

    def guard(request: httpx.Request) -> None:
        url = request.url
        same = url.host == origin.host and (url.scheme, url.port) == (origin.scheme, origin.port)
        upgrade = url.host == origin.host and url.scheme == "https" and origin.scheme == "http"
        if not (same or upgrade):
            for name in secret:
                request.headers.pop(name, None)

    return guard


def safe_url(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}"
