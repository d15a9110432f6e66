"""The http source kind against a real loopback HTTP server started by each test."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from ctx.builtins import http_source
from ctx.builtins.http_source import HttpSettings, HttpSource
from ctx.errors import SourceError
from ctx.ingest.source import FetchContext
from ctx.models import Record, Rejected
from ctx.observe.redact import forms
from tests.helpers import Loopback, Request, serving
from tests.helpers import Reply as Answer

SECRET = "s3cret"


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


Reply = tuple[int, dict[str, str], bytes | str | Any]


def _seen(request: Request) -> Seen:
    return Seen(path=request.path, query=request.query, headers={k.lower(): v for k, v in request.headers.items()})


class Server(Loopback):
    """A loopback server whose replies come from ``respond(seen) -> (status, headers, body)``."""

    def __init__(self, respond: Callable[[Seen], Reply]) -> None:
        self.respond = respond
        super().__init__(lambda request: _reply(*self.respond(_seen(request))))

    @property
    def seen(self) -> list[Seen]:
        return [_seen(r) for r in self.requests]


def _reply(status: int, headers: dict[str, str], body: bytes | str | Any) -> Answer:
    return Answer(status, body, headers)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[Seen], Reply]], Server]]:
    yield from serving(Server)


@pytest.fixture(autouse=True)
def _no_proxy_no_wait(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    # httpx honours proxy variables; loopback requests must never go through one.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    delays: list[float] = []
    monkeypatch.setattr(http_source, "_sleep", delays.append)
    return delays


def settings(url: str, **fields: Any) -> HttpSettings:
    return HttpSettings.model_validate({"kind": "http", "url": url, **fields})


def fetch(config: HttpSettings, env: dict[str, str] | None = None) -> list[Record | Rejected]:
    return list(HttpSource().fetch(config, FetchContext(name="lumen", env=env or {})))


def test_plain_list(serve: Any) -> None:
    server = serve(lambda s: (200, {}, [{"id": 1, "text": "one"}, {"id": "b", "text": "two", "title": "T"}]))
    out = fetch(settings(server.url + "/items", title_field="title"))
    assert out == [Record(key="1", text="one", title=None), Record(key="b", text="two", title="T")]
    assert len(server.seen) == 1


def test_records_path_fields_and_metadata(serve: Any) -> None:
    body = {"data": {"items": [{"id": 7, "q": "Why?", "a": "Because.", "tags": ["x"], "org": "acme"}]}}
    server = serve(lambda s: (200, {}, body))
    config = settings(
        server.url,
        records_path="data.items",
        text_fields=["q", "a"],
        metadata_fields=["tags"],
        tenant_field="org",
        params={"lang": "en"},
    )
    assert fetch(config) == [
        Record(key="7", text="Why?\n\nBecause.", metadata={"tags": ["x"], "org": "acme"}, format="text")
    ]
    assert server.seen[0].query == {"lang": "en"}


def test_page_pagination_until_empty_page(serve: Any) -> None:
    pages = {"1": [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}], "2": [{"id": 3, "text": "c"}], "3": []}
    server = serve(lambda s: (200, {}, pages[s.query["p"]]))
    config = settings(server.url, pagination="page", page_param="p", page_size_param="per_page", page_size=2)
    assert [r.key for r in fetch(config)] == ["1", "2", "3"]
    assert [s.query for s in server.seen] == [{"p": str(n), "per_page": "2"} for n in (1, 2, 3)]


def test_max_pages_exceeded_is_an_error_not_a_short_listing(serve: Any) -> None:
    server = serve(lambda s: (200, {}, [{"id": s.query["page"], "text": "x"}]))
    with pytest.raises(SourceError, match="max_pages=3"):
        fetch(settings(server.url, pagination="page", max_pages=3))
    assert len(server.seen) == 3


def test_cursor_pagination(serve: Any) -> None:
    chain = {None: ("c1", 1), "c1": ("c2", 2), "c2": (None, 3)}

    def respond(seen: Seen) -> Reply:
        following, ident = chain[seen.query.get("after")]
        return 200, {}, {"items": [{"id": ident, "text": "t"}], "meta": {"next": following}}

    server = serve(respond)
    config = settings(
        server.url, pagination="cursor", records_path="items", cursor_param="after", cursor_path="meta.next"
    )
    assert [r.key for r in fetch(config)] == ["1", "2", "3"]
    assert [s.query.get("after") for s in server.seen] == [None, "c1", "c2"]


def test_cursor_that_does_not_advance_fails(serve: Any) -> None:
    server = serve(lambda s: (200, {}, {"items": [], "next_cursor": "same"}))
    with pytest.raises(SourceError, match="did not advance"):
        fetch(settings(server.url, pagination="cursor", records_path="items"))


def test_link_header_pagination(serve: Any) -> None:
    def respond(seen: Seen) -> Reply:
        page = int(seen.query.get("page", "1"))
        headers = {"Link": f'</items?page={page + 1}&k=v>; rel="next", </items?page=1>; rel="first"'}
        return 200, headers if page < 3 else {}, [{"id": page, "text": "t"}]

    server = serve(respond)
    assert [r.key for r in fetch(settings(server.url + "/items", pagination="link", params={"k": "v"}))] == [
        "1",
        "2",
        "3",
    ]
    assert [s.query for s in server.seen] == [{"k": "v"}, {"page": "2", "k": "v"}, {"page": "3", "k": "v"}]


def test_headers_come_from_the_env_mapping(serve: Any) -> None:
    def respond(seen: Seen) -> Reply:
        assert seen.headers.get("authorization") == f"Bearer {SECRET}"
        assert seen.headers.get("x-api-key") == "k-123"
        return 200, {}, [{"id": 1, "text": "ok"}]

    server = serve(respond)
    config = settings(
        server.url, headers={"Authorization": "Bearer ${LUMEN_API_TOKEN}", "X-Api-Key": "LUMEN_KEY"}
    )
    out = fetch(config, env={"LUMEN_API_TOKEN": SECRET, "LUMEN_KEY": "k-123"})
    assert out == [Record(key="1", text="ok")]
    assert SECRET not in repr(config) and SECRET not in config.model_dump_json()


def test_missing_env_var_is_a_source_error(serve: Any) -> None:
    server = serve(lambda s: (200, {}, []))
    config = settings(server.url, headers={"Authorization": "LUMEN_API_TOKEN"})
    with pytest.raises(SourceError) as info:
        fetch(config, env={})
    assert str(info.value) == "http source 'lumen': environment variable LUMEN_API_TOKEN is not set"
    assert server.seen == []


def test_503_twice_then_200_succeeds(serve: Any, _no_proxy_no_wait: list[float]) -> None:
    def respond(seen: Seen) -> Reply:
        return (503, {}, "busy") if len(server.seen) <= 2 else (200, {}, [{"id": 1, "text": "t"}])

    server = serve(respond)
    assert [r.key for r in fetch(settings(server.url, backoff=0.5))] == ["1"]
    assert len(server.seen) == 3
    # Exponential from 0.5 s with up to 0.5 s of jitter.
    assert 0.5 <= _no_proxy_no_wait[0] <= 1.0 and 1.0 <= _no_proxy_no_wait[1] <= 1.5


def test_429_retry_after_is_honoured_and_capped(serve: Any, _no_proxy_no_wait: list[float]) -> None:
    waits = iter(["2", "120"])

    def respond(seen: Seen) -> Reply:
        if len(server.seen) <= 2:
            return 429, {"Retry-After": next(waits)}, "slow down"
        return 200, {}, [{"id": 1, "text": "t"}]

    server = serve(respond)
    assert len(fetch(settings(server.url))) == 1
    assert _no_proxy_no_wait == [2.0, 30.0]


def test_persistent_500_fails_without_leaking_secrets(serve: Any) -> None:
    server = serve(lambda s: (500, {}, "boom"))
    config = settings(
        server.url + "/v1/items?api_key=zzz",
        headers={"Authorization": "Bearer ${LUMEN_API_TOKEN}"},
        params={"token": "qqq"},
        retries=2,
    )
    with pytest.raises(SourceError) as info:
        fetch(config, env={"LUMEN_API_TOKEN": SECRET})
    message = str(info.value)
    assert len(server.seen) == 3
    assert "500" in message and f"{server.url}/v1/items" in message and "\n" not in message
    for leak in (SECRET, "zzz", "qqq", "?"):
        assert leak not in message
    assert SECRET not in repr(config) and SECRET not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_other_4xx_is_not_retried(serve: Any) -> None:
    server = serve(lambda s: (404, {}, "nope"))
    with pytest.raises(SourceError, match="HTTP 404"):
        fetch(settings(server.url))
    assert len(server.seen) == 1


def test_connection_errors_are_retried_then_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceError, match=r"after 2 attempts: ConnectError"):
        fetch(settings(f"http://127.0.0.1:{port}/x", retries=1))


def test_non_json_body_is_a_source_error(serve: Any) -> None:
    server = serve(lambda s: (200, {"Content-Type": "text/html"}, "<html>login</html>"))
    with pytest.raises(SourceError, match=r"not JSON \(text/html\)"):
        fetch(settings(server.url))


@pytest.mark.parametrize(
    ("body", "path", "problem"),
    [
        ({"data": {"items": {"id": 1}}}, "data.items", "is a JSON object, not a list"),
        ({"data": {}}, "data.items", "not found"),
        ({"items": []}, "", "set records_path"),
    ],
)
def test_records_path_must_reach_a_list(serve: Any, body: Any, path: str, problem: str) -> None:
    server = serve(lambda s: (200, {}, body))
    with pytest.raises(SourceError, match=problem):
        fetch(settings(server.url, records_path=path))


def test_bad_items_become_rejected(serve: Any) -> None:
    items = [
        {"id": 1, "text": "fine"},
        "not an object",
        {"text": "no id"},
        {"id": 4},
        {"id": 5, "text": ""},
        {"id": {"nested": 1}, "text": "x"},
    ]
    server = serve(lambda s: (200, {}, items))
    out = fetch(settings(server.url))
    assert out[0] == Record(key="1", text="fine")
    assert isinstance(out[1], Rejected) and out[1].key == "page1:item1" and "got string" in out[1].reason
    assert out[2] == Rejected(key="page1:item2", reason="missing field 'id'", raw='{"text": "no id"}')
    assert isinstance(out[3], Rejected) and out[3].reason == "missing field 'text'"
    assert out[4] == Record(key="5", text="")
    assert isinstance(out[5], Rejected) and "not a usable id" in out[5].reason


def test_configured_headers_do_not_follow_a_redirect_to_another_host(serve: Any) -> None:
    other = serve(lambda s: (200, {}, [{"id": 1, "text": s.headers.get("x-api-key", "stripped")}]))
    first = serve(lambda s: (302, {"Location": other.url.replace("127.0.0.1", "localhost") + "/moved"}, ""))
    out = fetch(settings(first.url, headers={"X-Api-Key": "KEY"}), env={"KEY": SECRET})
    assert first.seen[0].headers["x-api-key"] == SECRET
    assert out == [Record(key="1", text="stripped")]


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        HttpSettings.model_validate({"kind": "http", "url": "ftp://x"})
    with pytest.raises(ValidationError, match="http:// or https://"):
        HttpSettings.model_validate({"kind": "http", "url": "https://"})
    with pytest.raises(ValidationError, match=r"extra_forbidden|Extra inputs"):
        HttpSettings.model_validate({"kind": "http", "url": "https://x", "pagnation": "page"})
    with pytest.raises(ValidationError, match="must name an environment variable"):
        HttpSettings.model_validate(
            {"kind": "http", "url": "https://x", "headers": {"Authorization": "Bearer abc"}}
        )
    with pytest.raises(ValidationError, match="needs records_path"):
        HttpSettings.model_validate({"kind": "http", "url": "https://x", "pagination": "cursor"})
    ok = HttpSettings.model_validate({"kind": "http", "url": "https://x", "timeout": "250ms", "backoff": 1})
    assert ok.timeout == 0.25 and ok.backoff == 1.0


def test_registers_through_the_hook() -> None:
    found: list[Any] = []
    http_source.register_sources(found.append)
    assert [(k.name, k.settings_model) for k in found] == [("http", HttpSettings)]


def test_env_value_that_cannot_be_a_header_is_refused_without_echoing_it(serve: Any) -> None:
    server = serve(lambda s: (200, {}, []))
    config = settings(server.url, headers={"Authorization": "TOKEN"})
    with pytest.raises(SourceError) as info:
        fetch(config, env={"TOKEN": "abc\r\nX-Evil: 1"})
    assert "not a valid header value" in str(info.value) and "Evil" not in str(info.value)
    assert server.seen == []


KEY = "k3y/with+odd chars&9f2e"  # "/", "+", " " and "&" take a different form in a path and in a query


def test_env_vars_expand_in_url_and_params_and_never_show(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = serve(lambda s: (200, {}, [{"id": 1, "text": "one"}]))
    config = settings(server.url + "/v1/${LUMEN_KEY}/items", params={"api_key": "${LUMEN_KEY}", "plain": "x"})
    assert fetch(config, env={"LUMEN_KEY": KEY}) == [Record(key="1", text="one")]
    assert server.requests[0].path == "/v1/k3y%2Fwith%2Bodd%20chars%269f2e/items"
    assert server.seen[0].query == {"api_key": KEY, "plain": "x"}
    # httpx's own request line is logged, with the key blanked in the path and the query.
    assert "HTTP Request: GET" in caplog.text and "/v1/***/items?api_key=***&plain=x" in caplog.text
    assert not _leaks(caplog)


def _leaks(caplog: pytest.LogCaptureFixture) -> list[str]:
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    return [form for form in forms(KEY) if form in text]


@pytest.mark.parametrize("upstream", ["500", "refused"])
def test_a_failing_upstream_never_shows_the_key(serve: Any, upstream: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = serve(lambda s: (500, {}, "oops"))
    url = server.url
    if upstream == "refused":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there once closed
    config = settings(url + "/v1/${LUMEN_KEY}/items", params={"api_key": "${LUMEN_KEY}"}, retries=1)
    with pytest.raises(SourceError) as info:
        fetch(config, env={"LUMEN_KEY": KEY})
    message = str(info.value)
    assert ("HTTP 500" if upstream == "500" else "ConnectError") in message
    assert "/v1/***/items" in message and not any(form in message for form in forms(KEY))
    assert not _leaks(caplog)


def test_an_unset_variable_in_the_url_or_params_is_named_and_nothing_is_sent(serve: Any) -> None:
    server = serve(lambda s: (200, {}, []))
    for config in (settings(server.url + "/${LUMEN_KEY}"), settings(server.url, params={"k": "${LUMEN_KEY}"})):
        with pytest.raises(SourceError) as info:
            fetch(config)
        assert str(info.value) == "http source 'lumen': environment variable LUMEN_KEY is not set"
    assert server.seen == []
