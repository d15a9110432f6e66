"""ctx: production context infrastructure for LLM applications.

The public Python API: ``ctx.connect(config=None, home=None)`` gives a client for a home (its daemon when
one runs, else this process) that runs every operation of ``ctx.api.operations``::

    import ctx
    from ctx.api import operations as ops
    from ctx.api.inputs import AssembleIn

    client = ctx.connect(home=".ctx")
    context = client.get(ops.ASSEMBLE, AssembleIn(query="how do refunds work?"))
    print(context.trace_id, context.context)

Nothing heavy is imported here, so that ``ctx --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["connect"]


def __getattr__(name: str) -> Any:
    if name == "connect":  # imported on first use: `import ctx` stays light for the CLI
        from ctx.client import connect

        return connect
    raise AttributeError(f"module 'ctx' has no attribute {name!r}")
