"""Blanking secrets out of what ctx shows: log lines (httpx logs every request's full URL), error messages, URLs.

A secret is known by its values (a token read from the environment, and the forms it takes once encoded into a
URL) and, for a URL, by the names of the query parameters that carry one: those show as ``***`` whatever their
value. Values shorter than 4 characters are not blanked by value (they would blank innocent text); a query
parameter that carries one is still blanked by name.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus, urlencode

MASK = "***"
_MIN = 4


def forms(value: str) -> list[str]:
    """The ways ``value`` can appear in a URL: as it is, percent-encoded in a path, form-encoded in a query."""
    return list(dict.fromkeys([value, quote(value, safe=""), quote_plus(value), urlencode({"": value})[1:]]))


def scrub(text: str, secrets: Iterable[str], limit: int | None = None) -> str:
    """``text`` with every secret value replaced by ``***`` (longest first, so no part of one survives)."""
    for secret in sorted((s for s in set(secrets) if len(s) >= _MIN), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text if limit is None else text[:limit]


def mask_params(url: Any, names: Collection[str]) -> str:
    """An ``httpx.URL`` as text, the values of the query parameters ``names`` shown as ``***``."""
    query = url.query.decode("ascii", "replace")
    if not query:
        return str(url)
    parts = [f"{part.split('=', 1)[0]}={MASK}" if unquote_plus(part.split("=", 1)[0]) in names else part
             for part in query.split("&")]
    return f"{str(url.copy_with(query=None)).rstrip('?')}?{'&'.join(parts)}"


class Redact(logging.Filter):
    """Blanks secrets out of a logger's records: by value in the message, by name in any URL argument."""

    def __init__(self, secrets: Collection[str], params: Collection[str] = ()) -> None:
        super().__init__()
        self.secrets = secrets
        self.params = params

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if self.params and isinstance(args, tuple):
            args = tuple(mask_params(a, self.params) if _is_url(a) else a for a in args)
        message = record.msg % args if args else str(record.msg)
        cleaned = scrub(message, self.secrets)
        if args is not record.args or cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def _is_url(value: Any) -> bool:
    return hasattr(value, "copy_with") and hasattr(value, "query")  # an httpx.URL, without importing httpx


@contextmanager
def redacted(secrets: Collection[str], params: Collection[str] = (), logger: str = "httpx") -> Iterator[None]:
    """While inside, ``logger``'s records carry none of ``secrets`` (the collection may grow meanwhile)."""
    log = logging.getLogger(logger)
    redact = Redact(secrets, params)
    log.addFilter(redact)
    try:
        yield
    finally:
        log.removeFilter(redact)
