"""Replay: the stored bytes of a past context, or a re-run against today's data with a diff."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from ctx.observe.traces import TraceRecord


@dataclass
class RerunReport:
    original: str
    rerun: str
    diff: str
    appeared: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.diff

    def to_dict(self) -> dict[str, Any]:
        return {"original": self.original, "rerun": self.rerun, "identical": self.identical, "diff": self.diff,
                "appeared": self.appeared, "vanished": self.vanished, "changed": self.changed}


def compare(old: TraceRecord, new: TraceRecord) -> RerunReport:
    """A unified diff of the two contexts, and which chunks appeared, vanished or changed version."""
    diff = "".join(
        difflib.unified_diff(
            old.rendered.decode("utf-8").splitlines(keepends=True),
            new.rendered.decode("utf-8").splitlines(keepends=True),
            fromfile=f"trace {old.id}", tofile=f"rerun {new.id}",
        )
    )
    before = {c["chunk_id"]: c for c in old.candidates if c.get("kept")}
    after = {c["chunk_id"]: c for c in new.candidates if c.get("kept")}
    old_docs = {c["doc_id"]: c for c in before.values()}
    changed = [
        {"doc_id": c["doc_id"], "document": c["doc_key"], "from_version": old_docs[c["doc_id"]]["version"],
         "to_version": c["version"]}
        for c in {c["doc_id"]: c for c in after.values()}.values()
        if c["doc_id"] in old_docs and old_docs[c["doc_id"]]["version"] != c["version"]
    ]
    return RerunReport(old.id, new.id, diff, sorted(set(after) - set(before)), sorted(set(before) - set(after)),
                       changed)
