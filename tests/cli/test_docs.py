"""Docs that cannot rot: every setting is in ctx.toml.example, every command in the README."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from ctx.settings import Settings, SourceSettings
from tests.helpers import ROOT

EXAMPLE = (ROOT / "ctx.toml.example").read_text()
README = (ROOT / "README.md").read_text()


def _documented(key: str) -> bool:
    """A key line (``key =``, maybe commented out), a ``[table]`` header, or a listed shared key."""
    return (
        re.search(rf"^\s*#?\s*{re.escape(key)}\s*=", EXAMPLE, re.M) is not None
        or f"[{key}]" in EXAMPLE
        or re.search(rf"^#\s+{re.escape(key)}\s", EXAMPLE, re.M) is not None
    )


def _fields(model: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    out = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        out.append((name, model))
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out += _fields(sub)
    return out


@pytest.mark.parametrize("key", sorted({k for k, _ in _fields(Settings) if k != "sources"}))
def test_every_setting_is_in_the_example(key: str) -> None:
    assert _documented(key), f"{key} is not documented in ctx.toml.example"


def test_every_source_setting_is_in_the_example() -> None:
    from ctx.plugins import source_kinds

    missing = [
        f"{kind}.{name}"
        for kind, plugin in source_kinds().items()
        for name in plugin.settings_model.model_fields
        if not _documented(name)
    ]
    assert not missing
    assert set(SourceSettings.model_fields) <= {n for n in SourceSettings.model_fields if _documented(n)}


def test_the_example_is_a_valid_config(tmp_path, monkeypatch) -> None:
    import sqlite3

    from ctx.settings import load_settings

    (tmp_path / "docs").mkdir()
    (tmp_path / "tickets.jsonl").write_text("")
    sqlite3.connect(tmp_path / "customers.db").execute("create table customers (id text)").connection.close()
    config = tmp_path / "ctx.toml"
    config.write_text(EXAMPLE)
    settings = load_settings(config, env={})
    assert set(settings.sources) == {"docs", "tickets", "customers", "status_api", "sessions"}


def test_every_command_is_in_the_readme() -> None:
    from ctx.cli import app

    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert f"ctx {name}" in README, f"`ctx {name}` is not in the README"


def test_every_subcommand_is_in_the_readme() -> None:
    from ctx.cli import app

    for group in app.registered_groups:
        for command in group.typer_instance.registered_commands:
            name = f"{group.name} {command.name or command.callback.__name__}"
            assert f"ctx {name}" in README, f"`ctx {name}` is not in the README"


def test_every_provider_setting_is_in_the_example() -> None:
    from ctx.plugins import provider_kinds
    from ctx.settings import ProviderSettings, RecipeProvider, RecipeSettings

    missing = [
        f"{kind}.{name}"
        for kind, plugin in provider_kinds().items()
        for name, field in plugin.settings_model.model_fields.items()
        if not field.exclude and not _documented(name)
    ]
    shared = [*ProviderSettings.model_fields, *RecipeSettings.model_fields, *RecipeProvider.model_fields]
    assert not missing
    assert not [n for n in shared if not _documented(n)]


def test_every_experiment_setting_is_in_the_example() -> None:
    # [experiments.NAME] and their [experiments.NAME.variants.VARIANT] are tables of tables: _fields
    # does not reach their models, so they are listed here.
    from ctx.settings import ExperimentSettings, VariantSettings

    fields = [*ExperimentSettings.model_fields, *VariantSettings.model_fields]
    assert not [n for n in fields if not _documented(n)]
    assert "[experiments." in EXAMPLE and ".variants." in EXAMPLE


def test_help_texts_keep_their_setting_names() -> None:
    """Help is rendered as rich markup: an unescaped ``[slo]`` would vanish from `ctx slo --help`."""
    import click
    import typer.main

    from ctx.cli import app

    def texts(command: click.Command, path: str) -> list[tuple[str, str]]:
        found = [(path, command.help or "")] + [(f"{path} {p.name}", getattr(p, "help", "") or "")
                                                 for p in command.params]
        for name, sub in getattr(command, "commands", {}).items():
            found += texts(sub, f"{path} {name}")
        return found

    for where, text in texts(typer.main.get_command(app), "ctx"):
        bare = re.findall(r"(?<!\\)\[[a-z][\w.]*\]", text)
        assert not bare, f"{where}: {bare} would be read as markup; write \\\\[{bare[0][1:]}"
