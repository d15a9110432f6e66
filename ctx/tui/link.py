"""The dashboard's one connection: made on first use, dropped when the daemon stops answering, made again later.

No Textual here: the app runs every call through a :class:`Link` on its single I/O thread (a Link is not
thread-safe, and neither is a LocalClient's workspace).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ctx.errors import TransientError

if TYPE_CHECKING:
    from ctx.client import Client

T = TypeVar("T")
ClientFactory = Callable[[], "Client"]
DAEMON_TIMEOUT_S = 10.0  # a hung daemon shows as down after this, rather than freezing the dashboard's refreshes


class Link:
    """One client, made by ``factory`` when needed.

    Args:
        factory: makes a client; raises TransientError when there is nothing to connect to (yet).
        stale: tells whether a client made earlier no longer reaches what it should (the daemon was
            restarted with a new token, or stopped): it is dropped and made again before the call.
    """

    def __init__(self, factory: ClientFactory, stale: Callable[[Client], bool] | None = None) -> None:
        self.factory = factory
        self.stale = stale
        self.client: Client | None = None

    @property
    def mode(self) -> str | None:
        return self.client.mode if self.client is not None else None

    def call(self, fn: Callable[[Client], T]) -> T:
        """``fn(client)``, connecting first if needed.

        Raises:
            TransientError: no daemon, or it stopped answering; the client is dropped so the next call
                looks for the daemon again (it may have been restarted on another socket).
        """
        if self.client is not None and self.stale is not None and self.stale(self.client):
            self.close()
        if self.client is None:
            self.client = self.factory()
        try:
            return fn(self.client)
        except TransientError:
            self.close()
            raise

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()


def daemon_factory(home: Path, timeout: float = DAEMON_TIMEOUT_S) -> ClientFactory:
    """A client for the home's daemon, found through its runtime file each time one is needed."""

    def connect() -> Client:
        from ctx.api import runtime as rt
        from ctx.client import DaemonClient

        runtime = rt.read(home)
        if runtime is None:
            raise TransientError(f"the daemon is not running for {home}: start it with `ctx daemon start` "
                                 "(or read this home without one: `ctx dash --local`)")
        return DaemonClient(runtime, timeout=timeout)

    return connect


def daemon_moved(home: Path) -> Callable[[Client], bool]:
    """True when the runtime file no longer names the daemon a client was made for (stopped, or restarted).

    A restarted daemon has a new token: without this, the old client would get 401s from it for ever.
    """

    def moved(client: Client) -> bool:
        from ctx.api import runtime as rt

        made_for = getattr(client, "runtime", None)
        now = rt.read(home)
        if made_for is None or now is None:
            return True
        return (now.pid, now.token, now.address) != (made_for.pid, made_for.token, made_for.address)

    return moved


def daemon_link(home: Path, timeout: float = DAEMON_TIMEOUT_S) -> Link:
    """The link ``ctx dash`` uses by default: the home's daemon, whichever one runs at the time."""
    return Link(daemon_factory(home, timeout), stale=daemon_moved(home))


def local_factory(config: str | Path | None, env: dict[str, str] | None = None) -> ClientFactory:
    """The home's workspace, read in this process (``ctx dash --local``)."""

    def connect() -> Client:
        from ctx.client import LocalClient
        from ctx.workspace import Workspace

        return LocalClient(Workspace.open(config, dict(os.environ) if env is None else env))

    return connect


def local_link(config: str | Path | None, env: dict[str, str] | None = None) -> Link:
    return Link(local_factory(config, env))
