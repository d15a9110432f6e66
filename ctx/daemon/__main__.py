"""``python -m ctx.daemon [--config PATH]``: the process ``ctx daemon start`` runs in the background."""

from __future__ import annotations

import argparse
import os
import sys

from ctx.errors import CtxError


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ctx.daemon", description="Run the ctx daemon in the foreground.")
    parser.add_argument("--config", help="path to ctx.toml")
    args = parser.parse_args()
    # The daemon owns its process: every file it makes in the home is private from the first byte, whoever
    # creates it (SQLite, diskcache, Chroma, the log's rotation); see ctx/store/private.py.
    from ctx.store.private import private_process

    private_process()
    from ctx.daemon.server import serve
    from ctx.settings import find_config, load_settings

    try:
        env = dict(os.environ)
        return serve(load_settings(find_config(args.config, env), env), env)
    except CtxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
