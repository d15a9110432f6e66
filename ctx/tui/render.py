"""Rich renderables for the dashboard's panels and the trace detail: formatting only, no I/O and no Textual."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ctx.tui.data import BreakerRow, CacheRate, CostView, Freshness, Minute, Objective, TraceDetail

BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}
FRESH_STYLE = {"ok": "green", "warn": "yellow", "stale": "bold red", "never": "red"}
SEVERITY_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow"}
STATUS_STYLE = {"ok": "green", "cached": "green", "coalesced": "green", "stale": "yellow", "fallback": "yellow",
                "late": "yellow", "timeout": "red", "failed": "bold red", "skipped": "dim", "not_applicable": "dim"}


def number(value: Any) -> float | None:
    """A figure as a float, or None when it is missing or not a number (a dashboard shows "?" rather than fail)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def ms(value: Any) -> str:
    figure = number(value)
    if figure is None:
        return "—" if value is None else "?"
    return f"{figure:.0f}" if figure >= 100 else f"{figure:.1f}"


def usd(value: Any) -> str:
    """Dollars with as many decimals as a per-request figure needs (they are often fractions of a cent)."""
    figure = number(value)
    if figure is None:
        return "?"
    if figure == 0:
        return "$0"
    if figure < 0.01:
        return f"${figure:.5f}"
    return f"${figure:.4f}" if figure < 1 else f"${figure:,.2f}"


def age(seconds: float | None) -> str:
    """A lag as people read it: 42s, 7m, 3h, 2d."""
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _table(*columns: str, right: Iterable[int] = (), wrap: Iterable[int] = ()) -> Table:
    """A borderless table; too narrow, the ``wrap`` columns wrap and only they give up width."""
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold dim", expand=False, padding=(0, 1))
    aligned, wrapped = set(right), set(wrap)
    for i, name in enumerate(columns):
        table.add_column(name, justify="right" if i in aligned else "left", no_wrap=i not in wrapped)
    return table


def _note(text: str, style: str = "dim") -> Text:
    return Text(text, style=style)


def problem(text: str) -> Text:
    """What a panel shows instead of its figures when they could not be read."""
    return Text(text, style="red")


def latency_table(minutes: Sequence[Minute], rows: int = 3) -> RenderableType:
    busy = [m for m in minutes if m.count][-rows:]
    if not busy:
        return _note("no requests in the last 30 minutes")
    table = _table("minute", "req", "p50", "p95", "p99", right=(1, 2, 3, 4))
    for m in reversed(busy):
        table.add_row(m.start[11:16], str(m.count), ms(m.p50), ms(m.p95), ms(m.p99))
    return table


def cache(rows: Sequence[CacheRate]) -> RenderableType:
    if not rows:
        return _note("no lookups yet")
    table = _table("level", "tier", "hit rate", "hits", right=(2, 3))
    for r in rows:
        rate = r.rate
        style = "dim" if rate is None else "green" if rate >= 0.5 else "yellow" if rate >= 0.2 else "red"
        table.add_row(r.level, r.tier, Text(pct(rate), style=style), f"{r.hits}/{r.lookups}")
    return table


def breakers(rows: Sequence[BreakerRow]) -> RenderableType:
    if not rows:
        return _note("no providers")
    table = _table("provider", "state", "fails", "opens", right=(2, 3))
    for r in rows:
        table.add_row(r.name, Text(r.state.replace("_", "-"), style=BREAKER_STYLE.get(r.state, "")),
                      str(r.recent_failures), str(r.opened))
    if not any(r.live for r in rows):
        return Group(table, _note("no request served yet: all closed"))
    return table


def freshness(rows: Sequence[Freshness]) -> RenderableType:
    if not rows:
        return _note("no sources configured")
    table = _table("source", "lag", "limit", "", right=(1, 2))
    for r in rows:
        state = {"ok": "fresh", "warn": "near limit", "stale": "STALE", "never": "never synced"}[r.level]
        if r.last_error:
            state += " · last sync failed"
        style = FRESH_STYLE[r.level]
        table.add_row(r.name, Text(age(r.lag_s), style=style), age(r.limit_s), Text(state, style=style))
    return table


def cost(view: CostView | None) -> RenderableType:
    if view is None:
        return _note("not available")
    totals = Table.grid(padding=(0, 1))
    totals.add_column(style="dim")
    totals.add_column(justify="right", style="bold")
    totals.add_column(style="dim")
    totals.add_row("per req", usd(view.per_request_usd), "")
    totals.add_row("today", usd(view.today_usd), f"{view.today_requests} req")
    totals.add_row("7 days", usd(view.total_usd), f"{view.requests} req")
    days = _table("day", "req", "USD", right=(1, 2))
    for d in view.days[-4:]:
        days.add_row(d["key"][5:10], str(d["requests"]), usd(d["total_usd"]))
    grid = Table.grid(padding=(0, 3))
    grid.add_row(totals, days if view.days else _note("no requests"))
    b = view.breakdown
    if not b:
        return grid
    split = Text.assemble(("context ", "dim"), usd(b.get("context_usd", 0.0)), (" · embed ", "dim"),
                          usd(b.get("embedding_usd", 0.0)), (" · providers ", "dim"), usd(b.get("providers_usd", 0.0)))
    return Group(grid, split)


def slo(rows: Sequence[Objective]) -> RenderableType:
    if not rows:
        return _note("no objectives configured")
    table = _table("objective", "target", "1h", "1d", "7d", "budget", "burn", "", right=(1, 2, 3, 4, 5, 6))
    for o in rows:
        w = o.windows
        longest = next((w[k] for k in ("7d", "1d", "1h") if (w.get(k) or {}).get("total")), {})
        burn = (w.get("1h") or {}).get("burn_rate")
        met = o.met
        mark = Text("—", style="dim") if met is None else Text("met", style="green") if met else Text("MISSED",
                                                                                                    style="bold red")
        table.add_row(o.name, pct(o.target), *(pct((w.get(k) or {}).get("sli")) for k in ("1h", "1d", "7d")),
                      Text(pct(longest.get("budget_left"), 0), style=_budget_style(longest.get("budget_left"))),
                      Text("—" if burn is None else f"{burn:.1f}x", style=_burn_style(burn)), mark)
    return table


def _budget_style(left: float | None) -> str:
    return "dim" if left is None else "green" if left > 0.5 else "yellow" if left > 0 else "bold red"


def _burn_style(burn: float | None) -> str:
    return "dim" if burn is None else "green" if burn <= 1 else "yellow" if burn < 6 else "bold red"


def alerts(rows: Sequence[dict[str, Any]]) -> RenderableType:
    if not rows:
        return _note("no active alerts", "green")
    table = _table("severity", "rule", "since", "×", "message", right=(3,), wrap=(4,))
    for a in rows:
        sev = a.get("severity", "")
        table.add_row(Text(sev, style=SEVERITY_STYLE.get(sev, "")), a.get("rule", ""),
                      (a.get("first_at") or "")[11:16], str(a.get("count", 1)), a.get("message", ""))
    return table


# --- the trace detail screen ---------------------------------------------------------------------------


def trace_summary(d: TraceDetail) -> RenderableType:
    t = d.trace
    ok = t.get("status", "ok") == "ok"
    lines = [
        Text.assemble(("trace ", "dim"), (str(t.get("id", "")), "bold"), "  ",
                      (str(t.get("status", "ok")), "green" if ok else "bold red"),
                      *((("  rerun of ", "dim"), str(t["replay_of"])) if t.get("replay_of") else ())),
        Text.assemble(("query ", "dim"), str(t.get("query") or "")),
        Text.assemble(*_pairs(("at", t.get("created_at")), ("recipe", t.get("recipe")), ("model", t.get("model")),
                              ("format", t.get("format")), ("cache", t.get("cache")),
                              ("tenant", ((t.get("request") or {}).get("filters") or {}).get("tenant")))),
        Text.assemble(("tokens ", "dim"), f"{t.get('tokens', 0)}/{t.get('budget', 0)}", ("  kept ", "dim"),
                      f"{len(d.blocks)}/{len(d.blocks) + len(d.dropped)}", ("  degradations ", "dim"),
                      str(len(d.degradations)), ("  total ", "dim"), f"{ms(dict(d.timings).get('total'))} ms",
                      ("  cost ", "dim"), usd(t.get("cost") or 0.0)),
    ]
    if t.get("error"):
        lines.append(Text.assemble(("error ", "dim"), (str(t["error"]), "red")))
    return Group(*lines)


def _pairs(*pairs: tuple[str, Any]) -> list[tuple[str, str] | str]:
    out: list[tuple[str, str] | str] = []
    for label, value in pairs:
        if value:
            out += [(f"{'  ' if out else ''}{label} ", "dim"), str(value)]
    return out


def replay_check(d: TraceDetail) -> RenderableType:
    if d.verified:
        return Text.assemble(("✓ ", "bold green"), "replay verified: the stored ", str(d.size),
                             " bytes hash to sha256 ", (d.checksum[:16], "bold"), "…")
    return Text.assemble(("✗ ", "bold red"), ("replay check failed: the bytes hash to ", "red"), d.checksum[:16],
                         ("… , not the stored ", "red"), str(d.trace.get("context_sha256", ""))[:16])


def blocks(d: TraceDetail) -> RenderableType:
    if not d.blocks:
        return _note("no blocks were kept")
    table = _table("#", "source", "provider", "document", "tokens", "score", "", right=(0, 4, 5))
    for i, c in enumerate(d.blocks, 1):
        table.add_row(str(i), c.get("source") or "", c.get("provider") or "", c.get("doc_key") or c.get("title") or "",
                      _tokens(c), f"{c.get('score') or 0:.4f}",
                      Text("truncated", style="yellow") if c.get("truncated") else "")
    return table


def _tokens(c: dict[str, Any]) -> str:
    """The tokens a block took; a trace from before ``tokens`` was recorded has only a stored chunk's count."""
    tokens = c.get("tokens", c.get("token_count"))
    return "" if tokens is None else str(tokens)


def degradations(d: TraceDetail, limit: int = 12) -> RenderableType:
    if not d.degradations:
        return _note("none: every candidate fitted and every provider answered", "green")
    table = _table("kind", "what", "criticality", "reason", wrap=(3,))
    for g in d.degradations[:limit]:
        what = g.get("source") or g.get("provider") or ""
        if g.get("chunk_id"):
            what = f"{what} {g['chunk_id'][:8]}"
        table.add_row(Text(g.get("kind", ""), style="yellow"), what, g.get("criticality", ""), g.get("reason", ""))
    more = len(d.degradations) - limit
    return Group(table, _note(f"… and {more} more")) if more > 0 else table


def timings_and_cost(d: TraceDetail) -> RenderableType:
    table = _table("timing", "ms", right=(1,))
    for name, value in d.timings:
        table.add_row(name, ms(value))
    costs = d.trace.get("costs") or {}
    money = _table("cost", "USD", right=(1,))
    for key in ("context_usd", "embedding_usd", "providers_usd", "total_usd"):
        if key in costs:
            money.add_row(key.removesuffix("_usd"), usd(costs[key]))
    if not costs:
        money.add_row("total", usd(d.trace.get("cost") or 0.0))
    grid = Table.grid(padding=(0, 4))
    grid.add_row(table, money)
    return grid


def providers(d: TraceDetail) -> RenderableType:
    rows = d.trace.get("providers") or {}
    if not rows:
        return _note("no providers recorded")
    table = _table("provider", "kind", "criticality", "status", "blocks", "ms", "cache", "breaker", "USD",
                   right=(4, 5, 8))
    for name, p in sorted(rows.items()):
        status = p.get("status", "")
        table.add_row(name, p.get("kind", ""), p.get("criticality", ""),
                      Text(status, style=STATUS_STYLE.get(status, "")), str(p.get("blocks", 0)), ms(p.get("ms")),
                      p.get("cache") or "", Text(p.get("breaker") or "", style=BREAKER_STYLE.get(p.get("breaker"), "")),
                      usd(p.get("cost") or 0.0))
    return table


def rerun(report: dict[str, Any]) -> RenderableType:
    """The rerun report: the unified diff coloured line by line, then what appeared, vanished or changed."""
    head = Text.assemble(("rerun trace ", "dim"), (report["rerun"], "bold"))
    if report["identical"]:
        return Group(head, Text("identical: today's data produced the same bytes", style="green"))
    diff = Text()
    for line in report["diff"].splitlines():
        style = ("bold" if line.startswith(("+++", "---")) else "green" if line.startswith("+")
                 else "red" if line.startswith("-") else "cyan" if line.startswith("@@") else "")
        diff.append(line + "\n", style=style)
    notes = [Text(f"appeared: chunk {c}", style="green") for c in report.get("appeared", [])]
    notes += [Text(f"vanished: chunk {c}", style="red") for c in report.get("vanished", [])]
    notes += [Text(f"changed: {c['document']} v{c['from_version']} → v{c['to_version']}", style="yellow")
              for c in report.get("changed", [])]
    return Group(head, diff, *notes)
