"""ctx: production context infrastructure for LLM applications.

The public Python API lives in :mod:`ctx.workspace`; nothing heavy is imported here so
that ``ctx --help`` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
