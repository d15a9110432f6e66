"""The ``static`` provider: system instructions or policy text from files, one block per file.

Files are listed and stat'ed on every request (cheap), so an edited policy is part of the cache key
and shows up at once, while unchanged files are read from the cache.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from wcmatch import glob as wcglob

from ctx.assemble.provider import BaseProvider, ContextRequest, Deadline, ProviderError, Services, make_block
from ctx.hookspecs import hookimpl
from ctx.models import Block
from ctx.settings import ProviderSettings

_FLAGS = wcglob.GLOBSTAR | wcglob.BRACE


class StaticSettings(ProviderSettings):
    kind: Literal["static"] = "static"
    paths: list[str] = Field(min_length=1, description="files or globs, relative to ctx.toml")
    max_file_bytes: int = Field(default=1_000_000, gt=0)
    base_dir: Path = Field(default=Path("."), exclude=True, validate_default=True)

    @field_validator("base_dir", mode="before")
    @classmethod
    def _base(cls, value: Any, info: ValidationInfo) -> Path:
        return Path((info.context or {}).get("base_dir", ".")).resolve()


class StaticProvider(BaseProvider):
    settings: StaticSettings

    def files(self) -> list[Path]:
        found: dict[str, Path] = {}
        base = self.settings.base_dir
        for pattern in self.settings.paths:
            pattern = os.path.expanduser(pattern)
            root = Path(pattern) if os.path.isabs(pattern) else base / pattern
            if root.is_file():
                found[str(root)] = root
                continue
            for match in sorted(wcglob.glob(str(root), flags=_FLAGS)):
                if Path(match).is_file():
                    found[match] = Path(match)
        return list(found.values())

    def key(self, request: ContextRequest) -> tuple[Any, ...]:
        out = []
        for path in self.files():
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(out)

    async def fetch(self, request: ContextRequest, deadline: Deadline) -> list[Block]:
        return await self.services.run_sync(self._read)

    def _read(self) -> list[Block]:
        files = self.files()
        if not files:
            raise ProviderError(f"no file matches {', '.join(self.settings.paths)}")
        blocks = []
        for n, path in enumerate(files, 1):
            try:
                if path.stat().st_size > self.settings.max_file_bytes:
                    raise ProviderError(f"{path.name} is larger than max_file_bytes")
                text = path.read_text(encoding="utf-8").strip()
                stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
            except (OSError, UnicodeDecodeError) as exc:
                raise ProviderError(f"cannot read {path.name}: {type(exc).__name__}") from None
            title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")),
                         path.stem)
            key = os.path.relpath(path, self.settings.base_dir)
            blocks.append(make_block(self.name, key, title, text, score=1.0 / n, as_of=stamp))
        return blocks


class StaticKind:
    name = "static"
    settings_model = StaticSettings

    def create(self, name: str, settings: ProviderSettings, services: Services) -> StaticProvider:
        return StaticProvider(name, settings, services)


@hookimpl
def register_providers(register: Any) -> None:
    register(StaticKind())
