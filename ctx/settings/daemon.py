"""[daemon]: where the daemon listens, what it accepts, and what it runs in the background."""

from __future__ import annotations

from pydantic import Field

from ctx.settings.base import Duration, Strict


class DaemonSettings(Strict):
    tcp: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    allowed_hosts: list[str] = Field(default_factory=list, description="Host header values accepted besides "
                                     "localhost, 127.0.0.1 and ::1 (DNS-rebinding protection)")
    max_body_bytes: int = Field(default=10_000_000, ge=1024)
    scheduler: bool = True
    watch: bool = True
    drain_timeout: Duration = Field(default=10.0, ge=0)
