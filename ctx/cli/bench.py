"""``ctx bench``: placeholder registration until the benchmark module lands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
