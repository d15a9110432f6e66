"""Every built-in context provider, and recipes, through the real CLI (`ctx assemble --recipe ... --json`).

Each test writes its own ctx.toml (no embedding model: ``embedder = "none"``) and runs the CLI in-process;
the API-parity test at the end asks a real daemon subprocess the same request over its socket.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Loopback, Reply, Request

BASE = '[embedding]\nembedder = "none"\n\n'


def assemble(ctx_cli: Callable[..., Any], *args: str) -> dict[str, Any]:
    """`ctx assemble ARGS --json` that must succeed; the query comes first."""
    return ctx_cli("assemble", *args, "--json").json()  # type: ignore[no-any-return]


def one_line_error(res: Any, code: int = 2) -> str:
    """A failed command: the exit code, clean stdout, and exactly one line on stderr (no traceback)."""
    assert res.exit_code == code, res
    assert res.stdout == "", res.stdout
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0], lines[0]
    return lines[0]


def config_error(res: Any, key: str) -> str:
    line = one_line_error(res, 2)
    assert line.startswith(f"error: config error: {key}: "), line
    return line


def _doc_keys(out: dict[str, Any]) -> list[str]:
    return [b["document"] for b in out["blocks"]]


# --- static -----------------------------------------------------------------------------------------

STATIC = """
[providers.policy]
kind = "static"
paths = ["policy/*.md"]

[recipes.rules.providers.policy]
criticality = "critical"
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "refunds.md").write_text("# Refund policy\n\nRefunds are issued within 14 days of a duplicate charge.\n")
    (folder / "tone.md").write_text("# Tone\n\nAnswer briefly and kindly.\n")
    return folder


def test_static_blocks_carry_provider_as_of_and_provenance(policy_dir: Path, write_config, ctx_cli) -> None:
    write_config(BASE + STATIC)
    out = assemble(ctx_cli, "why was I charged twice?", "--recipe", "rules")
    assert out["recipe"] == "rules"
    assert sorted(_doc_keys(out)) == ["policy/refunds.md", "policy/tone.md"]
    for block in out["blocks"]:
        assert block["provider"] == "policy" and block["source"] == "policy"
        assert block["criticality"] == "critical"
        assert block["version"] == 0 and block["as_of"]
    refunds = next(b for b in out["blocks"] if b["document"] == "policy/refunds.md")
    assert refunds["title"] == "Refund policy"
    assert "Refunds are issued within 14 days" in refunds["text"]
    # as_of is the file's modification time.
    from datetime import UTC, datetime

    mtime = datetime.fromtimestamp((policy_dir / "refunds.md").stat().st_mtime, UTC).isoformat(timespec="seconds")
    assert refunds["as_of"] == mtime
    assert f"[source: policy · policy/refunds.md · as of {mtime}]" in out["context"]
    assert out["providers"]["policy"]["status"] == "ok" and out["providers"]["policy"]["kind"] == "static"


def test_static_edit_changes_the_next_result(policy_dir: Path, write_config, ctx_cli) -> None:
    write_config(BASE + STATIC)
    first = assemble(ctx_cli, "refund policy", "--recipe", "rules")
    again = assemble(ctx_cli, "refund policy", "--recipe", "rules")
    assert again["context"] == first["context"]  # unchanged files: the same result (from the cache)

    path = policy_dir / "refunds.md"
    old = path.stat().st_mtime
    path.write_text("# Refund policy\n\nRefunds now take up to 30 days, and only to the original card.\n")
    os.utime(path, (old + 10, old + 10))  # a visibly later mtime, whatever the clock's granularity
    edited = assemble(ctx_cli, "refund policy", "--recipe", "rules")
    assert "Refunds now take up to 30 days" in edited["context"]
    assert "within 14 days" not in edited["context"]
    refunds = next(b for b in edited["blocks"] if b["document"] == "policy/refunds.md")
    assert refunds["as_of"] != next(b for b in first["blocks"] if b["document"] == "policy/refunds.md")["as_of"]
    # The untouched file is still there, unchanged.
    assert "Answer briefly and kindly." in edited["context"]


# --- record -----------------------------------------------------------------------------------------

CUSTOMERS = [("u1", "Ada Lovelace", "pro"), ("u2", "Grace Hopper", "free"), ("u3", "Alan Turing", "pro")]


@pytest.fixture
def crm(tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table customers (id text primary key, name text not null, plan text not null, "
                     "notes text)")
        conn.executemany("insert into customers (id, name, plan, notes) values (?, ?, ?, 'internal')", CUSTOMERS)
    conn.close()
    return path


def _record(query: str = "select id, name, plan from customers where id = :user") -> str:
    return f"""
[providers.profile]
kind = "record"
database = "crm.db"
query = "{query}"
key_column = "id"
title = "customer"

[providers.by_plan]
kind = "record"
database = "crm.db"
query = "select id, name from customers where plan = :plan order by id"
key_column = "id"
title = "customer on the plan"

[recipes.support.providers.profile]
criticality = "critical"

[recipes.lenient.providers.profile]
criticality = "important"

[recipes.plans.providers.by_plan]
criticality = "important"
"""


def test_record_returns_the_users_row(crm: Path, write_config, ctx_cli) -> None:
    write_config(BASE + _record())
    out = assemble(ctx_cli, "what plan am I on?", "--recipe", "support", "--user", "u1")
    assert len(out["blocks"]) == 1
    block = out["blocks"][0]
    assert block["provider"] == "profile" and block["document"] == "u1" and block["title"] == "customer"
    assert block["text"].splitlines() == ["id: u1", "name: Ada Lovelace", "plan: pro"]
    assert block["as_of"] and block["criticality"] == "critical"
    assert "name: Ada Lovelace" in out["context"]
    assert "Grace Hopper" not in out["context"] and "internal" not in out["context"]  # one row, chosen columns
    assert out["providers"]["profile"]["status"] == "ok" and out["providers"]["profile"]["kind"] == "record"
    assert out["request"]["user"] == "u1"


def test_record_without_user_critical_is_a_one_line_error(crm: Path, write_config, ctx_cli) -> None:
    write_config(BASE + _record())
    line = one_line_error(ctx_cli("assemble", "what plan am I on?", "--recipe", "support", ok=False), 2)
    assert "--user" in line and "profile" in line


def test_record_without_user_important_is_not_applicable(crm: Path, write_config, ctx_cli) -> None:
    write_config(BASE + _record())
    out = assemble(ctx_cli, "what plan am I on?", "--recipe", "lenient")
    assert out["providers"]["profile"]["status"] == "not_applicable"
    assert "user" in out["providers"]["profile"]["error"]
    assert out["blocks"] == []


@pytest.mark.parametrize("query", [
    "delete from customers where id = :user",
    "update customers set plan = 'free' where id = :user",
    "insert into customers (id, name, plan) values (:user, 'x', 'free')",
    "drop table customers",
    "with t as (select 1) delete from customers where id = :user",
], ids=["delete", "update", "insert", "drop", "with-delete"])
def test_record_write_statement_is_a_config_error(query: str, crm: Path, write_config, ctx_cli) -> None:
    write_config(BASE + _record(query))
    config_error(ctx_cli("assemble", "q", "--recipe", "support", "--user", "u1", ok=False), "providers.profile.query")
    with sqlite3.connect(crm) as conn:  # nothing ran
        assert conn.execute("select count(*) from customers").fetchone()[0] == len(CUSTOMERS)
    conn.close()


@pytest.mark.parametrize("user", ["u1' or '1'='1", "u1' --", "' or 1=1 --", "u1; drop table customers"])
def test_record_user_is_bound_never_spliced(user: str, crm: Path, write_config, ctx_cli) -> None:
    write_config(BASE + _record())
    out = assemble(ctx_cli, "what plan am I on?", "--recipe", "support", "--user", user)
    assert out["providers"]["profile"]["status"] == "ok"
    assert out["blocks"] == [] and out["context"] == ""
    with sqlite3.connect(crm) as conn:
        assert conn.execute("select count(*) from customers").fetchone()[0] == len(CUSTOMERS)
    conn.close()


def test_record_named_param(crm: Path, write_config, ctx_cli) -> None:
    write_config(BASE + _record())
    pro = assemble(ctx_cli, "who is on pro?", "--recipe", "plans", "--param", "plan=pro")
    assert _doc_keys(pro) == ["u1", "u3"]
    assert "name: Ada Lovelace" in pro["context"] and "name: Alan Turing" in pro["context"]
    assert "Grace Hopper" not in pro["context"]
    assert pro["request"]["params"] == {"plan": "pro"}
    free = assemble(ctx_cli, "who is on free?", "--recipe", "plans", "--param", "plan=free")
    assert _doc_keys(free) == ["u2"]
    missing = assemble(ctx_cli, "who?", "--recipe", "plans")
    assert missing["providers"]["by_plan"]["status"] == "not_applicable"
    line = one_line_error(ctx_cli("assemble", "who?", "--recipe", "plans", "--param", "plan", ok=False), 2)
    assert "NAME=VALUE" in line


# --- session ----------------------------------------------------------------------------------------

SESSION = """
[sources.sessions]
kind = "events"
metadata_fields = ["user_id", "session_id"]

[providers.history]
kind = "session"
source = "sessions"

[recipes.chat.providers.history]
criticality = "important"
"""


@pytest.fixture
def push(tmp_path: Path, ctx_cli) -> Callable[..., None]:
    """``push(event, ...)``: one `ctx push sessions FILE` of these events (one job, so one arrival time)."""
    counter = iter(range(10_000))

    def run(*events: dict[str, Any]) -> None:
        path = tmp_path / f"events-{next(counter)}.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        result = ctx_cli("push", "sessions", str(path), "--json").json()
        assert result["accepted"] == len(events)

    return run


def _event(ident: str, user: str, text: str, session: str = "s1", **extra: str) -> dict[str, Any]:
    return {"id": ident, "text": text, "user_id": user, "session_id": session, **extra}


def test_session_returns_only_the_users_events_newest_first(write_config, ctx_cli, push) -> None:
    write_config(BASE + SESSION)
    push(_event("e1", "u1", "Ada opened the billing page."))
    push(_event("x1", "u2", "Grace asked about SAML."))
    push(_event("e2", "u1", "Ada clicked on the duplicate charge."))
    push(_event("e3", "u1", "Ada asked for a refund.", session="s2"))

    out = assemble(ctx_cli, "what did I just do?", "--recipe", "chat", "--user", "u1")
    assert _doc_keys(out) == ["e3", "e2", "e1"]
    assert all(b["provider"] == "history" and b["as_of"] for b in out["blocks"])
    scores = [b["score"] for b in out["blocks"]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3
    context = out["context"]
    assert "Grace" not in context
    positions = [context.index(t) for t in ("asked for a refund", "clicked on the duplicate", "opened the billing")]
    assert positions == sorted(positions), "rendered newest first"

    one_session = assemble(ctx_cli, "what did I just do?", "--recipe", "chat", "--user", "u1", "--session", "s2")
    assert _doc_keys(one_session) == ["e3"]
    other = assemble(ctx_cli, "what did I just do?", "--recipe", "chat", "--user", "u2")
    assert _doc_keys(other) == ["x1"]
    nobody = assemble(ctx_cli, "what did I just do?", "--recipe", "chat")
    assert nobody["providers"]["history"]["status"] == "not_applicable" and nobody["blocks"] == []


def test_session_small_budget_keeps_the_newest(write_config, ctx_cli, push) -> None:
    write_config(BASE + SESSION)
    for i in range(1, 7):
        push(_event(f"e{i}", "u1", f"Event number {i}: Ada looked at invoice {i * 111} and its line items."))
    newest_first = [f"e{i}" for i in range(6, 0, -1)]
    full = assemble(ctx_cli, "recent activity", "--recipe", "chat", "--user", "u1", "--budget", "4000")
    assert _doc_keys(full) == newest_first and not full["degradations"]

    partial_seen = False
    for fraction in (0.25, 0.5, 0.75):
        budget = int(full["tokens"] * fraction)
        out = assemble(ctx_cli, "recent activity", "--recipe", "chat", "--user", "u1", "--budget", str(budget))
        assert out["tokens"] <= budget
        kept = _doc_keys(out)
        assert kept == newest_first[: len(kept)], f"budget {budget}: kept {kept}, not the newest"
        dropped = [d for d in out["degradations"] if d["kind"] == "dropped"]
        assert len(dropped) == len(newest_first) - len(kept)
        assert all(d["source"] == "history" for d in dropped)
        partial_seen |= 0 < len(kept) < len(newest_first)
    assert partial_seen, "some budget must keep only part of the history"


def test_session_share_keeps_the_newest_beside_a_long_policy(tmp_path: Path, write_config, ctx_cli, push) -> None:
    # A critical policy far longer than the budget must not take the history's share of it.
    (tmp_path / "policy").mkdir()
    sentences = " ".join(f"Rule {i}: refunds over {i * 10} dollars need a second approval." for i in range(300))
    (tmp_path / "policy" / "long.md").write_text(f"# Long policy\n\n{sentences}\n")
    write_config(BASE + SESSION + """
[providers.policy]
kind = "static"
paths = ["policy/*.md"]

[recipes.mixed.providers.policy]
criticality = "critical"
share = 0.7

[recipes.mixed.providers.history]
criticality = "important"
share = 0.3
""")
    for i in range(1, 7):
        push(_event(f"e{i}", "u1", f"Event number {i}: Ada looked at invoice {i * 111} and its line items."))
    newest_first = [f"e{i}" for i in range(6, 0, -1)]

    out = assemble(ctx_cli, "recent activity", "--recipe", "mixed", "--user", "u1", "--budget", "1000")
    assert out["tokens"] <= 1000
    history = [b["document"] for b in out["blocks"] if b["provider"] == "history"]
    assert 0 < len(history) < len(newest_first), history
    assert history == newest_first[: len(history)]
    history_tokens = sum(b["tokens"] for b in out["blocks"] if b["provider"] == "history")
    assert history_tokens <= 300
    policy = [b for b in out["blocks"] if b["provider"] == "policy"]
    assert len(policy) == 1 and policy[0]["truncated"]  # it gets the rest of the budget, cut to fit
    kinds = {(d["source"], d["kind"]) for d in out["degradations"]}
    assert kinds == {("policy", "truncated"), ("history", "dropped")}


def test_session_new_event_shows_up_at_once(write_config, ctx_cli, push) -> None:
    write_config(BASE + SESSION)
    push(_event("e1", "u1", "Ada opened the billing page."))
    first = assemble(ctx_cli, "what now?", "--recipe", "chat", "--user", "u1")
    again = assemble(ctx_cli, "what now?", "--recipe", "chat", "--user", "u1")
    assert _doc_keys(first) == _doc_keys(again) == ["e1"]
    assert again["cache"] in ("l1", "l2")  # the same data: served from the cache
    push(_event("e2", "u1", "Ada downloaded invoice 42."))
    after = assemble(ctx_cli, "what now?", "--recipe", "chat", "--user", "u1")
    assert _doc_keys(after) == ["e2", "e1"]
    assert after["cache"] == "miss"


def test_session_tenant_isolation(write_config, ctx_cli, push) -> None:
    # With tenant_field set every event names its tenant (one without it is quarantined at push).
    write_config(BASE + SESSION.replace('metadata_fields = ["user_id", "session_id"]\n',
                                        'metadata_fields = ["user_id", "session_id"]\ntenant_field = "account"\n'))
    push(_event("a1", "u1", "Tenant A confidential roadmap item.", account="A"),
         _event("a2", "u1", "Tenant A renewal discussion.", account="A"))
    push(_event("b1", "u1", "Tenant B asked about invoices.", account="B"))
    assert ctx_cli("quarantine", "--json").json() == []

    as_a = assemble(ctx_cli, "history", "--recipe", "chat", "--user", "u1", "--tenant", "A")
    assert sorted(_doc_keys(as_a)) == ["a1", "a2"]
    for _ in range(2):  # and again, once cached results exist for tenant A: never crosses over
        as_b = assemble(ctx_cli, "history", "--recipe", "chat", "--user", "u1", "--tenant", "B")
        assert _doc_keys(as_b) == ["b1"]
        as_none = assemble(ctx_cli, "history", "--recipe", "chat", "--user", "u1")
        assert as_none["blocks"] == [] and as_none["providers"]["history"]["status"] == "ok"
        for out in (as_b, as_none):
            assert "Tenant A" not in json.dumps(out)
    assert "Tenant B" not in json.dumps(as_a)


# --- http -------------------------------------------------------------------------------------------

TOKEN = "orders-SECRET-token-7f3a9c"
ORDERS = {
    "u1": [{"id": "o-1", "item": "Blue widget", "status": "shipped on Monday"},
           {"id": "o-2", "item": "Red gadget", "status": "refund pending"}],
    "a/b": [{"id": "o-9", "item": "Slash order", "status": "delivered"}],
}


def _orders(request: Request) -> Reply:
    match = re.fullmatch(r"/users/([^/?]+)/orders(\?.*)?", request.target)
    if match is None:
        return Reply(404, {"error": "no such route"})
    from urllib.parse import unquote

    user = unquote(match.group(1))
    if user == "boom":
        return Reply(500, {"error": "server error", "your_headers": request.headers})
    return Reply(200, {"data": {"orders": ORDERS.get(user, [])}})


@pytest.fixture
def orders_api(loopback: Callable[..., Loopback]) -> Loopback:
    """A loopback orders API; it records every request's path and headers, and answers 500 for user
    ``boom`` with the request headers echoed in the body (as a careless API would)."""
    return loopback(_orders)


# The recipe both orders providers are asked through.
ORDERS_RECIPE = """
[recipes.orders]
deadline = "10s"

[recipes.orders.providers.orders]
criticality = "important"
"""


def _http(port: int, headers: str = 'Authorization = "Bearer ${ORDERS_TOKEN}"') -> str:
    return f"""
[providers.orders]
kind = "http"
url = "http://127.0.0.1:{port}/users/{{user}}/orders"
headers = {{ {headers} }}
records_path = "data.orders"
key_field = "id"
title_field = "item"
text_fields = ["item", "status"]
timeout = "5s"
""" + ORDERS_RECIPE


def test_http_provider_calls_the_api_with_the_env_token(orders_api: Loopback, write_config, ctx_cli,
                                                        monkeypatch: pytest.MonkeyPatch, ctx_env) -> None:
    monkeypatch.setenv("ORDERS_TOKEN", TOKEN)
    config = write_config(BASE + _http(orders_api.port))
    assert TOKEN not in config.read_text()

    outputs: list[str] = []
    res = ctx_cli("assemble", "where is my order?", "--recipe", "orders", "--user", "u1", "--json")
    outputs.append(res.stdout)
    out = res.json()
    assert out["providers"]["orders"]["status"] == "ok" and out["providers"]["orders"]["kind"] == "http"
    assert _doc_keys(out) == ["o-1", "o-2"]
    assert [b["title"] for b in out["blocks"]] == ["Blue widget", "Red gadget"]
    assert out["blocks"][0]["text"] == "Blue widget\n\nshipped on Monday"
    assert all(b["provider"] == "orders" and b["as_of"] for b in out["blocks"])
    assert "refund pending" in out["context"]

    request = orders_api.requests[-1]
    assert request.target == "/users/u1/orders"
    assert request.headers.get("Authorization") == f"Bearer {TOKEN}", "the server sees the token"

    # The user value is URL-encoded into the path, not spliced.
    slash = assemble(ctx_cli, "where is my order?", "--recipe", "orders", "--user", "a/b")
    assert orders_api.requests[-1].target == "/users/a%2Fb/orders"
    assert _doc_keys(slash) == ["o-9"]

    # An API error that echoes the request headers: the request degrades, and the token stays out of it.
    res = ctx_cli("assemble", "where is my order?", "--recipe", "orders", "--user", "boom", "--json")
    outputs.append(res.stdout)
    failed = res.json()
    assert failed["providers"]["orders"]["status"] == "failed"
    assert "HTTP 500" in failed["providers"]["orders"]["error"]
    assert failed["blocks"] == []
    assert orders_api.requests[-1].headers.get("Authorization") == f"Bearer {TOKEN}"

    for trace_id in (out["trace_id"], failed["trace_id"]):
        outputs.append(ctx_cli("replay", trace_id, "--json").stdout)
        outputs.append(ctx_cli("replay", trace_id).stdout)
    rerun = ctx_cli("replay", out["trace_id"], "--rerun", "--json")
    outputs.append(rerun.stdout)
    outputs.append(ctx_cli("replay", rerun.json()["rerun"], "--json").stdout)
    outputs.append(ctx_cli("traces", "--json").stdout)
    outputs.append(ctx_cli("status", "--json").stdout)
    assert all(text.strip() for text in outputs[:2])
    for text in outputs:
        assert TOKEN not in text

    home = Path(ctx_env["CTX_HOME"])
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "catalog.db" for p in files)
    for path in files:  # catalog.db and its WAL (traces), the result cache on disk
        assert TOKEN.encode() not in path.read_bytes(), f"the token leaked into {path}"


def test_http_provider_literal_token_is_a_config_error(orders_api: Loopback, write_config, ctx_cli) -> None:
    literal = "sk-live-literal-123456"
    write_config(BASE + _http(orders_api.port, f'Authorization = "Bearer {literal}"'))
    line = config_error(ctx_cli("assemble", "q", "--recipe", "orders", "--user", "u1", ok=False),
                        "providers.orders.headers")
    assert "environment variable" in line
    assert literal not in line
    assert orders_api.requests == []


def test_http_provider_missing_env_var_degrades_without_calling(orders_api: Loopback, write_config, ctx_cli,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERS_TOKEN", raising=False)
    write_config(BASE + _http(orders_api.port))
    out = assemble(ctx_cli, "where is my order?", "--recipe", "orders", "--user", "u1")
    assert out["providers"]["orders"]["status"] == "failed"
    assert "ORDERS_TOKEN" in out["providers"]["orders"]["error"]
    assert orders_api.requests == []


KEY = "ord3rs/key+with odd&chars"  # "/", "+", " " and "&" take other forms in a path and in a query


def _keyed_orders(request: Request) -> Reply:
    from urllib.parse import quote

    match = re.fullmatch(r"/keys/([^/]+)/users/([^/]+)/orders", request.path)
    if match is None or match.group(1) != quote(KEY, safe="") or request.query.get("api_key") != KEY:
        return Reply(403, {"error": "bad key", "path": request.path})
    if match.group(2) == "boom":
        return Reply(500, {"error": "server error"})
    return Reply(200, {"data": {"orders": ORDERS.get(match.group(2), [])}})


def _keyed(port: int) -> str:
    return BASE + f"""
[providers.orders]
kind = "http"
url = "http://127.0.0.1:{port}/keys/${{ORDERS_KEY}}/users/{{user}}/orders"
params = {{ api_key = "${{ORDERS_KEY}}", for = "{{user}}" }}
records_path = "data.orders"
text_fields = ["item", "status"]
timeout = "5s"
""" + ORDERS_RECIPE


def test_http_provider_key_in_the_url_and_query_reaches_the_api_and_nothing_else(
        loopback: Callable[..., Loopback], write_config, ctx_cli, monkeypatch: pytest.MonkeyPatch, ctx_env,
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from ctx.observe.redact import forms

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ORDERS_KEY", KEY)
    api = loopback(_keyed_orders)
    write_config(_keyed(api.port))
    res = ctx_cli("assemble", "where is my order?", "--recipe", "orders", "--user", "u1", "--json")
    out = res.json()
    assert out["providers"]["orders"]["status"] == "ok", out["providers"]
    assert api.requests[-1].query == {"api_key": KEY, "for": "u1"}
    # A block without a key field is named by its URL: the key shows as ***.
    assert _doc_keys(out) == [f"http://127.0.0.1:{api.port}/keys/***/users/u1/orders#{n}" for n in (1, 2)]

    outputs = [res.stdout]
    failed = assemble(ctx_cli, "where is my order?", "--recipe", "orders", "--user", "boom")
    assert failed["providers"]["orders"]["status"] == "failed"
    assert "HTTP 500" in failed["providers"]["orders"]["error"] and "/keys/***/users/boom" in failed["providers"]["orders"]["error"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens there once the socket is closed
    write_config(_keyed(closed))
    refused = assemble(ctx_cli, "where is my order?", "--recipe", "orders", "--user", "u1")
    assert "ConnectError" in refused["providers"]["orders"]["error"]
    assert "/keys/***/users/u1" in refused["providers"]["orders"]["error"]
    write_config(_keyed(api.port))
    for trace_id in (out["trace_id"], failed["trace_id"], refused["trace_id"]):
        outputs.append(ctx_cli("replay", trace_id, "--json").stdout)
        outputs.append(ctx_cli("replay", trace_id).stdout)
    outputs += [json.dumps(failed), json.dumps(refused), ctx_cli("traces", "--json").stdout,
                ctx_cli("status", "--json").stdout, ctx_cli("status").stdout, caplog.text]
    assert "HTTP Request: GET" in caplog.text and "api_key=***" in caplog.text
    for text in outputs:
        assert not [form for form in forms(KEY) if form in text], text[:300]
    for path in (p for p in Path(ctx_env["CTX_HOME"]).rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert not [form for form in forms(KEY) if form.encode() in data], f"the key leaked into {path}"


def test_http_provider_unset_variable_in_the_url_degrades_naming_it(loopback: Callable[..., Loopback], write_config,
                                                                    ctx_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERS_KEY", raising=False)
    api = loopback(_keyed_orders)
    write_config(_keyed(api.port))
    out = assemble(ctx_cli, "where is my order?", "--recipe", "orders", "--user", "u1")
    assert out["providers"]["orders"]["status"] == "failed"
    assert "environment variable ORDERS_KEY is not set" in out["providers"]["orders"]["error"]
    assert api.requests == []


# --- recipes ----------------------------------------------------------------------------------------

RECIPES = """
[recipes.support]
description = "a customer asking about their account"

[recipes.support.providers.profile]
criticality = "critical"
share = 0.4

[recipes.support.providers.policy]
criticality = "important"
share = 0.3

[recipes.support.providers.by_plan]
criticality = "enhancing"
share = 0.3
"""

RECORDS = """
[providers.profile]
kind = "record"
database = "crm.db"
query = "select id, name, plan from customers where id = :user"
key_column = "id"
title = "customer"

[providers.by_plan]
kind = "record"
database = "crm.db"
query = "select id, name from customers where plan = :plan order by id"
key_column = "id"
title = "customer on the plan"

[providers.policy]
kind = "static"
paths = ["policy/*.md"]
"""


@pytest.fixture
def support(crm: Path, policy_dir: Path, write_config) -> Callable[[str], Path]:
    """``support(extra)`` writes a ctx.toml with the record and static providers, the support recipe and extra."""

    def write(extra: str = "") -> Path:
        return write_config(BASE + extra + RECORDS + RECIPES)

    return write


def test_unknown_recipe_lists_the_known_ones(support, ctx_cli) -> None:
    support()
    line = one_line_error(ctx_cli("assemble", "q", "--recipe", "nope", ok=False), 2)
    assert "unknown recipe 'nope'" in line and "default" in line and "support" in line


def test_recipe_shares_over_one_is_a_config_error(crm: Path, policy_dir: Path, write_config, ctx_cli) -> None:
    write_config(BASE + RECORDS + RECIPES.replace("share = 0.4", "share = 0.7"))
    line = config_error(ctx_cli("assemble", "q", "--recipe", "support", "--user", "u1", ok=False),
                        "recipes.support.providers")
    assert "1.3" in line and "1 or less" in line


def test_recipe_naming_an_unknown_provider_is_a_config_error(crm: Path, policy_dir: Path, write_config,
                                                             ctx_cli) -> None:
    write_config(BASE + RECORDS + RECIPES + '\n[recipes.support.providers.ghost]\ncriticality = "optional"\n')
    line = config_error(ctx_cli("assemble", "q", "--recipe", "support", "--user", "u1", ok=False),
                        "recipes.support.providers.ghost")
    assert "unknown provider 'ghost'" in line and "profile" in line
    write_config(BASE + RECORDS + RECIPES.replace('share = 0.4', 'share = 0.4\nfallback = "nobody"'))
    line = config_error(ctx_cli("sources", "--json", ok=False), "recipes.support.providers.profile.fallback")
    assert "unknown provider 'nobody'" in line


def test_assembly_recipe_sets_the_default(support, ctx_cli) -> None:
    support('[assembly]\nrecipe = "support"\n\n')
    out = assemble(ctx_cli, "what plan am I on?", "--user", "u1", "--param", "plan=pro")
    assert out["recipe"] == "support" and out["request"]["recipe"] == "support"
    assert set(out["providers"]) == {"profile", "policy", "by_plan"}
    assert "name: Ada Lovelace" in out["context"]
    # Without --user, the default recipe's critical record provider refuses, as with --recipe support.
    line = one_line_error(ctx_cli("assemble", "what plan am I on?", ok=False), 2)
    assert "--user" in line
    # The built-in default is still there by name.
    assert assemble(ctx_cli, "what plan am I on?", "--recipe", "default")["recipe"] == "default"


def test_bad_deadline_is_a_one_line_error(support, ctx_cli) -> None:
    support()
    line = one_line_error(ctx_cli("assemble", "q", "--recipe", "support", "--user", "u1", "--deadline", "nonsense",
                                  ok=False), 2)
    assert "--deadline" in line and "nonsense" in line


def test_recipe_and_outcomes_are_recorded_and_replay_is_exact(support, ctx_cli) -> None:
    support()
    args = ("what plan am I on?", "--recipe", "support", "--user", "u1", "--param", "plan=pro", "--deadline", "5s")
    out = assemble(ctx_cli, *args)
    assert out["recipe"] == "support"
    assert out["request"]["user"] == "u1" and out["request"]["params"] == {"plan": "pro"}
    assert out["request"]["deadline"] == 5.0
    providers = out["providers"]
    assert set(providers) == {"profile", "policy", "by_plan"}
    assert {n: (p["kind"], p["criticality"], p["status"]) for n, p in providers.items()} == {
        "profile": ("record", "critical", "ok"), "policy": ("static", "important", "ok"),
        "by_plan": ("record", "enhancing", "ok")}
    assert {n: p["blocks"] for n, p in providers.items()} == {"profile": 1, "policy": 2, "by_plan": 2}
    assert {b["provider"] for b in out["blocks"]} == {"profile", "policy", "by_plan"}
    # Section order follows criticality: the critical profile first, the enhancing plan list last.
    context = out["context"]
    assert context.index("## profile (critical)") < context.index("## policy (important)") < context.index(
        "## by_plan (enhancing)")

    trace = ctx_cli("replay", out["trace_id"], "--json").json()
    assert trace["recipe"] == "support"
    assert trace["providers"] == providers
    assert trace["request"] == out["request"]
    assert trace["context"] == context

    replayed = ctx_cli("replay", out["trace_id"])
    assert replayed.stdout_bytes == context.encode("utf-8")
    plain = ctx_cli("assemble", *args)  # the plain command prints exactly the context bytes too
    assert plain.stdout_bytes == context.encode("utf-8")


def test_rerun_of_a_recipe_request(support, ctx_cli) -> None:
    # No caches: the rerun really asks every provider again, with the stored recipe, user and params.
    support("[cache]\nenabled = false\n\n")
    # A roomy deadline (the rerun keeps it): with caches off, a loaded CI machine once made `profile` late.
    out = assemble(ctx_cli, "what plan am I on?", "--recipe", "support", "--user", "u1", "--param", "plan=pro",
                   "--deadline", "30s")
    assert out["cache"] == "off"
    report = ctx_cli("replay", out["trace_id"], "--rerun", "--json").json()
    assert report["original"] == out["trace_id"]
    assert report["appeared"] == [] and report["vanished"] == [] and report["changed"] == []
    # Only the record rows' read time (their "as of") may differ between the two.
    changed = [line for line in report["diff"].splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert all("· as of " in line for line in changed), changed

    rerun = ctx_cli("replay", report["rerun"], "--json").json()
    assert rerun["replay_of"] == out["trace_id"]
    assert rerun["recipe"] == "support"
    for key in ("recipe", "user", "session", "params", "query", "budget"):
        assert rerun["request"][key] == out["request"][key], key
    assert {n: p["status"] for n, p in rerun["providers"].items()} == {"profile": "ok", "policy": "ok",
                                                                       "by_plan": "ok"}
    assert {n: p["blocks"] for n, p in rerun["providers"].items()} == {"profile": 1, "policy": 2, "by_plan": 2}


# --- API parity -------------------------------------------------------------------------------------

_AS_OF = re.compile(r" · as of [^\]]*\]")


def _comparable(out: dict[str, Any]) -> dict[str, Any]:
    """What must agree between two runs of one request, besides when the records were read."""
    blocks = [{k: v for k, v in b.items() if k != "as_of"} for b in out["blocks"]]
    providers = {n: {k: p[k] for k in ("kind", "criticality", "status", "blocks", "cache", "error")}
                 for n, p in out["providers"].items()}
    return {"recipe": out["recipe"], "blocks": blocks, "providers": providers, "tokens": out["tokens"],
            "context": _AS_OF.sub("]", out["context"]), "degradations": out["degradations"],
            "request": out["request"]}


def test_api_assemble_matches_the_cli(support, ctx_cli, daemon) -> None:
    config = support('[cache]\nenabled = false\n\n[daemon]\nscheduler = false\nwatch = false\n\n')
    local = assemble(ctx_cli, "what plan am I on?", "--recipe", "support", "--user", "u1", "--param", "plan=pro",
                     "--deadline", "10s")
    assert local["cache"] == "off" and len(local["blocks"]) == 5

    d = daemon(config=config)
    runtime = d.runtime
    with httpx.Client(base_url="http://localhost", transport=httpx.HTTPTransport(uds=runtime.uds), timeout=60,
                      headers={"Authorization": f"Bearer {runtime.token}"}) as http:
        response = http.post("/v1/assemble", json={"query": "what plan am I on?", "recipe": "support", "user": "u1",
                                                   "params": {"plan": "pro"}, "deadline_ms": 10_000})
        assert response.status_code == 200, response.text
        remote = response.json()
        assert remote["cache"] == "off"
        assert _comparable(remote) == _comparable(local)
        # The daemon stored it as a trace like any other.
        trace = http.get(f"/v1/traces/{remote['trace_id']}")
        assert trace.status_code == 200, trace.text
        assert trace.json()["recipe"] == "support" and trace.json()["request"]["params"] == {"plan": "pro"}
        # And the API refuses the same bad requests the CLI does.
        missing = http.post("/v1/assemble", json={"query": "q", "recipe": "support"})
        assert missing.status_code == 400 and "--user" in missing.json()["error"]["message"]
        unknown = http.post("/v1/assemble", json={"query": "q", "recipe": "nope"})
        assert unknown.status_code == 400 and "unknown recipe 'nope'" in unknown.json()["error"]["message"]
