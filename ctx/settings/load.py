"""Finding and reading ctx.toml, checked against the installed plugins (or the registry the caller passes)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ctx.errors import ConfigError
from ctx.home import home_for
from ctx.settings.base import to_config_error
from ctx.settings.registry import Registry, installed_registry
from ctx.settings.root import Settings


def load_settings(path: Path | None, env: Mapping[str, str] | None = None,
                  registry: Registry | None = None) -> Settings:
    """Read and validate ctx.toml (or defaults when there is none); CTX_HOME overrides ``home``.

    Args:
        path: the config file, or None for the defaults.
        env: the environment to read CTX_HOME and CTX_MODEL_DIR from (default: os.environ).
        registry: the plugins to check kinds and names against; default: the installed plugins plus the
            drop-ins of ``plugins_dir``, from ctx.plugins. A caller that passes one owns its plugin set
            (``plugins_dir`` is then not loaded).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        if not path.exists():
            raise ConfigError("", f"config file not found: {path}")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError("", f"{path}: not UTF-8 text") from None
    base = path.parent.resolve() if path else Path.cwd()
    if registry is None:
        # Drop-in plugins may add source kinds, so they load before [sources] is validated.
        dropins = raw.get("plugins_dir", "plugins")
        registry = installed_registry((base / os.path.expanduser(dropins)).resolve() if isinstance(dropins, str)
                                      else None)
    try:
        settings = Settings.model_validate(raw, context={"base_dir": base, "registry": registry})
    except ValidationError as exc:
        raise to_config_error(exc) from None
    updates: dict[str, Any] = {"config_path": path.resolve() if path else None}
    updates["home"] = home_for(settings.home, environ)  # the same rules connect() reads a daemon's home by
    if environ.get("CTX_MODEL_DIR"):  # lets many homes (tests, CI) share one unpacked model
        updates["embedding"] = settings.embedding.model_copy(update={"model_dir": environ["CTX_MODEL_DIR"]})
    return settings.model_copy(update=updates)

