"""The "files" source kind: every matching file under a directory, as raw bytes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from wcmatch import glob

from ctx.errors import SourceError
from ctx.hookspecs import hookimpl
from ctx.ingest.formats import format_for_path
from ctx.ingest.source import FetchContext
from ctx.models import Record, Rejected
from ctx.settings import SourceSettings, resolve_path

# DOTGLOB stays off: hidden files are skipped before matching anyway.
GLOB_FLAGS = glob.GLOBSTAR | glob.BRACE | glob.FORCEUNIX


def check_glob(pattern: str) -> str:
    """Return ``pattern`` if it is a usable relative glob; raise ValueError saying what is wrong."""

    def bad(problem: str) -> ValueError:
        return ValueError(f"bad glob {pattern!r}: {problem}")

    if not pattern.strip():
        raise bad("empty pattern")
    if pattern.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", pattern):
        raise bad("absolute pattern; patterns are relative to the source path")
    in_class = False
    braces = 0
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i) and (end := pattern.find(":]", i + 2)) != -1:
                i = end + 2  # a POSIX class such as [:alpha:]
                continue
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 1
            if pattern[i : i + 1] in ("!", "^"):
                i += 1
            if pattern[i : i + 1] == "]":
                i += 1  # "[]...]": a leading ']' is a member, not the end
            continue
        elif char == "]":
            raise bad("unbalanced ']'")
        elif char == "{":
            braces += 1
        elif char == "}":
            braces -= 1
            if braces < 0:
                raise bad("unbalanced '}'")
        i += 1
    if in_class:
        raise bad("unbalanced '['")
    if braces:
        raise bad("unbalanced '{'")
    for part in pattern.split("/"):
        if "**" in part and part != "**":
            raise bad("'**' must be a whole path component, as in 'docs/**/*.md'")
        if part == "..":
            raise bad("'..' can never match a file under the source path")
    return pattern


class FilesSettings(SourceSettings):
    """A directory of files; ``include``/``exclude`` are globs relative to ``path``."""

    kind: Literal["files"] = "files"
    path: Path
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=list)
    follow_symlinks: bool = False

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Path:
        path = resolve_path(value, info)
        if not path.is_dir():
            raise ValueError(f"not a directory: {path}")
        return path

    @field_validator("include", "exclude")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        return [check_glob(pattern) for pattern in value]


@lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> Any:
    # Compiled once per pattern set: compiling per file was half the time of re-ingesting a large tree.
    return glob.compile(list(patterns), flags=GLOB_FLAGS)


def _matches(rel: str, patterns: list[str]) -> bool:
    return bool(patterns) and _matcher(tuple(patterns)).match(rel)


def _walk(root: Path, settings: FilesSettings) -> list[str]:
    """Relative posix paths of every candidate file, sorted."""

    def fail(exc: OSError) -> None:
        # A directory we cannot list would look like deleted files to a mirror sync.
        raise SourceError(f"cannot list {exc.filename}: {exc.strerror or exc}")

    found: list[str] = []
    seen: set[str] = set()
    for top, dirs, files in os.walk(root, onerror=fail, followlinks=settings.follow_symlinks):
        here = Path(top)
        if settings.follow_symlinks:
            real = os.path.realpath(top)
            if real in seen:
                dirs[:] = []  # a symlink loop, or a second route to the same directory
                continue
            seen.add(real)
        rel_top = here.relative_to(root).as_posix()
        prefix = "" if rel_top == "." else rel_top + "/"
        # An excluded directory is pruned whole, so exclude = ["node_modules"] does what it says.
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".")
            and (settings.follow_symlinks or not (here / d).is_symlink())
            and not _matches(prefix + d, settings.exclude)
        ]
        for name in files:
            rel = prefix + name
            if name.startswith(".") or (not settings.follow_symlinks and (here / name).is_symlink()):
                continue
            if _matches(rel, settings.include) and not _matches(rel, settings.exclude):
                found.append(rel)
    return sorted(found)


class FilesSource:
    """Yields each file's bytes undecoded; the ingest layer validates and converts them."""

    name = "files"
    settings_model = FilesSettings

    def fetch(self, settings: SourceSettings, context: FetchContext) -> Iterator[Record | Rejected]:
        assert isinstance(settings, FilesSettings)
        root = settings.path
        if not root.is_dir():
            raise SourceError(f"source {context.name}: directory not found: {root}")
        for rel in _walk(root, settings):
            try:
                with open(root / rel, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    if stat.st_size > settings.max_record_bytes:
                        # Checked before reading so a stray huge file is never loaded into memory.
                        yield Rejected(
                            key=rel,
                            reason=f"too large: {stat.st_size} bytes > max_record_bytes {settings.max_record_bytes}",
                        )
                        continue
                    data = handle.read()
            except FileNotFoundError:
                continue  # deleted since the listing: it is gone, which is what a mirror should see
            except OSError as exc:
                yield Rejected(key=rel, reason=f"unreadable: {exc.strerror or exc}")
                continue
            mtime = datetime.fromtimestamp(stat.st_mtime, tz=UTC).isoformat(timespec="seconds")
            yield Record(
                key=rel,
                text=data,
                title=None,
                metadata={"path": rel, "size": len(data), "mtime": mtime},
                format=format_for_path(rel),
            )


@hookimpl
def register_sources(register: Any) -> None:
    register(FilesSource())
