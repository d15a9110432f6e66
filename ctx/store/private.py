"""A home is private to its user: ingested data and traces (which hold whole assembled contexts) are no one
else's to read. The home folder is 0700 and nothing under it grants group or other any access.

How, and why this way:

- The ``ctx`` command and the daemon are processes ctx owns: they set the umask to 0o077 at entry
  (:func:`private_process`). That is the one mechanism that also covers files ctx does not create itself and
  cannot chmod as they appear: SQLite's -wal/-shm/-journal files, diskcache's database and value files,
  Chroma's sqlite and HNSW segment files, daemon.log, archive files.
- The library never changes the umask: ctx is also used in-process by applications, and the umask is
  process-wide (it would silently change the mode of every file the host application creates, from every
  thread). Instead, opening a home's stores makes the folder 0700 (:func:`make_home`, also when it exists with
  looser modes: nothing under a 0700 folder is reachable by another account, whatever its own mode), creates
  the catalog 0600 (SQLite gives -wal and -shm the database's mode), and tightens what the stores create
  (:func:`tighten`, after the vectors and caches are opened and after each ingest job).
- ``ctx doctor`` checks the folder and every path under it (:func:`check`); ``--repair`` tightens them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

PRIVATE_UMASK = 0o077
LOOSE = 0o077  # any permission bit for group or other
HOME_MODE = 0o700


def private_process() -> None:
    """For a process ctx owns (the CLI, the daemon): every file it creates from now on is its user's alone."""
    os.umask(PRIVATE_UMASK)


def make_home(home: Path) -> Path:
    """Create ``home`` 0700, or take an existing one's group and other bits away (a folder one does not own is
    left as it is: ``ctx doctor`` reports it)."""
    home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(home.stat().st_mode)
        if mode & LOOSE:
            home.chmod(mode & ~LOOSE)
    except OSError:
        pass
    return home


def create_private(path: Path) -> None:
    """Create the file ``path`` 0600 if it does not exist yet (before a library such as SQLite opens it)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def loose(home: Path) -> list[Path]:
    """``home`` and every folder and file under it that grants group or other any access (symlinks skipped:
    their own mode means nothing, and what they point at may not be the home's)."""
    found: list[Path] = []
    if not home.exists():
        return found
    if stat.S_IMODE(home.stat().st_mode) & LOOSE:
        found.append(home)
    for folder, dirs, files in os.walk(home):
        for name in (*dirs, *files):
            path = Path(folder, name)
            try:
                info = path.lstat()
            except OSError:  # removed while we walk (a -wal file at checkpoint, a rotated log)
                continue
            if not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) & LOOSE:
                found.append(path)
    return found


def tighten(home: Path, paths: list[Path] | None = None) -> int:
    """Take group and other bits off ``paths`` (default: every loose path of ``home``); how many changed."""
    changed = 0
    for path in loose(home) if paths is None else paths:
        try:
            path.chmod(stat.S_IMODE(path.lstat().st_mode) & ~LOOSE)
            changed += 1
        except OSError:  # gone since, or not ours: the next doctor run reports it
            continue
    return changed


def check(report: Any, home: Path, repair: bool = False) -> None:
    """Add the ``home permissions`` check to a doctor report; with ``repair``, tighten what it found."""
    found = loose(home)
    sample = [str(p.relative_to(home)) if p != home else "." for p in found[:5]]
    report.add("home permissions", not found,
               f"{len(found)} paths under {home} are readable by other users" if found
               else "the home and everything in it are private to its user (0700 folders, 0600 files)",
               count=len(found), sample=sample)
    if repair and found:
        report.repaired["home_permissions"] = tighten(home, found)
