"""The ``http`` provider: a live JSON API called at request time (httpx, async, cancelled at the deadline).

URL and query parameters are templates over the request (``{user}``, ``{session}``, ``{tenant}``,
``{query}``, any ``--param``), URL-encoded. Header values name environment variables, exactly as
for the http source, so a secret never sits in ctx.toml, a trace or a log line; URL and parameters
may hold ``${VAR}`` too (an API key in the query string), shown as ``***`` in every URL ctx writes.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, field_validator

from ctx.assemble.provider import BaseProvider, ContextRequest, Deadline, ProviderError, Services, make_block
from ctx.builtins.http_secrets import ENV_REF, Secrets, check_headers, header_guard, resolve_headers
from ctx.builtins.http_source import _dig, check_url
from ctx.errors import SourceError
from ctx.hookspecs import hookimpl
from ctx.models import Block
from ctx.observe.redact import redacted
from ctx.settings import Freshness, ProviderSettings
from ctx.store.catalog import now_iso

_FIELDS = re.compile(r"\{([A-Za-z_]\w*)\}")


def _placeholders(template: str) -> list[str]:
    """The request values a template names; a ``${VAR}`` is the environment's, not a placeholder."""
    return [name for _, name, _, _ in string.Formatter().parse(ENV_REF.sub("", template)) if name]


def _render(template: str, values: Mapping[str, str], env: Secrets, encode: Callable[[str], str]) -> str:
    """``{name}`` from the request and ``${VAR}`` from the environment, each encoded by ``encode``.

    The pieces between ``${VAR}``s are formatted on their own, so a secret holding ``{`` is never a template.
    """
    encoded = {k: encode(v) for k, v in values.items()}
    # ENV_REF.split gives literal, variable name, literal, ... : the odd pieces name variables.
    pieces = ENV_REF.split(template)
    return "".join(encode(env.get(piece)) if i % 2 else piece.format_map(encoded) for i, piece in enumerate(pieces))


class HttpProviderSettings(ProviderSettings):
    kind: Literal["http"] = "http"
    freshness: Freshness = Freshness.realtime
    url: str = Field(description="may hold {user}, {session}, {tenant}, {query} or any --param name")
    params: dict[str, str] = Field(default_factory=dict, description="query parameters, templates as url")
    headers: dict[str, str] = Field(default_factory=dict, description="values name environment variables")
    records_path: str = Field(default="", description="dotted path to the list of items (default: the body)")
    key_field: str | None = None
    title_field: str | None = None
    text_fields: list[str] = Field(default_factory=list, description="default: the whole item as JSON")
    max_items: int = Field(default=20, ge=1, le=1000)
    title: str = "api"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(_FIELDS.sub("x", ENV_REF.sub("x", value)))
        _placeholders(value)  # raises ValueError on a broken template
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)


class HttpProvider(BaseProvider):
    settings: HttpProviderSettings

    def __init__(self, name: str, settings: ProviderSettings, services: Services) -> None:
        super().__init__(name, settings, services)
        self._client: httpx.AsyncClient | None = None

    def needs(self) -> tuple[str, ...]:
        s = self.settings
        return tuple(dict.fromkeys(n for t in (s.url, *s.params.values()) for n in _placeholders(t)))

    def key(self, request: ContextRequest) -> tuple[Any, ...]:
        return (*((n, request.value(n)) for n in self.needs()), request.tenant)

    async def fetch(self, request: ContextRequest, deadline: Deadline) -> list[Block]:
        s = self.settings
        values = {n: request.value(n) or "" for n in self.needs()}
        env = Secrets(self.services.env, f"provider {self.name!r}")
        try:
            url = _render(s.url, values, env, lambda v: quote(v, safe=""))
            params = {k: _render(v, values, env, str) for k, v in s.params.items()}
            env.names.update(k for k, v in s.params.items() if ENV_REF.search(v))
            headers = resolve_headers(s, env)
        except SourceError as exc:
            raise ProviderError(str(exc)) from None
        client = self._http()
        try:
            with redacted(env.values, env.names):
                response = await client.get(url, params=params, headers=headers,
                                            timeout=max(deadline.remaining(), 0.001))
        except httpx.HTTPError as exc:
            raise ProviderError(f"GET {env.shown(httpx.URL(url))} failed: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise ProviderError(f"GET {env.shown(response.url)} returned HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(f"GET {env.shown(response.url)} did not return JSON") from None
        found, items = _dig(body, s.records_path)
        if not found:
            raise ProviderError(f"no {s.records_path!r} in the response of {env.shown(response.url)}")
        stamp = now_iso()
        source_url = env.shown(response.url)
        blocks = []
        for n, item in enumerate(items if isinstance(items, list) else [items], 1):
            if n > s.max_items:
                break
            blocks.append(make_block(self.name, self._key(item, source_url, n), self._title(item), self._text(item),
                                     score=1.0 / n, as_of=stamp, tenant=request.tenant))
        return blocks

    def prepare(self) -> None:
        self._http()  # building the client (TLS context, pools) takes tens of ms: not inside a deadline

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Headers leave only for the configured origin; a templated host gets none on any request.
            origin = httpx.URL(_FIELDS.sub("x", ENV_REF.sub("x", self.settings.url)))
            guard = header_guard(origin, set(self.settings.headers))
            self._client = httpx.AsyncClient(follow_redirects=True, event_hooks={"request": [_async(guard)]})
        return self._client

    def _key(self, item: Any, url: str, n: int) -> str:
        if self.settings.key_field and isinstance(item, dict) and item.get(self.settings.key_field) is not None:
            return str(item[self.settings.key_field])
        return f"{url}#{n}"

    def _title(self, item: Any) -> str:
        field = self.settings.title_field
        if field and isinstance(item, dict) and isinstance(item.get(field), str) and item[field].strip():
            return str(item[field])
        return self.settings.title

    def _text(self, item: Any) -> str:
        fields = self.settings.text_fields
        if fields and isinstance(item, dict):
            parts = [str(item[f]) for f in fields if item.get(f) not in (None, "")]
            if parts:
                return "\n\n".join(parts)
        return json.dumps(item, ensure_ascii=False, indent=1, sort_keys=True)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _async(hook: Any) -> Any:
    async def run(request: httpx.Request) -> None:
        hook(request)

    return run


class HttpProviderKind:
    name = "http"
    settings_model = HttpProviderSettings

    def create(self, name: str, settings: ProviderSettings, services: Services) -> HttpProvider:
        return HttpProvider(name, settings, services)


@hookimpl
def register_providers(register: Any) -> None:
    register(HttpProviderKind())
