"""Alert rows and their notification outbox in the catalog (run the writes through the workspace's writer).

Notification statuses: ``pending`` (decided, not tried yet), ``sending`` (claimed by a deliverer),
``failed`` (tried, will be tried again), ``sent`` (a webhook answered 2xx), ``done`` (an action ran),
``gave_up`` (out of attempts, or its target is gone), ``cancelled`` (its alert resolved first),
``skipped`` (recorded, never sent: a re-fire inside the cooldown).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ctx.store.catalog import Catalog

T = TypeVar("T")

DELIVERABLE = ("pending", "failed")
NOTIFIED = ("sent", "done")  # an alert that reached someone (or did something): its cooldown counts
CLAIM_TIMEOUT_S = 120  # a claim older than this belonged to a process that died mid-delivery
_PUBLIC = ("id", "rule", "severity", "metric", "window", "key", "state", "message", "value", "baseline", "z",
           "count", "step", "first_at", "last_at", "resolved_at", "suppressed_until", "sources")


class Writer(Protocol):
    """The workspace's writer: runs ``fn`` where the home's writes run (inline, or its writer thread)."""

    def __call__(self, fn: Callable[[], T]) -> T: ...


def window_label(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def public(row: dict[str, Any], notifications: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An alert as ``ctx alerts``, the API, the webhooks and the dashboard see it."""
    full = {**row, "window": window_label(row["window_s"]), "sources": json.loads(row.get("sources") or "[]")}
    out = {k: full.get(k) for k in _PUBLIC}
    if notifications is not None:
        out["notifications"] = [_note(n) for n in notifications]
    return out


def _note(n: dict[str, Any]) -> dict[str, Any]:
    return {"step": n["step"], "event": n["event"], "kind": n["kind"], "target": n["target"], "status": n["status"],
            "attempts": n["attempts"], "error": n["error"], "detail": n["detail"], "at": n["updated_at"]}


class AlertStore:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @property
    def db(self) -> Any:
        return self.catalog.db  # this thread's connection

    # --- reads -------------------------------------------------------------------------------------

    def firing(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["rule"], r["key"]): r for r in self.db.query("select * from alerts where state = 'firing'")}

    def get(self, alert_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from alerts where id = ?", [alert_id]))
        return rows[0] if rows else None

    def last_notified_resolution(self, rule: str, key: str) -> str | None:
        """When the newest resolved alert of (rule, key) that reached someone resolved: the cooldown's start."""
        row = self.db.execute(
            "select max(a.resolved_at) from alerts a where a.rule = ? and a.key = ? and a.state = 'resolved' "
            "and exists (select 1 from alert_notifications n where n.alert_id = a.id and n.status in (?, ?))",
            [rule, key, *NOTIFIED],
        ).fetchone()
        return row[0] if row else None

    def notified_targets(self, alert_id: str) -> list[str]:
        """Webhooks a firing or escalation message of the alert reached: they get its resolution."""
        return [r[0] for r in self.db.execute(
            "select distinct target from alert_notifications where alert_id = ? and kind = 'webhook' "
            "and event != 'resolved' and status = 'sent' order by target", [alert_id])]

    def recent(self, limit: int, active: bool) -> list[dict[str, Any]]:
        """Firing alerts first, then resolved ones (unless ``active``), newest first, with their notifications."""
        where = "where state = 'firing'" if active else ""
        rows = list(self.db.query(
            f"select * from alerts {where} order by state = 'firing' desc, first_at desc, id desc limit ?", [limit]))
        notes: dict[str, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
        ids = list(notes)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            for n in self.db.query("select * from alert_notifications where alert_id in (%s) order by id"
                                   % ",".join("?" * len(part)), part):
                notes[n["alert_id"]].append(n)
        return [public(r, notes[r["id"]]) for r in rows]

    def deliverable(self, now: str, stale_claim: str) -> list[dict[str, Any]]:
        """Notifications to try now, oldest first: never tried, failed before, or claimed by a dead process."""
        return list(self.db.query(
            "select * from alert_notifications where status in (?, ?) or (status = 'sending' and claimed_at < ?) "
            "order by id", [*DELIVERABLE, stale_claim]))

    def active_counts(self) -> dict[str, int]:
        counts = {"critical": 0, "error": 0, "warning": 0}
        for severity, n in self.db.execute("select severity, count(*) from alerts where state = 'firing' "
                                           "group by severity"):
            counts[severity] = n
        return counts

    # --- writes ------------------------------------------------------------------------------------

    def insert(self, row: dict[str, Any]) -> None:
        self.db.table("alerts").insert(row)

    def update(self, alert_id: str, fields: dict[str, Any]) -> None:
        self.db.table("alerts").update(alert_id, fields)

    def add_notification(self, alert_id: str, step: int, event: str, kind: str, target: str, now: str,
                         status: str = "pending", detail: str | None = None) -> None:
        self.db.table("alert_notifications").insert(
            {"alert_id": alert_id, "step": step, "event": event, "kind": kind, "target": target, "status": status,
             "attempts": 0, "error": None, "detail": detail, "created_at": now, "updated_at": now, "claimed_at": None})

    def cancel_undelivered(self, alert_id: str, now: str) -> None:
        """Firing messages not delivered yet are moot once the alert has resolved."""
        self.db.execute(
            "update alert_notifications set status = 'cancelled', updated_at = ?, detail = coalesce(detail, "
            "'the alert resolved before it was delivered') where alert_id = ? and status in (?, ?)",
            [now, alert_id, *DELIVERABLE])

    def claim(self, notification_id: int, now: str, stale_claim: str) -> bool:
        """Take a notification for delivery; False if another deliverer has it (or it is done)."""
        cursor = self.db.execute(
            "update alert_notifications set status = 'sending', claimed_at = ? where id = ? and "
            "(status in (?, ?) or (status = 'sending' and claimed_at < ?))",
            [now, notification_id, *DELIVERABLE, stale_claim])
        return bool(cursor.rowcount)

    def finish(self, notification_id: int, status: str, now: str, error: str | None, detail: str | None,
               attempted: bool = True) -> None:
        self.db.execute(
            "update alert_notifications set status = ?, error = ?, detail = coalesce(?, detail), updated_at = ?, "
            "attempts = attempts + ?, claimed_at = null where id = ?",
            [status, error, detail, now, int(attempted), notification_id])

    def prune(self, before: str) -> int:
        """Resolved alerts (and their notifications) older than the retention."""
        old = "select id from alerts where state = 'resolved' and resolved_at < ?"
        with self.db.atomic():
            self.db.execute(f"delete from alert_notifications where alert_id in ({old})", [before])
            return int(self.db.execute("delete from alerts where state = 'resolved' and resolved_at < ?",
                                       [before]).rowcount)
