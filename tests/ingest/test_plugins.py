"""Drop-in plugins: a file in plugins/ next to ctx.toml can add a source kind; a broken one is a config error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctx import plugins
from ctx.errors import ConfigError

NOTES_PLUGIN = textwrap.dedent('''
    """A tiny third-party source kind: numbered notes generated from a greeting."""

    from typing import Any, Literal

    from ctx.hookspecs import hookimpl
    from ctx.models import Record, Rejected
    from ctx.settings import SourceSettings


    class NotesSettings(SourceSettings):
        kind: Literal["notes"] = "notes"
        greeting: str
        count: int = 3


    class NotesSource:
        name = "notes"
        settings_model = NotesSettings

        def fetch(self, settings: Any, context: Any):
            for i in range(settings.count):
                yield Record(key=f"note-{i}", text=f"{settings.greeting} number {i}: the quokka ledger balances.",
                             title=f"Note {i}", metadata={"n": i}, format="text")
            yield Rejected(key="note-bad", reason="the plugin refused this one")


    @hookimpl
    def register_sources(register: Any) -> None:
        register(NotesSource())
''')


@pytest.fixture(autouse=True)
def no_leaked_plugins() -> Iterator[None]:
    """Drop-ins register on the process-wide plugin manager: undo whatever a test registered."""
    pm = plugins.plugin_manager()
    before = {name for name, _ in pm.list_name_plugin()}
    dirs_before = set(plugins._loaded_dirs)
    modules_before = set(sys.modules)
    yield
    for name, _ in list(pm.list_name_plugin()):
        if name not in before:
            pm.unregister(name=name)
    for name in set(sys.modules) - modules_before:
        if name.startswith("ctx_dropin_"):
            del sys.modules[name]
    plugins._loaded_dirs.intersection_update(dirs_before)
    plugins._registries.cache_clear()
    assert "notes" not in plugins.source_kinds()
    assert {name for name, _ in pm.list_name_plugin()} == before


def _config(tmp_path: Path, extra: str = "") -> None:
    (tmp_path / "ctx.toml").write_text(
        textwrap.dedent(f"""
        {extra}
        [embedding]
        embedder = "none"

        [sources.notes]
        kind = "notes"
        greeting = "hello from acme"
        criticality = "critical"
    """)
    )


def test_a_dropin_source_kind_is_usable_from_ctx_toml(tmp_path: Path, ctx_cli) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "notes_source.py").write_text(NOTES_PLUGIN)
    _config(tmp_path)
    sources = ctx_cli("sources", "--json").json()
    assert [(s["name"], s["kind"], s["criticality"]) for s in sources] == [("notes", "notes", "critical")]
    summary = ctx_cli("ingest", "--json").json()
    assert summary["ok"] is True
    assert summary["totals"]["new"] == 3 and summary["totals"]["quarantined"] == 1
    hits = ctx_cli("search", "quokka ledger", "--json").json()
    assert {h["doc_key"] for h in hits} == {"note-0", "note-1", "note-2"}
    assert {h["source"] for h in hits} == {"notes"}
    out = ctx_cli("assemble", "quokka ledger", "--json").json()
    assert "hello from acme number" in out["context"]
    assert "ctx_dropin_notes_source" in ctx_cli("status", "--json").json()["plugins"]


def test_a_dropin_settings_model_is_strict_too(tmp_path: Path, ctx_cli) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "notes_source.py").write_text(NOTES_PLUGIN)
    (tmp_path / "ctx.toml").write_text(
        '[sources.notes]\nkind = "notes"\ngreeting = "hi"\ngreetings = "typo"\n'
    )
    res = ctx_cli("sources", "--json", ok=False)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.splitlines() == ["error: config error: sources.notes.greetings: unknown key"]
    (tmp_path / "ctx.toml").write_text('[sources.notes]\nkind = "notes"\n')
    res = ctx_cli("sources", "--json", ok=False)
    assert res.stderr.splitlines() == ["error: config error: sources.notes.greeting: missing required key"]


def test_a_configured_plugins_dir_is_used(tmp_path: Path, ctx_cli) -> None:
    (tmp_path / "extensions").mkdir()
    (tmp_path / "extensions" / "notes_source.py").write_text(NOTES_PLUGIN)
    _config(tmp_path, 'plugins_dir = "extensions"')
    summary = ctx_cli("ingest", "--json").json()
    assert summary["totals"]["new"] == 3


def test_without_the_dropin_the_kind_is_unknown(tmp_path: Path, ctx_cli) -> None:
    _config(tmp_path)
    res = ctx_cli("sources", "--json", ok=False)
    assert res.exit_code == 2
    assert len(res.stderr.splitlines()) == 1
    assert "sources.notes.kind: unknown kind 'notes'" in res.stderr


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('raise RuntimeError("boom at import")\n', ["RuntimeError", "boom at import"]),
        ('raise ValueError("first line\\nsecond line")\n', ["first line second line"]),
        ("def broken(:\n    pass\n", ["SyntaxError"]),
        ("import ctx_no_such_module_anywhere\n", ["ctx_no_such_module_anywhere"]),
    ],
    ids=["raises", "multi-line message", "syntax error", "missing import"],
)
def test_a_broken_dropin_is_a_one_line_config_error(
    tmp_path: Path, ctx_cli, body: str, words: list[str]
) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "broken.py").write_text(body)
    (tmp_path / "ctx.toml").write_text('[embedding]\nembedder = "none"\n')
    for command in (["sources", "--json"], ["ingest", "--json"]):
        res = ctx_cli(*command, ok=False)
        assert res.exit_code == 2, res
        assert res.stdout == ""
        lines = res.stderr.splitlines()
        assert len(lines) == 1, res.stderr
        assert "Traceback" not in res.stderr
        assert lines[0].startswith("error: config error: plugins_dir: broken.py failed to load")
        for word in words:
            assert word in lines[0], lines[0]


def test_a_dropin_reusing_a_builtin_kind_name_is_a_config_error(tmp_path: Path, ctx_cli) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "clash.py").write_text(NOTES_PLUGIN.replace('"notes"', '"files"'))
    (tmp_path / "ctx.toml").write_text(
        '[embedding]\nembedder = "none"\n\n[sources.x]\nkind = "jsonl"\npath = "x"\n'
    )
    res = ctx_cli("sources", "--json", ok=False)
    assert res.exit_code == 2 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1
    assert "two plugins register the same name 'files'" in res.stderr


def test_settings_import_neither_the_plugins_nor_the_builtins() -> None:
    # The registry is passed in (validation context): settings and built-ins must not import each other.
    code = textwrap.dedent("""
        import sys
        from types import SimpleNamespace
        import ctx.settings
        assert not any(m.startswith(("ctx.plugins", "ctx.builtins")) for m in sys.modules)
        kinds = {"plain": SimpleNamespace(settings_model=ctx.settings.SourceSettings)}
        registry = SimpleNamespace(source_kinds=kinds, provider_kinds={}, embedders={"e": None},
                                   summarizers={}, renderers={})
        s = ctx.settings.Settings.model_validate(
            {"sources": {"a": {"kind": "plain"}}, "embedding": {"embedder": "e"}}, context={"registry": registry})
        assert s.sources["a"].kind == "plain" and s.registry is registry
        assert not any(m.startswith(("ctx.plugins", "ctx.builtins")) for m in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_builtins_load_from_ctx_entry_points_whatever_ctx_load_plugins_says(monkeypatch) -> None:
    assert "ctx.builtins.files_source" in plugins.plugin_names()  # conftest sets CTX_LOAD_PLUGINS=""
    with monkeypatch.context() as patch, pytest.raises(ConfigError, match=r"pip install -e \.") as caught:
        patch.setattr(plugins, "_pm", None)
        patch.setattr(plugins, "entry_points", lambda group: [])  # a checkout that was never installed
        plugins.plugin_manager()
    assert len(str(caught.value).splitlines()) == 1
