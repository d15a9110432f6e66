"""``python -m ctx.cli``: the same as the ``ctx`` command."""

from ctx.cli import main

main()
