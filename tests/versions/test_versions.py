"""Configuration versions as users meet them: stable fingerprints, labels and rollback, assembling and
rerunning with another version, side indexes built on demand, and one-line errors for bad references."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BASE = """
[embedding]
embedder = "none"

[daemon]
scheduler = false

[sources.docs]
kind = "files"
path = "docs"
include = ["api/**", "billing/**"]

[providers.policy]
kind = "static"
paths = ["policy/*.md"]

[recipes.support]
providers.policy = {{ criticality = "important", share = {share} }}
providers.retrieval = {{ criticality = "important" }}
{extra}
"""
QUERY = "how do I rotate an API key?"


def config(write_config: Any, extra: str = "", share: float = 0.2) -> Path:
    return write_config(BASE.format(extra=extra, share=share))


def one_line_error(res: Any, code: int) -> str:
    assert res.exit_code == code, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert res.stdout == ""
    return lines[0]


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "keys.md").write_text("# Key policy\n\nRotate a leaked key at once and tell security.\n")
    return folder


def _ids(ctx_cli: Any, cfg: Path, recipe: str | None = None) -> dict[str, dict[str, Any]]:
    args = ["--config", str(cfg), "versions", "list", "--json", *(["--recipe", recipe] if recipe else [])]
    return {v["id"]: v for v in ctx_cli(*args).json()}


def _current(ctx_cli: Any, cfg: Path, recipe: str = "default") -> str:
    return next(v for v in _ids(ctx_cli, cfg, recipe).values() if v["current"])["id"]


# --- fingerprints ---------------------------------------------------------------------------------


def test_a_fresh_home_lists_one_version_per_recipe_with_the_same_ids_in_every_process(
        write_config: Any, policy: Path, docs_dir: Path, ctx_env: dict[str, str], tmp_path: Path) -> None:
    cfg = config(write_config)

    def listed(home: Path) -> list[dict[str, Any]]:
        env = {**os.environ, **ctx_env, "CTX_HOME": str(home)}
        proc = subprocess.run([sys.executable, "-m", "ctx.cli", "--config", str(cfg), "versions", "list", "--json"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    first = listed(tmp_path / "home")
    assert sorted(v["recipe"] for v in first) == ["default", "support"]
    assert all(v["current"] and v["labels"] == [] and v["index_state"] == "live" for v in first)
    again = listed(tmp_path / "home")  # a second process on the same home: the same versions, not new ones
    assert again == first
    elsewhere = listed(tmp_path / "other-home")  # the id is of the configuration, not of the home
    assert sorted(v["id"] for v in elsewhere) == sorted(v["id"] for v in first)


def _edit(setting: str, tmp_path: Path) -> str:
    """BASE with one setting changed."""
    text = BASE.format(extra="", share=0.2)
    edits = {
        # relevant: what is chunked, retrieved and assembled
        "chunking.max_tokens": lambda t: t + "[chunking]\nmax_tokens = 128\n",
        "retrieval.top_k": lambda t: t + "[retrieval]\ntop_k = 5\n",
        "a recipe's provider share": lambda t: BASE.format(extra="", share=0.3),
        "a static provider's paths": lambda t: t.replace('paths = ["policy/*.md"]', 'paths = ["policy/k*.md"]'),
        # irrelevant: where and how it runs, what it costs
        "daemon port": lambda t: t.replace("scheduler = false", "scheduler = false\nport = 9999"),
        "pricing": lambda t: t + "[pricing]\ndefault = 0.01\nembedding = 0.002\n",
        "embedding.model_dir": lambda t: t.replace('embedder = "none"',
                                                   f'embedder = "none"\nmodel_dir = "{tmp_path / "models-2"}"'),
    }
    return edits[setting](text)


def _support_id(cfg: Path, tmp_path: Path, name: str) -> str:
    from ctx.settings import find_config, load_settings
    from ctx.workspace import Workspace

    env = {"CTX_HOME": str(tmp_path / f"home-{name}")}  # no CTX_MODEL_DIR: model_dir is the config's own
    ws = Workspace(load_settings(find_config(cfg, env), env), env)
    try:
        return ws.current_version("support").id
    finally:
        ws.close()


@pytest.mark.parametrize(("setting", "relevant"), [
    ("chunking.max_tokens", True), ("retrieval.top_k", True), ("a recipe's provider share", True),
    ("a static provider's paths", True), ("daemon port", False), ("pricing", False), ("embedding.model_dir", False),
])
def test_relevant_settings_make_another_version_and_others_do_not(setting: str, relevant: bool, write_config: Any,
                                                                  policy: Path, docs_dir: Path, tmp_path: Path) -> None:
    before = _support_id(config(write_config), tmp_path, "before")
    assert _support_id(config(write_config), tmp_path, "again") == before  # two opens, the same id
    after = _support_id(write_config(_edit(setting, tmp_path)), tmp_path, "after")
    assert (after != before) is relevant, setting


# --- labels and rollback --------------------------------------------------------------------------


def test_label_points_at_a_version_and_rollback_moves_it_back(write_config: Any, policy: Path, docs_dir: Path,
                                                              ctx_cli: Any) -> None:
    cfg = config(write_config)
    a = _current(ctx_cli, cfg)
    first = ctx_cli("--config", str(cfg), "versions", "label", a, "prod", "--json").json()
    assert first == {"recipe": "default", "label": "prod", "version": a, "previous": None}
    cfg = config(write_config, "[retrieval]\ntop_k = 3\n")
    b = _current(ctx_cli, cfg)
    assert b != a
    moved = ctx_cli("--config", str(cfg), "versions", "label", b[:6], "prod", "--json").json()
    assert (moved["version"], moved["previous"]) == (b, a)
    shown = ctx_cli("--config", str(cfg), "versions", "show", "prod", "--json").json()
    assert shown["id"] == b and shown["labels"] == ["prod"] and shown["config"]["retrieval"]["top_k"] == 3

    back = ctx_cli("--config", str(cfg), "versions", "rollback", "prod", "--json").json()
    assert back == {"recipe": "default", "label": "prod", "from": b, "to": a}
    listed = _ids(ctx_cli, cfg)
    assert listed[a]["labels"] == ["prod"] and listed[b]["labels"] == [] and listed[b]["current"]
    # Rollback is an undo stack: the first move (from nowhere) has nothing before it to go back to.
    again = ctx_cli("--config", str(cfg), "versions", "rollback", "prod", ok=False)
    assert "no earlier version to roll back to" in one_line_error(again, 2)

    diff = ctx_cli("--config", str(cfg), "versions", "diff", a, b, "--json").json()
    assert diff["changes"] == [{"setting": "retrieval.top_k", "from": 20, "to": 3}]
    assert diff["index_differs"] is False and diff["needs_side_index"] == []


def test_bad_references_are_one_line_errors(write_config: Any, policy: Path, docs_dir: Path, ctx_cli: Any) -> None:
    cfg = config(write_config)
    ctx_cli("--config", str(cfg), "ingest", "-q")
    default = _current(ctx_cli, cfg)
    cli = ("--config", str(cfg))
    # Not found: exit 3, as for a trace or a job (README: 3 for something not found).
    assert "no version or label 'nope'" in one_line_error(ctx_cli(*cli, "versions", "show", "nope", ok=False), 3)
    assert "no version or label" in one_line_error(ctx_cli(*cli, "assemble", QUERY, "--version", "nope",
                                                           ok=False), 3)
    assert "no label 'nope'" in one_line_error(ctx_cli(*cli, "versions", "rollback", "nope", ok=False), 3)
    # Bad input: exit 2.
    other = ctx_cli(*cli, "assemble", QUERY, "--recipe", "support", "--version", default, ok=False)
    assert f"version {default} is of recipe 'default', not 'support'" in one_line_error(other, 2)
    assert "pattern" in one_line_error(ctx_cli(*cli, "versions", "show", "a/b", ok=False), 2)
    assert "label: String should match pattern" in one_line_error(ctx_cli(*cli, "versions", "label", default, "9lives", ok=False), 2)
    assert "unknown recipe" in one_line_error(ctx_cli(*cli, "versions", "list", "--recipe", "nope", ok=False), 2)
    trace = ctx_cli(*cli, "assemble", QUERY, "--json").json()["trace_id"]
    assert "--rerun" in one_line_error(ctx_cli(*cli, "replay", trace, "--version", default, ok=False), 2)


def test_an_ambiguous_prefix_is_refused(write_config: Any, policy: Path, docs_dir: Path, ctx_cli: Any) -> None:
    """Two stored versions whose ids share their first 4 digits: that prefix names neither."""
    from ctx.settings import load_settings
    from ctx.versions.store import version_config, version_id

    settings = load_settings(config(write_config), env={"CTX_HOME": "unused"})
    seen: dict[str, int] = {}
    for top_k in range(1, 5000):  # 16**4 prefixes: a shared one turns up after a few hundred (birthday bound)
        retrieval = settings.retrieval.model_copy(update={"top_k": top_k})
        prefix = version_id(version_config(settings.model_copy(update={"retrieval": retrieval})))[:4]
        if prefix in seen:
            break
        seen[prefix] = top_k
    pair = (seen[prefix], top_k)
    for k in pair:
        _current(ctx_cli, config(write_config, f"[retrieval]\ntop_k = {k}\n"))
    res = ctx_cli("--config", str(config(write_config)), "versions", "show", prefix, ok=False)
    assert f"version prefix {prefix!r} is ambiguous" in one_line_error(res, 2)


# --- assembling and rerunning with a version --------------------------------------------------------


def test_assemble_and_rerun_with_another_version(write_config: Any, policy: Path, docs_dir: Path,
                                                 ctx_cli: Any) -> None:
    small = config(write_config, "[assembly]\nbudget = 120\n")
    ctx_cli("--config", str(small), "ingest", "-q")
    tight = _current(ctx_cli, small)
    ctx_cli("--config", str(small), "versions", "label", tight, "prod")
    cfg = config(write_config)  # the settings in force: the default budget (4000)
    live = _current(ctx_cli, cfg)

    out = ctx_cli("--config", str(cfg), "assemble", QUERY, "--json").json()
    assert out["budget"] == 4000 and out["version"] == live
    labelled = ctx_cli("--config", str(cfg), "assemble", QUERY, "--version", "prod", "--json").json()
    assert labelled["budget"] == 120 and labelled["tokens"] <= 120 and labelled["version"] == tight
    assert labelled["context"] != out["context"]
    traces = {t["id"]: t for t in ctx_cli("--config", str(cfg), "traces", "--json").json()}
    assert traces[out["trace_id"]]["version"] == live and traces[labelled["trace_id"]]["version"] == tight

    rerun = ctx_cli("--config", str(cfg), "replay", out["trace_id"], "--rerun", "--version", "prod", "--json").json()
    assert rerun["identical"] is False
    again = ctx_cli("--config", str(cfg), "replay", rerun["rerun"], "--json").json()
    assert again["version"] == tight and again["budget"] == 120 and again["replay_of"] == out["trace_id"]
    # And back: the tight trace rerun with the settings in force gets their budget, not the one it was made with.
    back = ctx_cli("--config", str(cfg), "replay", labelled["trace_id"], "--rerun", "--json").json()
    restored = ctx_cli("--config", str(cfg), "replay", back["rerun"], "--json").json()
    assert restored["version"] == live and restored["budget"] == 4000


def test_a_version_that_chunks_differently_runs_once_its_index_is_built(write_config: Any, policy: Path,
                                                                        docs_dir: Path, ctx_cli: Any,
                                                                        ctx_env: dict[str, str]) -> None:
    # A candidate that cuts documents into small chunks, labelled before the home has any index...
    fine = config(write_config, "[chunking]\nmax_tokens = 64\noverlap_tokens = 8\n")
    before = _current(ctx_cli, fine)
    ctx_cli("--config", str(fine), "versions", "label", before, "prod")
    # ... and the settings in force, which the home's index is built with.
    cfg = config(write_config)
    ctx_cli("--config", str(cfg), "ingest", "-q")
    listed = _ids(ctx_cli, cfg)
    assert listed[before]["index_state"] == "not built"

    refused = ctx_cli("--config", str(cfg), "assemble", QUERY, "--version", "prod", ok=False)
    assert f"ctx versions build {before}" in one_line_error(refused, 2)
    diff = ctx_cli("--config", str(cfg), "versions", "diff", "prod", _current(ctx_cli, cfg), "--json").json()
    assert diff["index_differs"] and diff["needs_side_index"] == [before]

    built = ctx_cli("--config", str(cfg), "versions", "build", "prod", "--json").json()
    assert built["built"] and built["summary"]["ok"] and built["summary"]["totals"]["new"] > 0
    home = Path(ctx_env["CTX_HOME"])
    assert Path(built["home"]) == home / "versions" / f"index-{listed[before]['index']}"
    assert [p.name for p in (home / "versions").iterdir()] == [Path(built["home"]).name]  # no staging left
    assert _ids(ctx_cli, cfg)[before]["index_state"] == "built"

    side = ctx_cli("--config", str(cfg), "assemble", QUERY, "--version", "prod", "--json").json()
    live = ctx_cli("--config", str(cfg), "assemble", QUERY, "--json").json()
    assert side["version"] == before and side["blocks"]
    # The side index has the small chunks: the same documents, cut differently.
    assert max(b["tokens"] for b in side["blocks"]) <= 64 < max(b["tokens"] for b in live["blocks"])
    again = ctx_cli("--config", str(cfg), "versions", "build", "prod", "--json").json()
    assert again["built"] and again["summary"]["totals"]["unchanged"] == built["summary"]["totals"]["new"]

    nothing = ctx_cli("--config", str(cfg), "versions", "build", _current(ctx_cli, cfg))
    assert "nothing to build" in nothing.stderr


def test_changing_the_chunking_re_chunks_unchanged_documents_at_the_next_ingest(
        write_config: Any, policy: Path, docs_dir: Path, ctx_cli: Any) -> None:
    """The live index follows the settings in force: same content, new chunking, new chunks."""
    coarse = config(write_config)
    first = ctx_cli("--config", str(coarse), "ingest", "--json").json()["totals"]
    fine = config(write_config, "[chunking]\nmax_tokens = 64\noverlap_tokens = 8\n")
    again = ctx_cli("--config", str(fine), "ingest", "--json").json()["totals"]
    assert (again["changed"], again["unchanged"]) == (first["new"], 0)
    live = ctx_cli("--config", str(fine), "assemble", QUERY, "--json").json()
    assert live["blocks"] and max(b["tokens"] for b in live["blocks"]) <= 64
    assert ctx_cli("--config", str(fine), "ingest", "--json").json()["totals"]["unchanged"] == first["new"]


# --- through the daemon -----------------------------------------------------------------------------


def test_versions_through_the_daemon(write_config: Any, policy: Path, docs_dir: Path, ctx_cli: Any,
                                     daemon: Any) -> None:
    cfg = config(write_config, "[assembly]\nbudget = 150\n")
    ctx_cli("--config", str(cfg), "ingest", "-q")
    tight = _current(ctx_cli, cfg)
    cfg = config(write_config)
    d = daemon(config=cfg)
    listed = json.loads(d.cli("versions", "list", "--json").stdout)
    live = next(v["id"] for v in listed if v["current"] and v["recipe"] == "default")
    assert tight in {v["id"] for v in listed}
    labelled = json.loads(d.cli("versions", "label", tight, "candidate", "--json").stdout)
    assert labelled["previous"] is None and labelled["version"] == tight
    json.loads(d.cli("versions", "label", live, "candidate", "--json").stdout)
    assert json.loads(d.cli("versions", "rollback", "candidate", "--json").stdout) == {
        "recipe": "default", "label": "candidate", "from": live, "to": tight}
    shown = json.loads(d.cli("versions", "show", "candidate", "--json").stdout)
    assert shown["id"] == tight and shown["config"]["assembly"]["budget"] == 150
    out = json.loads(d.cli("assemble", QUERY, "--version", "candidate", "--json").stdout)
    assert out["budget"] == 150 and out["version"] == tight
    bad = d.cli("versions", "show", "nope", check=False)
    assert bad.returncode == 3 and bad.stderr.startswith("error: no version or label 'nope'")
    assert json.loads(d.cli("versions", "diff", live, tight, "--json").stdout)["changes"] == [
        {"setting": "assembly.budget", "from": 4000, "to": 150}]
