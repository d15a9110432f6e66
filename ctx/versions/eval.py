"""Offline evaluation: assemble every labeled query with a version (no trace is stored), score the
rankings and contexts, keep one ``eval_runs`` row per run, and compare two versions query by query."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from statistics import fmean
from typing import TYPE_CHECKING, Any

from ctx.errors import UserError
from ctx.observe.traces import new_trace_id
from ctx.store.catalog import now_iso
from ctx.versions.evalset import LabeledQuery, digest
from ctx.versions.metrics import METRICS, score
from ctx.versions.store import Version

if TYPE_CHECKING:
    from ctx.versions.ports import Evaluator, Registry, Runner

Tick = Callable[[int, int], None]  # (queries done, of total)
Note = Callable[[str], None]
RESAMPLES = 2000  # paired bootstrap draws: enough for a stable 95% interval, quick for thousands of queries
SEED = 0  # fixed, so the same two runs always give the same verdict


def evaluate(ws: Evaluator, queries: Sequence[LabeledQuery], k: int = 10, version: str | None = None,
             versions: Sequence[str] | None = None, recipe: str | None = None, name: str = "",
             progress: Tick | None = None, note: Note | None = None) -> dict[str, Any]:
    """One version (``version``, default the one in force) or two side by side (``versions``)."""
    if versions:
        if version is not None:
            raise UserError("give --version or --compare, not both")
        if len(versions) != 2:
            raise UserError("--compare takes two versions")
        a, b = (resolve(ws, ref, recipe) for ref in versions)
        return compare(ws, queries, a, b, k, name, progress, note)
    return run(ws, queries, resolve(ws, version, recipe), k, name, progress, note)


def resolve(ws: Registry, ref: str | None, recipe: str | None) -> Version:
    """The version to evaluate: ``ref`` (of ``recipe`` when given), else the recipe's version in force."""
    if ref is None:
        return ws.current_version(recipe)
    if recipe is None:
        ws.current_version()  # so the settings in force can be named by their id too
    return ws.resolve_version(ref, recipe)


def target_for(ws: Evaluator, version: Version, note: Note | None = None) -> Runner:
    """What runs ``version``; a version that chunks or embeds differently from the live
    index gets its side index built first (as ``ctx versions build`` builds it): comparing chunking
    strategies is what evaluation is for."""
    from ctx.versions.manage import build

    if version.index != ws.current_version(version.recipe).index and not (ws.index_home(version) / "catalog.db"
                                                                            ).exists():
        if note:
            note(f"version {version.id} chunks or embeds differently from the live index: building its index "
                 f"in {ws.index_home(version)}")
        build(ws, version)
    return ws.for_version(version)


def run(ws: Evaluator, queries: Sequence[LabeledQuery], version: Version, k: int = 10, name: str = "",
        progress: Tick | None = None, note: Note | None = None) -> dict[str, Any]:
    """Evaluate ``version`` on ``queries`` and store the run; its means and per-query results."""
    from ctx.assemble.assembler import CriticalMissing

    if k < 1:
        raise UserError("--k must be 1 or more")
    target = target_for(ws, version, note)
    results: list[dict[str, Any]] = []
    for done, q in enumerate(queries, 1):
        request = target.request(q.query, recipe=version.recipe)
        try:
            # The assembler returns the trace record without storing it: eval runs count toward no SLO,
            # cost ledger or experiment, and leave `ctx traces` as it was.
            _, trace = target.assembler.assemble(request)
        except CriticalMissing as exc:  # the version gave this query no context: it scores nothing
            results.append({"id": q.id, "query": q.query, **dict.fromkeys(METRICS, 0.0), "retrieved": 0, "found": 0,
                            "tokens": 0, "first_relevant": None, "error": str(exc)})
        else:
            results.append({"id": q.id, "query": q.query, **score(trace, q.relevant, k), "error": None})
        if progress:
            progress(done, len(queries))
    means = {m: round(fmean(r[m] for r in results), 6) for m in METRICS}
    out = {"id": new_trace_id(), "created_at": now_iso(), "version": version.id, "recipe": version.recipe,
           "queries": name, "queries_sha256": digest(list(queries)), "k": k, "count": len(results),
           "failed": sum(1 for r in results if r["error"]), "metrics": means, "results": results}
    ws.write(lambda: _store(ws, out))
    return out


def _store(ws: Evaluator, out: dict[str, Any]) -> None:
    row = {key: out[key] for key in ("id", "created_at", "version", "recipe", "queries", "queries_sha256", "k",
                                     "count")}
    ws.catalog.db.table("eval_runs").insert({**row, "metrics": json.dumps(out["metrics"], sort_keys=True)})


def compare(ws: Evaluator, queries: Sequence[LabeledQuery], a: Version, b: Version, k: int = 10, name: str = "",
            progress: Tick | None = None, note: Note | None = None) -> dict[str, Any]:
    """Both versions on the same queries, and per metric: both means, the difference, and whether it is
    significant (a paired bootstrap over the queries)."""
    if a.recipe != b.recipe:
        raise UserError(f"versions {a.id} and {b.id} are of different recipes ({a.recipe!r}, {b.recipe!r})")
    total = 2 * len(queries)

    def half(offset: int) -> Tick | None:
        return (lambda done, _n: progress(offset + done, total)) if progress else None

    first = run(ws, queries, a, k, name, half(0), note)
    second = run(ws, queries, b, k, name, half(len(queries)), note)
    rows = []
    for metric in METRICS:
        left = [r[metric] for r in first["results"]]
        right = [r[metric] for r in second["results"]]
        rows.append({"metric": metric, "a": first["metrics"][metric], "b": second["metrics"][metric],
                     "delta": round(second["metrics"][metric] - first["metrics"][metric], 6),
                     **paired_bootstrap(left, right)})
    return {"a": first, "b": second, "k": k, "count": len(queries), "comparison": rows}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], confidence: float = 0.95,
                     resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """The mean of ``b - a`` over queries resampled with replacement: its interval, a two-sided p-value
    (twice the share of resampled means on the far side of zero), and whether the interval excludes 0."""
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    if n == 0 or all(d == diffs[0] for d in diffs):  # no spread: every resample is the same mean
        mean = diffs[0] if diffs else 0.0
        return {"low": round(mean, 6), "high": round(mean, 6), "p_value": 1.0 if mean == 0 else 0.0,
                "significant": mean != 0 and n > 1, "test": "paired bootstrap"}
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    low, high = means[int(tail * resamples)], means[min(int((1 - tail) * resamples), resamples - 1)]
    observed = sum(diffs) / n
    far = sum(1 for m in means if (m <= 0 if observed > 0 else m >= 0))
    p_value = min(1.0, 2 * far / resamples)
    return {"low": round(low, 6), "high": round(high, 6), "p_value": round(p_value, 4),
            "significant": low > 0 or high < 0, "test": "paired bootstrap"}
