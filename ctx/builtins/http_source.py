"""The ``http`` source kind: records from a paginated JSON API, fetched with httpx and retried with tenacity."""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, ValidationInfo, field_validator
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from ctx.builtins.http_secrets import Secrets, check_headers, header_guard, resolve_headers
from ctx.errors import SourceError
from ctx.hookspecs import hookimpl
from ctx.ingest.source import FetchContext
from ctx.models import Record, Rejected
from ctx.observe.redact import redacted
from ctx.settings import Duration, SourceSettings

# Tests replace this so retries do not really wait; looked up at call time for that reason.
_sleep: Callable[[float], None] = time.sleep

MAX_RETRY_AFTER = 30.0
_RAW_LIMIT = 4096
# Errors where the same request may well succeed a moment later.
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)


def check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


class HttpSettings(SourceSettings):
    """``[sources.NAME]`` with ``kind = "http"``; header values name environment variables, never secrets."""

    kind: Literal["http"] = "http"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    records_path: str = ""
    id_field: str = "id"
    text_fields: list[str] = Field(default=["text"], min_length=1)
    title_field: str | None = None
    metadata_fields: list[str] = Field(default_factory=list)
    pagination: Literal["none", "page", "cursor", "link"] = "none"
    page_param: str = "page"
    first_page: int = 1
    page_size_param: str | None = None
    page_size: int = Field(default=100, gt=0)
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"
    max_pages: int = Field(default=1000, ge=1)
    timeout: Duration = Field(default=10.0, gt=0, description="seconds per request")
    retries: int = Field(default=3, ge=0, le=20)
    backoff: Duration = Field(default=0.5, ge=0, description="base seconds, doubled per retry, plus jitter")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)

    @field_validator("records_path", "cursor_path")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if value and not all(value.split(".")):
            raise ValueError(f"bad dotted path {value!r}")
        return value

    @field_validator("pagination")
    @classmethod
    def _cursor_needs_object(cls, value: str, info: ValidationInfo) -> str:
        # The cursor is read from the response object, so the records cannot be the whole response.
        # A field validator (records_path is declared earlier) so the error names the key.
        if value == "cursor" and not info.data.get("records_path"):
            raise ValueError("cursor pagination needs records_path (the cursor sits beside the records)")
        return value


class HttpSource:
    """Fetches every record of a JSON API, page by page; any incomplete listing raises SourceError."""

    name: ClassVar[str] = "http"
    settings_model: ClassVar[type[SourceSettings]] = HttpSettings

    def fetch(self, settings: SourceSettings, context: FetchContext) -> Iterator[Record | Rejected]:
        if not isinstance(settings, HttpSettings):
            raise TypeError(f"http source needs HttpSettings, got {type(settings).__name__}")
        env = Secrets(context.env, f"http source {context.name!r}")
        headers = resolve_headers(settings, env)
        url, params = env.url(settings.url), env.params(settings.params)
        guard = header_guard(httpx.URL(url), set(headers))
        with redacted(env.values, env.names), httpx.Client(
            timeout=settings.timeout, follow_redirects=True, headers=headers, event_hooks={"request": [guard]}
        ) as client:
            yield from _paginate(client, settings, url, params, env)


@hookimpl
def register_sources(register: Callable[[Any], None]) -> None:
    register(HttpSource())


def _paginate(
    client: httpx.Client, settings: HttpSettings, base: str, base_params: dict[str, str], env: Secrets
) -> Iterator[Record | Rejected]:
    label, shown = env.label, env.shown
    url: str | httpx.URL = base
    params: dict[str, str] | None = dict(base_params)
    cursor: Any = None
    for ordinal in range(1, settings.max_pages + 1):
        if settings.pagination == "page":
            params = {**base_params, settings.page_param: str(settings.first_page + ordinal - 1)}
            if settings.page_size_param:
                params[settings.page_size_param] = str(settings.page_size)
        elif settings.pagination == "cursor" and cursor is not None:
            params = {**base_params, settings.cursor_param: str(cursor)}
        response = _get(client, url, params, settings, env)
        data = _json(response, label, shown)
        items = _records(data, settings.records_path, response, label, shown)
        for index, item in enumerate(items):
            yield _to_record(item, f"page{ordinal}:item{index}", settings)

        if settings.pagination == "none":
            return
        if settings.pagination == "page":
            # Only an empty page ends the listing: a short page may just be the server's own size cap.
            if not items:
                return
        elif settings.pagination == "cursor":
            found, following = _dig(data, settings.cursor_path)
            if not found or following is None or following == "":
                return
            if following == cursor:
                raise SourceError(f"{label}: cursor did not advance at {shown(response.url)}")
            cursor = following
        else:
            link = response.links.get("next", {}).get("url")
            if not link:
                return
            # The next link carries its own query string; the configured params are already in it.
            try:
                url, params = response.url.join(link), None
            except httpx.InvalidURL:
                raise SourceError(f"{label}: bad next link from {shown(response.url)}") from None
    # Stopping early would make a mirror sync delete every record beyond the last page.
    raise SourceError(f"{label}: more than max_pages={settings.max_pages} pages; raise max_pages")


class _RetryableStatus(Exception):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def _get(
    client: httpx.Client,
    url: str | httpx.URL,
    params: dict[str, str] | None,
    settings: HttpSettings,
    env: Secrets,
) -> httpx.Response:
    label = env.label
    attempts = 0
    target = httpx.URL(url)

    def attempt() -> httpx.Response:
        nonlocal attempts
        attempts += 1
        response = client.get(url, params=params)
        if response.status_code == 429 or response.status_code >= 500:
            wait = _retry_after(response) if response.status_code in (429, 503) else None
            raise _RetryableStatus(response.status_code, wait)
        return response

    retrying = Retrying(
        stop=stop_after_attempt(settings.retries + 1),
        wait=_wait(settings.backoff),
        retry=retry_if_exception_type((_RetryableStatus, *_TRANSIENT)),
        sleep=lambda seconds: _sleep(seconds),
        reraise=True,
    )
    # Messages name the status or the error class and a URL without query or userinfo: never a header.
    try:
        response = retrying(attempt)
    except (_RetryableStatus, httpx.HTTPError, httpx.InvalidURL) as exc:
        problem = f"HTTP {exc.status}" if isinstance(exc, _RetryableStatus) else type(exc).__name__
        tries = f"{attempts} attempt" + ("" if attempts == 1 else "s")
        raise SourceError(f"{label}: GET {env.shown(target)} failed after {tries}: {problem}") from None
    if not response.is_success:
        raise SourceError(f"{label}: GET {env.shown(response.url)} returned HTTP {response.status_code}")
    return response


def _wait(backoff: float) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableStatus) and exc.retry_after is not None:
            return exc.retry_after
        # Jitter keeps many syncs that failed together from retrying in lockstep.
        delay = backoff * 2 ** (state.attempt_number - 1) + random.uniform(0, backoff)
        return min(delay, MAX_RETRY_AFTER)

    return wait


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta or HTTP date), capped so a server cannot stall a sync."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _json(response: httpx.Response, label: str, shown: Callable[[httpx.URL], str]) -> Any:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content-type").split(";")[0]
        raise SourceError(f"{label}: response from {shown(response.url)} is not JSON ({kind})") from None


def _records(
    data: Any, path: str, response: httpx.Response, label: str, shown: Callable[[httpx.URL], str]
) -> list[Any]:
    found, items = _dig(data, path)
    where = f"records_path {path!r}" if path else "the response"
    if not found:
        raise SourceError(f"{label}: {where} not found in response from {shown(response.url)}")
    if not isinstance(items, list):
        raise SourceError(
            f"{label}: {where} from {shown(response.url)} is a JSON {_json_type(items)}, not a list"
            + ("" if path else "; set records_path")
        )
    return items


def _dig(data: Any, path: str) -> tuple[bool, Any]:
    """Follow a dotted path through objects (and list indexes); ``""`` is the value itself."""
    if not path:
        return True, data
    if isinstance(data, dict) and path in data:
        return True, data[path]
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False, None
    return True, data


def _to_record(item: Any, position: str, settings: HttpSettings) -> Record | Rejected:
    if not isinstance(item, dict):
        return Rejected(
            key=position, reason=f"expected a JSON object, got {_json_type(item)}", raw=_raw(item)
        )
    found, ident = _dig(item, settings.id_field)
    if not found or ident is None:
        return Rejected(key=position, reason=f"missing field {settings.id_field!r}", raw=_raw(item))
    if isinstance(ident, bool) or not isinstance(ident, str | int | float) or ident == "":
        return Rejected(
            key=position,
            reason=f"field {settings.id_field!r} is not a usable id: {_json_type(ident)}",
            raw=_raw(item),
        )
    parts = [value for value in (_dig(item, f)[1] for f in settings.text_fields) if value is not None]
    if not parts:
        return Rejected(key=str(ident), reason=f"missing field {settings.text_fields[0]!r}", raw=_raw(item))
    text = "\n\n".join(part for part in map(_as_text, parts) if part)
    title = _dig(item, settings.title_field)[1] if settings.title_field else None
    metadata = {}
    for name in [*settings.metadata_fields, *([settings.tenant_field] if settings.tenant_field else [])]:
        found, value = _dig(item, name)
        if found:
            metadata[name] = value
    return Record(
        key=str(ident),
        text=text,
        title=None if title is None else _as_text(title),
        metadata=metadata,
        format="text",
    )


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _raw(item: Any) -> str:
    return json.dumps(item, ensure_ascii=False, default=str)[:_RAW_LIMIT]


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
