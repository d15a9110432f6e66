"""Where a home is: the config file to read, and the home it names, found without loading any settings model.

``connect`` uses this to reach a running daemon before importing anything heavy; ``load_settings`` uses
the same rules, so both always agree on the home.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

CONFIG_NAME = "ctx.toml"


def find_config(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The config file to use: --config, then CTX_CONFIG, then ./ctx.toml if present."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if environ.get("CTX_CONFIG"):
        return Path(environ["CTX_CONFIG"])
    here = Path.cwd() / CONFIG_NAME
    return here if here.exists() else None


def home_for(configured: Path | None, env: Mapping[str, str]) -> Path:
    """CTX_HOME, else the ``home`` of ctx.toml (already resolved against its folder), else ./.ctx."""
    if env.get("CTX_HOME"):
        return Path(env["CTX_HOME"]).expanduser().resolve()
    return configured if configured is not None else (Path.cwd() / ".ctx").resolve()


def peek_home(path: Path | None, env: Mapping[str, str]) -> Path | None:
    """The home a config names, read from its ``home`` key alone; None when the file cannot say (missing,
    not TOML, a ``home`` that is not text): the full settings load then reports the problem."""
    configured = None
    if path is not None and not env.get("CTX_HOME"):
        try:
            value = tomllib.loads(path.read_text(encoding="utf-8")).get("home")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None
        if value is not None and not isinstance(value, str):
            return None
        if value is not None:
            home = Path(os.path.expanduser(value))
            configured = (home if home.is_absolute() else path.parent.resolve() / home).resolve()
    return home_for(configured, env)
