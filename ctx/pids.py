"""Whether a process still runs: how stale runtime files and jobs of dead processes are recognised."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) counts as dead.

    A container whose init reaps slowly, or never, would otherwise keep a killed daemon "running":
    its home could not get a new daemon and its jobs would never resume.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False  # no /proc (macOS): kill(pid, 0) is all there is
