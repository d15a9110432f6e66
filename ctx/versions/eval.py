"""Offline evaluation: assemble every labeled query with a version (no trace is stored), score the
rankings and contexts, keep one ``eval_runs`` row per run with the data it ran on, and compare two
versions query by query on the same data."""

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
from ctx.versions.metrics import METRICS, RECALL_DEPTH, score, unscored
from ctx.versions.store import Version

if TYPE_CHECKING:
    from ctx.assemble.context import AssembleRequest
    from ctx.versions.ports import Evaluator, Registry, Runner

Tick = Callable[[int, int], None]  # (queries done, of total)
Note = Callable[[str], None]
RESAMPLES = 2000  # paired bootstrap draws: enough for a stable 95% interval, quick for thousands of queries
SEED = 0  # fixed, so the same two runs always give the same verdict
SERVED = ("ok", "cached", "coalesced")  # a provider's own ranking, fresh or from its cache


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
        progress: Tick | None = None, note: Note | None = None, store: bool = True) -> dict[str, Any]:
    """Evaluate ``version`` on ``queries`` and store the run (unless ``store`` is false); its means, the
    data it ran on, and per-query results."""
    from ctx.assemble.assembler import CriticalMissing

    if k < 1:
        raise UserError("--k must be 1 or more")
    target = target_for(ws, version, note)
    data = data_of(target, version)
    results: list[dict[str, Any]] = []
    for done, q in enumerate(queries, 1):
        request = target.request(q.query, recipe=version.recipe)
        try:
            # The assembler returns the trace record without storing it: eval runs count toward no SLO,
            # cost ledger or experiment, and leave `ctx traces` as it was.
            _, trace = target.assembler.assemble(request)
        except CriticalMissing as exc:  # the version gave this query no context: it scores nothing
            results.append({"id": q.id, "query": q.query, **unscored(str(exc))})
        else:
            scores = score(trace, q.relevant, k, deeper(target, request, trace))
            results.append({"id": q.id, "query": q.query, **scores, "error": None})
        if progress:
            progress(done, len(queries))
    if data_of(target, version)["sha256"] != data["sha256"]:  # the run would measure a mix of two data sets
        raise UserError(f"the data changed while version {version.id} was evaluated (an ingest ran): evaluate again")
    means = {m: round(fmean(r[m] for r in results), 6) for m in METRICS}
    depths = [r["depth"] for r in results if not r["error"]] or [0]
    out = {"id": new_trace_id(), "created_at": now_iso(), "version": version.id, "recipe": version.recipe,
           "queries": name, "queries_sha256": digest(list(queries)), "data": data, "k": k, "count": len(results),
           "failed": sum(1 for r in results if r["error"]), "metrics": means,
           "depth": {"cutoff": RECALL_DEPTH, "mean": round(fmean(depths), 2), "min": min(depths)},
           "results": results}
    if store:
        ws.write(lambda: _store(ws, out))
    return out


def data_of(target: Runner, version: Version) -> dict[str, Any]:
    """What a run searched over: the fingerprint of the documents (not of their chunks, so a side index
    of the same documents chunked otherwise is the same data), and the index it was searched in."""
    sha, documents = target.catalog.data_fingerprint()
    return {"sha256": sha, "documents": documents, "index": version.index, "chunks": target.catalog.chunk_count()}


def deeper(target: Runner, request: AssembleRequest, trace: Any) -> list[dict[str, Any]]:
    """The search of each retrieval provider that answered, run again to ``RECALL_DEPTH`` documents, for
    recall@100: the ranking a version serves stops at ``top_k`` chunks. A provider without ``ranked`` (a
    plugin's) adds nothing, and its recall@100 is measured on the ranking it served."""
    ask = request.for_providers()
    rows: list[dict[str, Any]] = []
    for name, outcome in trace.providers.items():
        ranked = getattr(target.assembler.providers.get(name), "ranked", None)
        # A provider that failed or was stood in for served no ranking of its own: nothing to extend.
        if outcome.get("kind") != "retrieval" or outcome.get("status") not in SERVED or ranked is None:
            continue
        rows += [{"chunk_id": h.chunk_id, "doc_id": h.doc_id, "doc_key": h.doc_key, "source": h.source,
                  "score": h.score, "provider": name} for h in ranked(ask, RECALL_DEPTH)]
    return rows


def _store(ws: Evaluator, *runs: dict[str, Any]) -> None:
    keys = ("id", "created_at", "version", "recipe", "queries", "queries_sha256", "k", "count")
    ws.catalog.db.table("eval_runs").insert_all(
        {**{key: out[key] for key in keys}, "metrics": json.dumps(out["metrics"], sort_keys=True),
         "data_sha256": out["data"]["sha256"]} for out in runs)


def compare(ws: Evaluator, queries: Sequence[LabeledQuery], a: Version, b: Version, k: int = 10, name: str = "",
            progress: Tick | None = None, note: Note | None = None) -> dict[str, Any]:
    """Both versions on the same queries and the same data, and per metric: both means, the difference,
    and whether it is significant (a paired bootstrap over the queries). Runs on different data are
    refused: the difference would be the data's as much as the versions'. Both runs are stored only then."""
    if a.recipe != b.recipe:
        raise UserError(f"versions {a.id} and {b.id} are of different recipes ({a.recipe!r}, {b.recipe!r})")
    total = 2 * len(queries)

    def half(offset: int) -> Tick | None:
        return (lambda done, _n: progress(offset + done, total)) if progress else None

    # Checked before and after: a stale side index is refused before any query runs; an ingest between
    # the two halves is caught at the end.
    same_data(ws, a, b, data_of(target_for(ws, a, note), a), data_of(target_for(ws, b, note), b))
    first = run(ws, queries, a, k, name, half(0), note, store=False)
    second = run(ws, queries, b, k, name, half(len(queries)), note, store=False)
    same_data(ws, a, b, first["data"], second["data"])
    ws.write(lambda: _store(ws, first, second))
    rows = []
    for metric in METRICS:
        left = [r[metric] for r in first["results"]]
        right = [r[metric] for r in second["results"]]
        rows.append({"metric": metric, "a": first["metrics"][metric], "b": second["metrics"][metric],
                     "delta": round(second["metrics"][metric] - first["metrics"][metric], 6),
                     **paired_bootstrap(left, right)})
    return {"a": first, "b": second, "k": k, "count": len(queries), "comparison": rows}


def same_data(ws: Registry, a: Version, b: Version, left: dict[str, Any], right: dict[str, Any]) -> None:
    """Refuse (one line) two runs whose data fingerprints differ, saying what brings them together."""
    if left["sha256"] == right["sha256"]:
        return
    live = ws.current_version(a.recipe).index
    sides = [v.id for v in (a, b) if v.index != live]
    fix = (f"bring its index up to date with `ctx versions build {sides[0]}`" if len(sides) == 1 else
           "bring their indexes up to date with `ctx versions build`" if sides else
           "an ingest ran between the two runs: compare again")
    raise UserError(f"versions {a.id} and {b.id} ran on different data ({left['sha256'][:12]}, "
                    f"{left['documents']} documents vs {right['sha256'][:12]}, {right['documents']}): {fix}")


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
