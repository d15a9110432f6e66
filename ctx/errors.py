"""Typed errors; the CLI turns them into one-line messages and exit codes at one boundary."""

from __future__ import annotations


class CtxError(Exception):
    """Base class for every error ctx reports to a user."""

    exit_code = 1
    retryable = False


class UserError(CtxError):
    """Bad input from the user (arguments, query, ids)."""

    exit_code = 2


class ConfigError(UserError):
    """ctx.toml or an environment override is invalid. ``key`` names the setting."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config error: {key}: {problem}" if key else f"config error: {problem}")


class NotFound(UserError):
    """A trace, source or document that does not exist."""

    exit_code = 3


class SourceError(CtxError):
    """A source could not be read; the run records it and leaves that source's data untouched."""

    retryable = True


class TransientError(CtxError):
    """Something that may work when retried (network, lock)."""

    retryable = True


class TerminalError(CtxError):
    """Something that will not work when retried without a change."""
