"""Delivering the alert outbox: refresh actions through the host's callback, webhook messages with httpx.

Each notification is claimed before it is delivered (so two deliverers never send it twice) and
its outcome recorded after; a webhook that fails is tried again at the next evaluation, up to its
``max_attempts``. Nothing here raises into the evaluation loop.

Secrets stay out of everything this writes or logs: a token exists only in the request's header,
a webhook is named by its ctx.toml name and its scheme and host only (URLs often embed a token),
and an error message is the exception's type plus its text with every secret blanked out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from ctx.observe.alert_store import CLAIM_TIMEOUT_S, AlertStore, Writer, public
from ctx.observe.redact import redacted, scrub
from ctx.observe.signals import iso
from ctx.settings import AlertsSettings, WebhookSettings, env_var

log = logging.getLogger("ctx.alerts")
PAYLOAD_VERSION = 1


class DeliveryError(Exception):
    """A notification that did not go through; the message is safe to store and log."""


def where(url: str) -> str:
    """What a webhook's URL may show of itself: scheme, host and port."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"


def _scrub(text: str, secrets: list[str]) -> str:
    return scrub(text, secrets, limit=300)


def _resolve(name: str, what: str, ref: str, env: Mapping[str, str]) -> str:
    var = env_var(ref)
    value = env.get(var, "") if var else ""
    if not value:
        raise DeliveryError(f"environment variable {var} ({what} of webhook {name}) is not set")
    return value


def payload(event: str, step: int, notification_id: int, alert: dict[str, Any], sent_at: str) -> dict[str, Any]:
    """The JSON a webhook receives; ``text`` makes it readable as it is in chat tools (Slack, Mattermost)."""
    key = f" [{alert['key']}]" if alert["key"] else ""
    head = {"firing": "", "escalation": "ESCALATED ", "resolved": "RESOLVED "}.get(event, "")
    return {"source": "ctx", "version": PAYLOAD_VERSION, "event": event, "step": step,
            "notification_id": notification_id, "sent_at": sent_at,
            "text": f"{head}[{alert['severity'].upper()}] {alert['rule']}{key}: {alert['message']}", "alert": alert}


def send(name: str, hook: WebhookSettings, body: dict[str, Any], env: Mapping[str, str]) -> str:
    """POST ``body`` to the webhook; returns where it went (scheme and host).

    Raises:
        DeliveryError: not delivered (transport error, timeout, a non-2xx answer, a variable not set).
    """
    import httpx

    url = _resolve(name, "the URL", hook.url, env) if hook.url.startswith("${") else hook.url
    secrets = [url, urlsplit(url).path, urlsplit(url).query, urlsplit(url).password or ""]
    headers = {"Content-Type": "application/json", "User-Agent": "ctx-alerts",
               "Idempotency-Key": f"ctx-{body['notification_id']}"}  # a retried message is the same message
    if hook.token:
        token = _resolve(name, "the token", hook.token, env)
        secrets.append(token)
        headers["Authorization"] = f"Bearer {token}"
    target = where(url)
    try:
        # No proxies from the environment, and no redirects: either could carry the token elsewhere.
        with redacted(secrets), httpx.Client(timeout=hook.timeout, trust_env=False, follow_redirects=False) as http:
            response = http.post(url, content=json.dumps(body, default=str).encode(), headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__} from {target}: {_scrub(str(exc), secrets)}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code} from {target}")
    return target


class Deliverer:
    def __init__(self, store: AlertStore, settings: AlertsSettings, env: Mapping[str, str],
                 write: Writer) -> None:
        self.store = store
        self.settings = settings
        self.env = env
        self.write = write

    def run(self, now: float, refresh: Callable[[str], str] | None) -> list[dict[str, Any]]:
        """Deliver every notification that is due; one line of outcome each."""
        stamp, stale = iso(now), iso(now - CLAIM_TIMEOUT_S)
        out = []
        refreshed: dict[str, str] = {}  # two rules about one stale source make one sync, not two
        for n in self.store.deliverable(stamp, stale):
            if not self.write(partial(self.store.claim, n["id"], stamp, stale)):
                continue
            try:
                status, error, detail = self._deliver(n, stamp, refresh, refreshed)
            except Exception as exc:  # boundary: one bad notification must not stop the others
                log.exception("alert notification %s failed unexpectedly", n["id"])
                status, error, detail = self._retry(n), f"unexpected {type(exc).__name__}", None
            self.write(partial(self.store.finish, n["id"], status, stamp, error, detail))
            out.append({"id": n["id"], "alert_id": n["alert_id"], "step": n["step"], "event": n["event"],
                        "kind": n["kind"], "target": n["target"], "status": status, "error": error})
        return out

    def _deliver(self, n: dict[str, Any], stamp: str, refresh: Callable[[str], str] | None,
                 refreshed: dict[str, str]) -> tuple[str, str | None, str | None]:
        row = self.store.get(n["alert_id"])
        if row is None:
            return "gave_up", "the alert no longer exists", None
        alert = public(row)
        if n["kind"] == "action":
            return self._act(alert, refresh, refreshed)
        hook = self.settings.webhooks.get(n["target"])
        if hook is None:
            return "gave_up", f"webhook {n['target']!r} is no longer configured", None
        try:
            target = send(n["target"], hook, payload(n["event"], n["step"], n["id"], alert, stamp), self.env)
        except DeliveryError as exc:
            status = self._retry(n)
            log.warning("alert %s: webhook %s (%s) %s: %s", alert["rule"], n["target"], n["event"],
                        "gave up" if status == "gave_up" else "failed, will retry", exc)
            return status, str(exc), None
        log.info("alert %s: %s message sent to webhook %s (%s)", alert["rule"], n["event"], n["target"], target)
        return "sent", None, target

    def _retry(self, n: dict[str, Any]) -> str:
        hook = self.settings.webhooks.get(n["target"])
        limit = hook.max_attempts if hook is not None else 1
        return "gave_up" if n["attempts"] + 1 >= limit else "failed"

    def _act(self, alert: dict[str, Any], refresh: Callable[[str], str] | None,
             refreshed: dict[str, str]) -> tuple[str, str | None, str | None]:
        """An action runs once: a refresh that failed is reported, the next alert tries again."""
        if refresh is None:
            return "gave_up", "no refresh is possible here", None
        done, failed = [], []
        for source in alert["sources"]:
            if source in refreshed:
                done.append(f"{source}: refreshed for another alert of this evaluation ({refreshed[source]})")
                continue
            try:
                refreshed[source] = refresh(source)
                done.append(f"{source}: {refreshed[source]}")
            except Exception as exc:  # boundary: the host's sync, whatever it raises
                failed.append(f"{source}: {type(exc).__name__}: {str(exc)[:200]}")
        if not alert["sources"]:
            return "gave_up", "the alert names no source to refresh", None
        log.info("alert %s: refresh_sources %s", alert["rule"], "; ".join(done + failed))
        return ("done" if not failed else "gave_up"), "; ".join(failed) or None, "; ".join(done) or None
