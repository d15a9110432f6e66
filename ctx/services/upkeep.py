"""Upkeep of a home's stores, asked for by an operator (``ctx doctor``, ``ctx archive``) or by ingest itself
(healing after a crash, archiving after a job)."""

from __future__ import annotations

from typing import Any

from ctx.services.stores import Stores


def doctor(stores: Stores, repair: bool = False, modes: bool = True) -> Any:
    """Compare the catalog with the vectors (the catalog is the truth); with ``repair``, fix the drift.

    ``modes`` adds the check that the home is private to its user (and, with ``repair``, tightens it); an
    ingest healing after a crash asks for the drift alone.
    """
    from ctx.store import private
    from ctx.store.doctor import diagnose

    if repair:
        report = stores.write(lambda: diagnose(stores.catalog, stores.vectors, stores.embedder, True))
    else:
        report = diagnose(stores.catalog, stores.vectors, stores.embedder, False)
    if modes:
        private.check(report, stores.home, repair)
    return report


def archive(stores: Stores) -> dict[str, Any]:
    """Move versions superseded longer ago than ``[archive] keep`` to the cold tier (HOME/archive/)."""
    from ctx.store.archive import run_pass

    return run_pass(stores.catalog, stores.home, stores.settings.archive.keep, stores.write).to_dict()
