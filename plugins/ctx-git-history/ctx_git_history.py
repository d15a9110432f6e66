"""The ``git_history`` provider: recent commits of the files a request is about, from a local git work tree.

The files a request is about are tracked files whose directory names or file stem share words with
the query (ranked by how many), plus any named in ``--param files=a.py,b.py``. Each commit that
touched them is one block, newest first. git runs as a child process (no shell, never the network)
and is killed when the request's deadline passes or the request is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import snowballstemmer
from pydantic import Field, ValidationInfo, field_validator

from ctx.assemble.provider import BaseProvider, ContextRequest, Deadline, ProviderError, Services, make_block
from ctx.hookspecs import hookimpl
from ctx.models import Block
from ctx.settings import Freshness, ProviderSettings, resolve_path

# Read-only commands, and nothing they may reach for: no pager, no signature checks (gpg), no fsmonitor
# hook, and no transport at all, so a partial clone fails instead of fetching. Literal pathspecs: a
# tracked file named ``*.py`` or a --param of ``:(exclude)x`` is a name, never a pattern.
_GIT_FLAGS = ("--no-pager", "--literal-pathspecs", "-c", "protocol.allow=never", "-c", "core.fsmonitor=false",
              "-c", "log.showSignature=false", "-c", "i18n.logOutputEncoding=UTF-8")
# Variables that would point git at another repository than the configured one (ctx run from a git hook).
_REPO_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY",
              "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PREFIX")
# One commit: fields split by US, commits by RS; the files follow the last field, NUL-separated (-z).
_LOG_FORMAT = "%x1e%H%x1f%h%x1f%aN <%aE>%x1f%aI%x1f%cI%x1f%s%x1f%b%x1f"
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD = re.compile(r"[^\W_]+")
_STEMMER = snowballstemmer.stemmer("english")
# English function words: "and" or "the" would otherwise pick test_formats_and_sources.py for any question.
_STOP = frozenset("""about after and are been before being both but can could did does doing each for from had
has have having her hers his how into its itself just more most not off once only other our ours should some
such than that the their theirs them then there these they this those through too very was were what when
where which while who whom why will with would you your yours""".split())


class GitHistorySettings(ProviderSettings):
    kind: Literal["git_history"] = "git_history"
    freshness: Freshness = Freshness.near_realtime
    timeout: float = 5.0  # local work: the request's deadline is what bounds it
    repo: Path = Field(default=Path("."), validate_default=True, description="a git work tree, relative to ctx.toml")
    max_commits: int = Field(default=10, ge=1, le=1000)
    max_files: int = Field(default=5, ge=1, le=1000, description="files inferred from the query (named ones always "
                           "count)")

    @field_validator("repo", mode="before")
    @classmethod
    def _repo(cls, value: Any, info: ValidationInfo) -> Path:
        path = resolve_path(value, info)
        if not path.is_dir():
            raise ValueError(f"not a folder: {path}")
        top = work_tree(path)
        if top is None:
            raise ValueError(f"not a git work tree: {path} (no .git in it or in a folder above)")
        return top


def work_tree(path: Path) -> Path | None:
    """The top of the work tree holding ``path``, found as git finds it: the nearest folder with a ``.git``."""
    for folder in (path, *path.parents):
        if git_dir(folder) is not None:
            return folder
    return None


def git_dir(top: Path) -> Path | None:
    """``top/.git``, or where a ``.git`` file points (linked work trees, submodules)."""
    dot = top / ".git"
    try:
        if dot.is_dir():
            return dot if (dot / "HEAD").is_file() else None
        text = dot.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir:"):
        return None
    found = (top / text.removeprefix("gitdir:").strip()).resolve()
    return found if (found / "HEAD").is_file() else None


def head_state(gitdir: Path | None) -> str:
    """The commit HEAD points at, read from ref files (no process, cheap enough for every request)."""
    if gitdir is None:
        return "no repository"
    try:
        head = (gitdir / "HEAD").read_text(encoding="utf-8").strip()
        commondir = gitdir / "commondir"
        common = (gitdir / commondir.read_text(encoding="utf-8").strip()).resolve() if commondir.is_file() else gitdir
        for _ in range(5):  # a symbolic ref may point at another
            if not head.startswith("ref:"):
                return head
            ref = head.removeprefix("ref:").strip()
            loose = next((base / ref for base in (gitdir, common) if (base / ref).is_file()), None)
            if loose is None:
                head = _packed_ref(common / "packed-refs", ref) or head
                break
            head = loose.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return "unreadable"
    if not head.startswith("ref:"):
        return head
    # An unborn branch, or refs git keeps elsewhere (reftable): HEAD's reflog still changes on each commit.
    return f"{head} {_stat(gitdir / 'logs' / 'HEAD')}"


def _packed_ref(path: Path, ref: str) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return next((line.split(" ", 1)[0] for line in lines if line.endswith(f" {ref}")), None)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def words(text: str) -> frozenset[str]:
    """Stemmed lowercase words: ``refundPolicy``, ``refund_policy`` and ``refund policies`` give the same two."""
    return frozenset(_stem(w.lower()) for w in _WORD.findall(_CAMEL.sub(" ", text)))


def query_words(query: str) -> tuple[str, ...]:
    """The query's words of three letters or more that are not function words: shorter ones (a, to, id) and
    function words (and, the) would match too many paths."""
    found = [w.lower() for w in _WORD.findall(_CAMEL.sub(" ", query))]
    return tuple(sorted({_stem(w) for w in found if len(w) >= 3 and w not in _STOP}))


def named_files(request: ContextRequest) -> tuple[str, ...]:
    """``--param files=a.py,b.py``, in the order given, without repeats."""
    raw = request.value("files") or ""
    return tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))


@dataclass(frozen=True, slots=True)
class FileIndex:
    """Tracked files by the words of their directory names and of their file stem (inverted, for big repositories)."""

    paths: tuple[str, ...]
    tracked: frozenset[str]
    in_dirs: Mapping[str, frozenset[int]]
    in_stem: Mapping[str, frozenset[int]]

    @classmethod
    def build(cls, listing: str) -> FileIndex:
        paths = tuple(p for p in listing.split("\0") if p)
        in_dirs: dict[str, set[int]] = {}
        in_stem: dict[str, set[int]] = {}
        for n, path in enumerate(paths):
            folder, _, name = path.rpartition("/")
            stem = name.rsplit(".", 1)[0] if "." in name[1:] else name  # .env stays .env
            for word in words(folder):
                in_dirs.setdefault(word, set()).add(n)
            for word in words(stem):
                in_stem.setdefault(word, set()).add(n)
        return cls(paths, frozenset(paths), {w: frozenset(s) for w, s in in_dirs.items()},
                   {w: frozenset(s) for w, s in in_stem.items()})

    def match(self, query: Iterable[str], limit: int) -> list[str]:
        """Files sharing the most query words; ties go to files whose stem holds them, then to shallower paths."""
        found: dict[int, list[int]] = {}
        for word in query:
            stem_hits = self.in_stem.get(word, frozenset())
            for n in stem_hits | self.in_dirs.get(word, frozenset()):
                counts = found.setdefault(n, [0, 0])
                counts[0] += 1
                counts[1] += n in stem_hits
        ranked = sorted(found, key=lambda n: (-found[n][0], -found[n][1], self.paths[n].count("/"), self.paths[n]))
        return [self.paths[n] for n in ranked[:limit]]

    def resolve(self, name: str) -> list[str]:
        """A named file: its tracked path, else tracked files ending in it (``keys.py``), else as given (a
        deleted file still has history)."""
        if name in self.tracked:
            return [name]
        return [p for p in self.paths if p.endswith(f"/{name}")] or [name]


class GitHistoryProvider(BaseProvider):
    settings: GitHistorySettings

    def __init__(self, name: str, settings: ProviderSettings, services: Services) -> None:
        super().__init__(name, settings, services)
        self._index: tuple[Any, FileIndex] | None = None  # (the git index file's stat, the files it lists)

    def key(self, request: ContextRequest) -> tuple[Any, ...]:
        # HEAD changes with every commit and checkout; the index file with every add and rm.
        gitdir = git_dir(self.settings.repo)
        return (query_words(request.query), named_files(request), head_state(gitdir),
                _stat(gitdir / "index") if gitdir else None)

    def prepare(self) -> None:
        # Listing and indexing a large repository's files takes a while: once, outside any deadline.
        stamp = self._index_stamp()
        try:
            done = subprocess.run(self._argv("ls-files", "-z"), stdin=subprocess.DEVNULL, capture_output=True,
                                  env=self._env(), timeout=self.settings.timeout, check=True)
        except (OSError, subprocess.SubprocessError):
            return  # the request reports what is wrong, as the provider's failure
        self._index = (stamp, FileIndex.build(done.stdout.decode("utf-8", "surrogateescape")))

    async def fetch(self, request: ContextRequest, deadline: Deadline) -> list[Block]:
        query, named = query_words(request.query), named_files(request)
        if not query and not named:
            return []
        index = await self._files(deadline)
        # Named files always count; the query's best matches fill what is left of max_files.
        chosen = list(dict.fromkeys(path for name in named for path in index.resolve(self._in_repo(name))))
        room = max(self.settings.max_files - len(chosen), 0)
        chosen += [p for p in index.match(query, self.settings.max_files) if p not in chosen][:room]
        if not chosen:
            return []  # the request is about no file of this repository: nothing to say, not a failure
        out = await self._git(deadline, "log", "--no-merges", "--no-color", "-z", "--name-only",
                              f"--max-count={self.settings.max_commits}", f"--format={_LOG_FORMAT}", "--", *chosen)
        return [self._block(n, record) for n, record in enumerate(_commits(out), 1)]

    def _block(self, n: int, record: list[str]) -> Block:
        full, short, author, authored, committed, subject, body, files = (_shown(field) for field in record)
        lines = [f"author: {author}", f"date: {authored}"]
        if committed != authored:
            lines.append(f"committed: {committed}")
        lines += [f"files: {', '.join(f for f in files.split(chr(0)) if f)}", "", subject]
        if body.strip():
            lines += ["", body.strip()]
        as_of = datetime.fromisoformat(committed).astimezone(UTC).isoformat(timespec="seconds")
        return make_block(self.name, full, f"{short} {subject}", "\n".join(lines), score=1.0 / n, as_of=as_of)

    async def _files(self, deadline: Deadline) -> FileIndex:
        stamp = self._index_stamp()
        if self._index is not None and self._index[0] == stamp:
            return self._index[1]
        listing = await self._git(deadline, "ls-files", "-z")
        index: FileIndex = await self.services.run_sync(FileIndex.build, listing)
        self._index = (stamp, index)
        return index

    def _index_stamp(self) -> Any:
        gitdir = git_dir(self.settings.repo)
        return (str(gitdir), _stat(gitdir / "index")) if gitdir else None

    def _in_repo(self, name: str) -> str:
        """A named file as a path inside the repository; absolute paths and ``..`` must stay inside it."""
        top = self.settings.repo
        path = Path(os.path.expanduser(name))
        if path.is_absolute():
            try:
                name = path.resolve().relative_to(top).as_posix()
            except ValueError:
                raise ProviderError(f"files: {name} is outside the repository {top}") from None
        name = posixpath.normpath(name.replace(os.sep, "/"))
        if name == ".." or name.startswith("../"):
            raise ProviderError(f"files: {name} is outside the repository {top}")
        return name

    def _argv(self, *args: str) -> list[str]:
        return ["git", *_GIT_FLAGS, "-C", str(self.settings.repo), *args]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in self.services.env.items() if k not in _REPO_VARS}
        # Never wait for a password, never take optional locks (a user's `git status` must not block on
        # ctx), and never fetch a partial clone's missing objects (newer gits; protocol.allow covers older).
        # LC_ALL=C: messages in English, so an empty repository's answer can be told from a failure.
        return {**env, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "GIT_NO_LAZY_FETCH": "1", "LC_ALL": "C"}

    async def _git(self, deadline: Deadline, *args: str) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(*args), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self._env(),
            )
        except FileNotFoundError:
            raise ProviderError("git is not installed (not found on PATH)") from None
        except OSError as exc:
            raise ProviderError(f"cannot run git: {type(exc).__name__}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), deadline.remaining())
        except TimeoutError:
            raise ProviderError(f"git {args[0]} was still running at the deadline: stopped") from None
        finally:
            # Timed out or cancelled (another provider's deadline, a client gone): git must not outlive the
            # request. A killed git exits at once; waiting reaps it and closes its pipes.
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            if b"does not have any commits yet" in err:
                return ""  # a new repository: no history yet, which is an answer, not a failure
            raise ProviderError(f"git {args[0]} failed: {_first_error(err)}")
        # Paths are bytes to git: surrogateescape keeps any of them usable as an argument again.
        return out.decode("utf-8", "surrogateescape")


def _commits(out: str) -> list[list[str]]:
    """``git log`` records: seven fields, then the files (NUL-separated, after a newline)."""
    records = []
    for raw in out.split("\x1e")[1:]:
        fields = raw.split("\x1f")
        if len(fields) == 8:
            fields[7] = fields[7].lstrip("\0").removeprefix("\n")
            records.append(fields)
    return records


def _shown(text: str) -> str:
    """git's output as text: bytes that are not UTF-8 become U+FFFD (paths stay exact for git itself)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _first_error(err: bytes) -> str:
    lines = [" ".join(line.split()) for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    line = next((x for x in lines if x.startswith(("fatal:", "error:"))), lines[0] if lines else "no message")
    return line[:300]


class GitHistoryKind:
    name = "git_history"
    settings_model = GitHistorySettings

    def create(self, name: str, settings: ProviderSettings, services: Services) -> GitHistoryProvider:
        return GitHistoryProvider(name, settings, services)


@hookimpl
def register_providers(register: Any) -> None:
    register(GitHistoryKind())
