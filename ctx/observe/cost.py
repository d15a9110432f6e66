"""The cost ledger: where the money of a time window went, read from traces and ingest runs.

Every figure comes from what the catalog already holds (each trace carries its cost breakdown, each
ingest run its embedding cost), so the report never disagrees with ``ctx traces`` or ``ctx jobs``.
Request figures (``total_usd``, ``breakdown``, ``by``) cover traces; ingest embeddings are reported
apart (``ingest``) since they are not paid per request, and both count towards the drivers' shares.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ctx.errors import UserError
from ctx.settings import parse_duration
from ctx.store.catalog import Catalog

# A context served from the context cache (or joined to a computation in flight) called no provider,
# yet its trace lists the outcomes of the request that built it, costs included: those are not spent twice.
FRESH = ("miss", "off")
# Provider outcomes that made no upstream call for the request.
NOT_CALLED = ("cached", "coalesced", "skipped", "not_applicable")
FAILED = ("failed", "timeout", "late")
NO_TENANT = "(none)"
TOP_DRIVERS = 5
COMPONENTS = {"context_usd": "context tokens", "providers_usd": "provider calls", "embedding_usd": "query embeddings"}

# Legacy traces (before costs were broken down) count their whole cost as provider calls.
_SUMS = """count(*) as requests, coalesce(sum(tokens), 0) as tokens,
    coalesce(sum(coalesce(json_extract(costs, '$.total_usd'), cost, 0)), 0) as total_usd,
    coalesce(sum(coalesce(json_extract(costs, '$.context_usd'), 0)), 0) as context_usd,
    coalesce(sum(coalesce(json_extract(costs, '$.embedding_usd'), 0)), 0) as embedding_usd,
    coalesce(sum(coalesce(json_extract(costs, '$.providers_usd'), iif(costs is null, cost, 0), 0)), 0)
        as providers_usd"""
_WINDOW = "created_at >= ? and created_at <= ?"


def window(since: str, now: datetime | None = None, option: str = "--since") -> tuple[str, str]:
    """(start, end) ISO timestamps of the last ``since`` (``1h``, ``24h``, ``7d``, ``30d``...)."""
    return window_bounds(since, now, option)[1:]


def window_bounds(since: str, now: datetime | None = None, option: str = "--since") -> tuple[float, str, str]:
    """(seconds, start, end) of the last ``since``; a bad duration is a UserError naming ``option``."""
    try:
        seconds = parse_duration(since)
        end = now or datetime.now(UTC)
        start = end - timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        raise UserError(f"bad {option} {since!r}: expected a duration such as 1h, 24h, 7d or 30d") from None
    if seconds <= 0:
        raise UserError(f"bad {option} {since!r}: the window must be longer than 0")
    return seconds, _iso(start), _iso(end)


def cost_report(catalog: Catalog, since: str = "7d", now: datetime | None = None) -> dict[str, Any]:
    """What requests and ingest runs of the last ``since`` cost: totals, groupings, drivers, what to cut.

    Raises:
        UserError: ``since`` is not a duration.
    """
    start, end = window(since, now)
    span = [start, end]
    totals = _entry(_rows(catalog, f"select {_SUMS} from traces where {_WINDOW}", span)[0])
    day = _grouped(catalog, "substr(created_at, 1, 10)", span, by_key=True)
    recipe = _grouped(catalog, "coalesce(recipe, 'default')", span)
    tenant = _grouped(catalog, f"coalesce(tenant, '{NO_TENANT}')", span)
    model = _grouped(catalog, "model", span)
    providers, sources = _walk(catalog, span)
    ingest = _ingest(catalog, span)
    by_provider = [p.entry(name) for name, p in providers.items()]
    by_provider.sort(key=lambda e: (-e["total_usd"], e["key"]))
    by_source = [s.entry(name, totals["context_usd"]) for name, s in sources.items()]
    by_source.sort(key=lambda e: (-e["total_usd"], e["key"]))
    report = {
        "since": start, "until": end, "requests": totals["requests"], "total_usd": totals["total_usd"],
        "per_request_usd": totals["per_request_usd"],
        "breakdown": {k: totals[k] for k in COMPONENTS},
        "by": {"day": day, "recipe": recipe, "source": by_source, "provider": by_provider, "tenant": tenant},
        "ingest": ingest,
    }
    grand = totals["total_usd"] + ingest["embedding_usd"]
    report["drivers"] = _drivers(report, model, grand)
    report["cut_first"] = _cut_first(providers)
    return report


@dataclass
class _Provider:
    requests: int = 0  # traces it took part in
    calls: int = 0  # upstream calls made for those requests
    failures: int = 0
    total_usd: float = 0.0
    wasted_usd: float = 0.0  # what was paid for calls whose blocks were then dropped (or that gave none)
    offered: int = 0  # blocks it offered (candidates)
    kept: int = 0
    score_sum: float = 0.0

    @property
    def kept_share(self) -> float:
        return round(self.kept / self.offered, 4) if self.offered else 0.0

    @property
    def mean_score(self) -> float | None:
        return round(self.score_sum / self.offered, 4) if self.offered else None

    def entry(self, name: str) -> dict[str, Any]:
        return {"key": name, "requests": self.requests, "total_usd": _usd(self.total_usd),
                "per_request_usd": _usd(self.total_usd / self.requests if self.requests else 0.0),
                "calls": self.calls, "per_call_usd": _usd(self.total_usd / self.calls if self.calls else 0.0),
                "failures": self.failures, "blocks": self.offered, "kept": self.kept,
                "kept_share": self.kept_share, "mean_score": self.mean_score, "wasted_usd": _usd(self.wasted_usd)}


@dataclass
class _Source:
    requests: int = 0  # requests whose context kept a block of this source
    total_usd: float = 0.0
    tokens: float = 0.0

    def entry(self, name: str, context_usd: float) -> dict[str, Any]:
        return {"key": name, "requests": self.requests, "total_usd": _usd(self.total_usd),
                "per_request_usd": _usd(self.total_usd / self.requests if self.requests else 0.0),
                "tokens": round(self.tokens), "share": round(self.total_usd / context_usd, 4) if context_usd else 0.0}


def usage(candidates: list[dict[str, Any]], degradations: list[dict[str, Any]]) -> dict[str, Any]:
    """What one request's context was made of, for the ledger: computed once, when its trace is written.

    ``providers``: per provider, [blocks offered, blocks kept, sum of their scores]. ``sources``: per
    source, the tokens its kept blocks took. Stored chunks carry their exact token count from ingest;
    a truncated block counts what was left of it (its degradation's ``tokens_after``); blocks that are
    not stored chunks (a policy file, an API answer) carry none, so they count an estimate of four
    characters a token.
    """
    providers: dict[str, list[float]] = {}
    for c in candidates:
        p = providers.setdefault(c.get("provider") or c.get("source") or "?", [0, 0, 0.0])
        p[0] += 1
        p[1] += bool(c.get("kept"))
        p[2] += float(c.get("score") or 0.0)
    cut = {d["chunk_id"]: d.get("tokens_after", 0) for d in degradations
           if d.get("kind") == "truncated" and d.get("chunk_id")}
    sources: dict[str, float] = defaultdict(float)
    for c in candidates:
        if not c.get("kept"):
            continue
        tokens = float(c.get("token_count") or 0) or max((c.get("end", 0) - c.get("start", 0)) / 4, 1.0)
        if c.get("truncated") and c.get("chunk_id") in cut:
            tokens = float(cut[c["chunk_id"]])
        sources[c.get("source") or "?"] += tokens
    return {"providers": providers, "sources": dict(sources)}


def _walk(catalog: Catalog, span: list[str]) -> tuple[dict[str, _Provider], dict[str, _Source]]:
    """One pass over the window's traces for what SQL cannot see: per-provider outcomes and usage.

    Traces written before the ledger column existed have their usage worked out from their
    (compressed) candidates instead, which costs some fifteen times more.
    """
    providers: dict[str, _Provider] = defaultdict(_Provider)
    sources: dict[str, _Source] = defaultdict(_Source)
    rows = catalog.db.execute(
        "select providers, ledger, case when ledger is null then candidates end, "
        f"case when ledger is null then degradations end, cache, costs from traces where {_WINDOW}", span)
    for raw_providers, raw_ledger, raw_candidates, raw_degradations, cache, raw_costs in rows:
        outcomes: dict[str, dict[str, Any]] = json.loads(raw_providers or "{}")
        used = json.loads(raw_ledger) if raw_ledger else usage(
            json.loads(zlib.decompress(raw_candidates)) if raw_candidates else [], json.loads(raw_degradations or "[]"))
        for name, (offered, kept, score) in used["providers"].items():
            p = providers[name]
            p.offered += int(offered)
            p.kept += int(kept)
            p.score_sum += score
        fresh = (cache or "off") in FRESH
        for name, outcome in outcomes.items():
            p = providers[name]
            p.requests += 1
            if not fresh:
                continue
            cost = float(outcome.get("cost") or 0.0)
            p.total_usd += cost
            p.calls += outcome.get("status") not in NOT_CALLED
            p.failures += outcome.get("status") in FAILED
            offered, kept, _ = used["providers"].get(name, (0, 0, 0.0))
            p.wasted_usd += cost * (1 - (kept / offered if offered else 0.0))
        context_usd = float(json.loads(raw_costs or "{}").get("context_usd") or 0.0)
        _attribute(sources, used["sources"], context_usd)
    return providers, sources


def _attribute(sources: dict[str, _Source], weights: dict[str, float], context_usd: float) -> None:
    """A request's context cost split over sources by the tokens of the blocks it kept from each.

    The cost of the rendering around the blocks (headings, provenance lines) is split in the same
    proportion.
    """
    whole = sum(weights.values())
    for name, tokens in weights.items():
        s = sources[name]
        s.requests += 1
        s.tokens += tokens
        s.total_usd += context_usd * tokens / whole if whole else 0.0


def _ingest(catalog: Catalog, span: list[str]) -> dict[str, Any]:
    row = catalog.db.execute(
        "select count(*), coalesce(sum(json_extract(summary, '$.totals.tokens_embedded')), 0), "
        "coalesce(sum(json_extract(summary, '$.totals.embedding_usd')), 0) from ingest_runs "
        "where summary is not null and coalesce(created_at, started_at) >= ? and coalesce(created_at, started_at) <= ?",
        span,
    ).fetchone()
    return {"runs": int(row[0]), "tokens_embedded": int(row[1]), "embedding_usd": _usd(float(row[2]))}


def _grouped(catalog: Catalog, expr: str, span: list[str], by_key: bool = False) -> list[dict[str, Any]]:
    order = "key" if by_key else "total_usd desc, key"
    return [_entry(r) for r in _rows(catalog, f"select {expr} as key, {_SUMS} from traces where {_WINDOW} "
                                              f"group by key order by {order}", span)]


def _rows(catalog: Catalog, sql: str, params: list[str]) -> list[dict[str, Any]]:
    cursor = catalog.db.execute(sql, params)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    requests = int(row["requests"] or 0)
    out: dict[str, Any] = {"key": str(row["key"])} if "key" in row else {}
    total = float(row["total_usd"] or 0.0)
    out.update({"requests": requests, "total_usd": _usd(total),
                "per_request_usd": _usd(total / requests if requests else 0.0), "tokens": int(row["tokens"] or 0)})
    out.update({k: _usd(float(row[k] or 0.0)) for k in COMPONENTS})
    return out


def _drivers(report: dict[str, Any], models: list[dict[str, Any]], grand: float) -> list[dict[str, Any]]:
    """The biggest single causes of spend across every dimension, each with its share of all spend.

    A recipe or tenant dimension with a single key is left out: "everything went to the one recipe"
    says nothing. Dimensions overlap (a provider's calls are also some recipe's), so shares need not add up.
    """
    found: list[tuple[str, str, float, str]] = []
    by = report["by"]
    for e in by["provider"]:
        found.append(("provider", e["key"], e["total_usd"], f"{e['calls']} upstream calls at ${e['per_call_usd']:.4f}; "
                      f"{e['kept_share']:.0%} of its blocks kept"))
    for e in by["source"]:
        found.append(("source", e["key"], e["total_usd"], f"{e['tokens']:,} tokens of its blocks kept in "
                      f"{e['requests']} context windows ({e['share']:.0%} of context cost)"))
    for e in models:
        per_1k = e["context_usd"] / e["tokens"] * 1000 if e["tokens"] else 0.0
        found.append(("model", e["key"], e["context_usd"], f"{e['tokens']:,} context tokens sent at "
                      f"${per_1k:.5f} per 1K"))
    for kind in ("recipe", "tenant"):
        if len(by[kind]) > 1:
            for e in by[kind]:
                main = max(COMPONENTS, key=lambda k: e[k])
                found.append((kind, e["key"], e["total_usd"], f"{e['requests']} requests at "
                              f"${e['per_request_usd']:.4f} each, mostly {COMPONENTS[main]}"))
    if report["breakdown"]["embedding_usd"]:
        found.append(("embedding", "queries", report["breakdown"]["embedding_usd"],
                      f"query embeddings of {report['requests']} requests"))
    ingest = report["ingest"]
    if ingest["embedding_usd"]:
        found.append(("ingest", "embeddings", ingest["embedding_usd"],
                      f"{ingest['tokens_embedded']:,} tokens embedded in {ingest['runs']} ingest runs"))
    found = [f for f in found if f[2] > 0]
    found.sort(key=lambda f: (-f[2], f[0], f[1]))
    return [{"kind": kind, "key": key, "total_usd": usd, "share": round(usd / grand, 4) if grand else 0.0, "why": why}
            for kind, key, usd, why in found[:TOP_DRIVERS]]


def _cut_first(providers: dict[str, _Provider]) -> list[dict[str, Any]]:
    """Paid providers, the one whose money most often bought blocks that were dropped first.

    Ranked by what was paid for calls whose blocks did not make it into the context (a call that
    gave none, failed or timed out wastes all it cost), then by cost, then by lower mean score.
    Scores of different providers are not on one scale, so the score only breaks ties.
    """
    paid = [(name, p) for name, p in providers.items() if p.total_usd > 0]
    paid.sort(key=lambda np: (-round(np[1].wasted_usd, 8), -np[1].total_usd,
                              np[1].mean_score if np[1].mean_score is not None else float("-inf"), np[0]))
    out = []
    for name, p in paid:
        why = (f"${p.wasted_usd:.4f} of ${p.total_usd:.4f} paid for blocks that were dropped; "
               f"{p.kept_share:.0%} of its {p.offered} blocks kept")
        if p.failures:
            why += f"; {p.failures} failed calls"
        if p.mean_score is not None:
            why += f"; mean score {p.mean_score:.3f}"
        out.append({"provider": name, "calls": p.calls, "total_usd": _usd(p.total_usd), "kept_share": p.kept_share,
                    "mean_score": p.mean_score, "why": why})
    return out


def _usd(value: float) -> float:
    return round(value, 8)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
