"""A/B experiments: deterministic assignment close to the configured split, the report's interval math on
known data, and `ctx ab report` over requests really assembled by two versions of a recipe."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ctx.assemble.context import AssembleRequest
from ctx.errors import ConfigError
from ctx.retrieve.hybrid import Filters
from ctx.settings import Settings, load_settings
from ctx.versions import stats
from ctx.versions.experiments import assign
from tests.helpers import ROOT, Workspaces

BASE = """
[embedding]
embedder = "none"

[cache]
enabled = false

[sources.docs]
kind = "files"
path = "docs"
"""

EXPERIMENT = """
[experiments.trial]
metric = "tokens"
min_samples = 15

[experiments.trial.variants.prod]
version = "prod"
share = 0.5

[experiments.trial.variants.candidate]
version = "candidate"
share = 0.5
"""

QUERIES = ["how do I rotate an API key", "refund a double charge", "webhook retries", "rate limits per plan",
           "single sign-on setup", "export audit logs", "invoice history", "delete my account"]


def _settings(experiments: dict[str, Any]) -> Settings:
    return Settings.model_validate({"experiments": experiments})


def _request(user: str | None = None, session: str | None = None, tenant: str | None = None,
             recipe: str = "default") -> AssembleRequest:
    return AssembleRequest("q", 100, "gpt-4o", "markdown", Filters(tenant=tenant), recipe=recipe, user=user,
                           session=session)


def _variants(*shares: float) -> dict[str, Any]:
    return {f"v{i}": {"version": f"label{i}", "share": s} for i, s in enumerate(shares)}


# --- assignment ------------------------------------------------------------------------------------

def test_assignment_is_deterministic_across_processes() -> None:
    experiments = _settings({"trial": {"variants": _variants(0.5, 0.5)}}).experiments
    keys = [f"user-{i}" for i in range(300)]
    here = [assign(experiments, _request(k)).variant for k in keys]  # type: ignore[union-attr]
    assert here == [assign(experiments, _request(k)).variant for k in keys]  # type: ignore[union-attr]
    script = (
        "import json, sys\n"
        "from ctx.settings import Settings\nfrom ctx.versions.experiments import assign\n"
        "from ctx.assemble.context import AssembleRequest\n"
        "e = Settings.model_validate({'experiments': {'trial': {'variants': {"
        "'v0': {'version': 'label0', 'share': 0.5}, 'v1': {'version': 'label1', 'share': 0.5}}}}}).experiments\n"
        "print(json.dumps([assign(e, AssembleRequest('q', 100, 'm', 'markdown', user=f'user-{i}')).variant "
        "for i in range(300)]))\n"
    )
    # A fresh interpreter with another hash seed: nothing in the bucket may depend on hash().
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={"PYTHONHASHSEED": "12345", "PATH": ""}, cwd=ROOT)
    assert json.loads(proc.stdout) == here
    assert set(here) == {"v0", "v1"}


def test_assignment_follows_the_configured_split() -> None:
    experiments = _settings({"trial": {"variants": _variants(0.7, 0.3)}}).experiments
    counts = {"v0": 0, "v1": 0}
    n = 20_000
    for i in range(n):
        found = assign(experiments, _request(f"u{i}"))
        assert found is not None and found.experiment == "trial"
        counts[found.variant] += 1
    assert abs(counts["v0"] / n - 0.7) <= 0.015 and abs(counts["v1"] / n - 0.3) <= 0.015, counts


def test_partial_shares_leave_the_rest_unenrolled() -> None:
    experiments = _settings({"trial": {"variants": _variants(0.1, 0.2)}}).experiments
    counts: dict[str | None, int] = {"v0": 0, "v1": 0, None: 0}
    n = 20_000
    for i in range(n):
        found = assign(experiments, _request(f"u{i}"))
        counts[found.variant if found else None] += 1
    assert abs(counts["v0"] / n - 0.1) <= 0.015 and abs(counts["v1"] / n - 0.2) <= 0.015, counts
    assert abs(counts[None] / n - 0.7) <= 0.015, counts


def test_shares_of_one_enrol_every_key() -> None:
    # 0.1 ten times adds up to 0.9999999999999999 in floating point: no key may fall into that gap.
    experiments = _settings({"trial": {"variants": _variants(*[0.1] * 10)}}).experiments
    assert all(assign(experiments, _request(f"u{i}")) is not None for i in range(20_000))


def test_requests_without_the_key_are_not_enrolled() -> None:
    by_user = _settings({"trial": {"variants": _variants(0.5, 0.5)}}).experiments
    assert assign(by_user, _request()) is None
    assert assign(by_user, _request(session="s1", tenant="acme")) is None
    assert assign(by_user, _request("alice")) is not None
    by_tenant = _settings({"trial": {"key": "tenant", "variants": _variants(0.5, 0.5)}}).experiments
    assert assign(by_tenant, _request("alice")) is None
    assert assign(by_tenant, _request(tenant="acme")) is not None
    disabled = _settings({"trial": {"enabled": False, "variants": _variants(0.5, 0.5)}}).experiments
    assert assign(disabled, _request("alice")) is None
    assert assign(by_user, _request("alice", recipe="support")) is None  # another recipe's traffic


@pytest.mark.parametrize(("table", "message"), [
    ('metric = "speed"\nvariants.a = { version = "x", share = 0.5 }\nvariants.b = { version = "y", share = 0.5 }',
     "config error: experiments.trial.metric: Input should be"),
    ('variants.a = { version = "x", share = 0.7 }\nvariants.b = { version = "y", share = 0.5 }',
     "config error: experiments.trial.variants: shares add up to 1.2; they must add up to 1 or less"),
    ('variants.a = { version = "x", share = 1.0 }',
     "config error: experiments.trial.variants: an experiment needs at least two"),
    ('recipe = "nope"\nvariants.a = { version = "x", share = 0.5 }\nvariants.b = { version = "y", share = 0.5 }',
     "config error: experiments.trial.recipe: unknown recipe 'nope' (known: default)"),
    ('variants."a b" = { version = "x", share = 0.5 }\nvariants.b = { version = "y", share = 0.5 }',
     "config error: experiments.trial.variants: bad variant name 'a b'"),
    ('variants.a = { version = " ", share = 0.5 }\nvariants.b = { version = "y", share = 0.5 }',
     "config error: experiments.trial.variants.a.version: the version is empty"),
    ('confidence = 1.5\nvariants.a = { version = "x", share = 0.5 }\nvariants.b = { version = "y", share = 0.5 }',
     "config error: experiments.trial.confidence: Input should be less than 1"),
])
def test_a_bad_experiment_is_a_one_line_config_error(write_config: Any, ctx_cli: Any, table: str,
                                                     message: str) -> None:
    config = write_config(f"[experiments.trial]\n{table}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config, env={})
    assert str(raised.value).startswith(message), raised.value
    res = ctx_cli("--config", str(config), "ab", "list", ok=False)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith(f"error: {message}") and res.stderr.count("\n") == 1, res.stderr


# --- the interval math on known data -------------------------------------------------------------

@pytest.mark.parametrize(("df", "expected"), [
    (1, 12.7062), (2, 4.3027), (5, 2.5706), (10, 2.2281), (30, 2.0423), (100, 1.9840)])
def test_student_t_quantiles_match_the_table(df: int, expected: float) -> None:
    assert stats.t_ppf(0.975, df) == pytest.approx(expected, abs=1e-4)  # two-sided 95% critical values
    assert stats.t_cdf(stats.t_ppf(0.975, df), df) == pytest.approx(0.975, abs=1e-12)


def test_student_t_quantiles_at_other_levels() -> None:
    assert stats.t_ppf(0.995, 3) == pytest.approx(5.8409, abs=1e-4)  # 99% two-sided, df 3
    assert stats.t_ppf(0.95, 20) == pytest.approx(1.7247, abs=1e-4)  # 90% two-sided, df 20
    assert stats.t_ppf(0.975, 10**6) == pytest.approx(1.95996, abs=1e-4)  # the normal's, for large df
    assert stats.t_cdf(-1.0, 1) == pytest.approx(0.25)  # Cauchy: atan(-1)/pi + 1/2


def test_mean_interval_of_a_known_sample() -> None:
    # 1..10: mean 5.5, sample sd sqrt(55/6) = 3.02765; t(0.975, 9) = 2.26216 → half-width 2.16585.
    e = stats.mean_interval([float(i) for i in range(1, 11)], 0.95)
    assert e.n == 10 and e.mean == 5.5 and e.sd == pytest.approx(math.sqrt(55 / 6))
    assert e.low == pytest.approx(3.33415, abs=1e-4) and e.high == pytest.approx(7.66585, abs=1e-4)
    assert stats.mean_interval([4.0], 0.95).low is None  # one value: a mean, no interval
    assert stats.mean_interval([], 0.95).mean is None


@pytest.mark.parametrize(("successes", "n", "low", "high"), [
    # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (the Wilson score interval)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_newcombe(successes: int, n: int, low: float, high: float) -> None:
    interval = stats.wilson_interval(successes, n, 0.95)
    assert interval is not None
    assert interval[0] == pytest.approx(low, abs=1e-4) and interval[1] == pytest.approx(high, abs=1e-4)


def test_welch_test_on_known_data() -> None:
    # The first example of Wikipedia's "Welch's t-test" article: t = -2.46 (A1 - A2), df 24.9, p = 0.021.
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    c = stats.welch(a1, a2, 0.95)
    assert c.difference == pytest.approx(sum(a2) / 15 - sum(a1) / 15)
    assert c.p_value == pytest.approx(0.021378, abs=1e-6)  # t = 2.4554, df = 24.99 (checked by quadrature)
    assert c.low > 0 and c.high > c.low  # p < 0.05: the 95% interval of the difference excludes 0
    same = stats.welch([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 0.95)
    assert same.difference == 0 and same.p_value == pytest.approx(1.0)


def test_two_proportion_test_on_known_data() -> None:
    # 45/100 vs 30/100: pooled 0.375, z = 0.15 / sqrt(0.375 * 0.625 * 0.02) = 2.1909, two-sided p = 0.02846.
    c = stats.two_proportions(45, 100, 30, 100, 0.95)
    assert c.difference == pytest.approx(-0.15)
    assert c.p_value == pytest.approx(0.02846, abs=1e-4)
    assert c.high < 0
    assert stats.two_proportions(0, 50, 0, 50, 0.95).p_value == 1.0  # no drops anywhere: no evidence


# --- the report over really assembled requests ----------------------------------------------------

@pytest.fixture
def two_versions(write_config: Any, docs_dir: Path, open_workspace: Workspaces) -> Any:
    """A home with versions labelled prod (the budget in force) and candidate (a budget of 120), and the
    config that runs an experiment between them."""
    from ctx.workspace import Workspace

    candidate = write_config(BASE + "[assembly]\nbudget = 120\n")
    ws = Workspace.open(candidate)
    ws.write(lambda: ws.versions.label(ws.current_version("default"), "candidate"))
    ws.close()
    config = write_config(BASE + EXPERIMENT)
    ws = open_workspace(config)
    ws.ingest()
    ws.write(lambda: ws.versions.label(ws.current_version("default"), "prod"))
    return ws, config


def _traffic(ws: Any, users: range) -> None:
    for i in users:
        ws.assemble(ws.request(QUERIES[i % len(QUERIES)], user=f"user-{i}"))


def test_report_says_not_significant_yet_with_few_users(two_versions: Any, ctx_cli: Any) -> None:
    ws, config = two_versions
    _traffic(ws, range(6))
    data = ctx_cli("--config", str(config), "ab", "report", "trial", "--json").json()
    assert data["requests"] == 6 and data["metric"] == "tokens"
    assert data["verdict"]["status"] == "too_few_samples" and data["verdict"]["winner"] is None
    assert data["verdict"]["message"].startswith("not significant yet: ")
    assert "of the 15 samples needed" in data["verdict"]["message"]
    text = ctx_cli("--config", str(config), "ab", "report", "trial").stdout
    assert "not significant yet" in text and "prod" in text and "candidate" in text


def test_report_picks_the_variant_with_fewer_tokens(two_versions: Any, ctx_cli: Any) -> None:
    ws, config = two_versions
    prod, candidate = ws.resolve_version("prod", "default"), ws.resolve_version("candidate", "default")
    assert prod.id != candidate.id
    _traffic(ws, range(80))
    ws.rerun(ws.traces.recent(1)[0].id)  # a rerun is an operator's check: not counted
    data = ctx_cli("--config", str(config), "ab", "report", "trial", "--json").json()
    by = {v["name"]: v for v in data["variants"]}
    assert data["requests"] == 80 == by["prod"]["requests"] + by["candidate"]["requests"]
    assert by["prod"]["version"] == prod.id and by["candidate"]["version"] == candidate.id
    assert by["prod"]["versions_seen"] == {prod.id: by["prod"]["requests"]}
    assert by["candidate"]["versions_seen"] == {candidate.id: by["candidate"]["requests"]}
    assert min(by["prod"]["requests"], by["candidate"]["requests"]) >= 15
    # Every request of the candidate was packed into its budget of 120; prod's took far more.
    assert by["candidate"]["tokens"]["high"] <= 120 < by["prod"]["tokens"]["low"]
    assert by["prod"]["tokens"]["low"] <= by["prod"]["tokens"]["mean"] <= by["prod"]["tokens"]["high"]
    assert by["candidate"]["drop_rate"]["mean"] > by["prod"]["drop_rate"]["mean"]  # blocks dropped over budget
    # The observed split of users is near the configured 50/50.
    assert abs(by["prod"]["observed_share"] - 0.5) < 0.2 and by["prod"]["expected_share"] == 0.5
    verdict = data["verdict"]
    assert verdict["status"] == "winner" and verdict["winner"] == "candidate", verdict
    assert verdict["message"].startswith("winner: candidate (tokens -")
    (comparison,) = verdict["comparisons"]
    assert comparison["significant"] and comparison["improved"] and comparison["high"] < 0
    text = ctx_cli("--config", str(config), "ab", "report", "trial").stdout
    assert "winner: candidate" in text
    listed = ctx_cli("--config", str(config), "ab", "list", "--json").json()
    assert [(v["name"], v["version"], v["requests"]) for v in listed[0]["variants"]] == [
        ("prod", prod.id, by["prod"]["requests"]), ("candidate", candidate.id, by["candidate"]["requests"])]


def test_report_counts_drops_and_shows_eval_scores(two_versions: Any, ctx_cli: Any) -> None:
    """Hand-made traces: the drop rate's definition, and the latest eval run of each variant's version."""
    from dataclasses import replace

    ws, config = two_versions
    ws.assemble(ws.request(QUERIES[0]))  # no user: not enrolled, so the experiment has only the traces below
    template = ws.traces.recent(1)[0]
    assert template.experiment is None
    prod = ws.resolve_version("prod", "default").id
    kinds = [[], [{"kind": "dropped"}], [{"kind": "not_applicable"}], [{"kind": "timeout"}], [{"kind": "truncated"}]]
    for i, degradations in enumerate(kinds):
        trace = replace(template, id=f"hand-{i}", degradations=degradations, experiment="trial", variant="prod",
                        version=prod)
        ws.write(lambda t=trace: ws.traces.write(t))
    for i, metrics in enumerate([{"recall@10": 0.5}, {"recall@10": 0.75, "mrr": 0.6}]):
        ws.catalog.db.table("eval_runs").insert({"id": f"e{i}", "created_at": f"2026-01-0{i + 1}T00:00:00.000+00:00",
                                                 "version": prod, "recipe": "default", "queries": "q.jsonl",
                                                 "k": 10, "count": 12, "metrics": json.dumps(metrics)})
    data = ctx_cli("--config", str(config), "ab", "report", "trial", "--json").json()
    by = {v["name"]: v for v in data["variants"]}
    # dropped and timeout lost a block; not_applicable (no user for a provider) and truncated did not.
    assert by["prod"]["drop_rate"] == {"n": 5, "drops": 2, "mean": 0.4, "low": pytest.approx(0.1176, abs=1e-4),
                                       "high": pytest.approx(0.7693, abs=1e-4)}
    assert by["prod"]["eval"]["metrics"] == {"recall@10": 0.75, "mrr": 0.6} and by["prod"]["eval"]["run"] == "e1"
    assert by["prod"]["eval"]["data"] is None  # a run from before eval_runs recorded its data
    assert by["candidate"]["eval"] is None
    assert "eval prod: mrr 0.6 · recall@10 0.75" in ctx_cli("--config", str(config), "ab", "report", "trial").stdout


def test_errors_are_one_line(two_versions: Any, ctx_cli: Any) -> None:
    _, config = two_versions
    res = ctx_cli("--config", str(config), "ab", "report", "nope", ok=False)
    assert res.exit_code == 3 and res.stdout == ""
    assert res.stderr == "error: unknown experiment 'nope' (configured: trial)\n"
    res = ctx_cli("--config", str(config), "ab", "report", "trial", "--since", "soon", ok=False)
    assert res.exit_code == 2 and res.stderr.startswith("error: bad --since 'soon'")


def test_report_through_the_daemon_equals_in_process(two_versions: Any, ctx_cli: Any, daemon: Any) -> None:
    ws, config = two_versions
    _traffic(ws, range(30))
    local = ctx_cli("--config", str(config), "ab", "report", "trial", "--json").json()
    listed = ctx_cli("--config", str(config), "ab", "list", "--json").json()
    d = daemon(config=config)
    assert ctx_cli("--config", str(config), "status", "--json").json()["daemon"]["pid"] == d.runtime.pid
    remote = ctx_cli("--config", str(config), "ab", "report", "trial", "--json").json()
    for report in (local, remote):
        report.pop("since"), report.pop("until")  # the window ends when the report is made
    assert remote == local and local["requests"] == 30
    assert ctx_cli("--config", str(config), "ab", "list", "--json").json() == listed
    res = ctx_cli("--config", str(config), "ab", "report", "nope", ok=False)
    assert res.exit_code == 3 and res.stderr == "error: unknown experiment 'nope' (configured: trial)\n"
