"""Regenerate docs/dashboard.png: `ctx dash` on the demo data, through a real daemon.

    python docs/screenshot.py                 # a few minutes: ingest with the real model, then traffic
    python docs/screenshot.py --minutes 1 --svg /tmp/dash.svg
    python docs/screenshot.py --record tests/data/dash_fixture.json   # also record what the snapshot tests serve

What it does, step by step:
1. `ctx demo` into a fresh temporary CTX_HOME (the bundled fixtures, the real embedding model, one request);
2. `ctx daemon start` on that home (config fixtures/demo.toml);
3. sends assemble requests through the daemon for `--minutes` minutes, two rounds a minute: the `support`
   recipe for users of several tenants, the `default` recipe, repeated questions (cache hits), and a request
   with a 1 ms deadline that its critical provider cannot meet (a failed trace, an SLO that burns budget);
4. runs the dashboard headless at 120x40 over the daemon (ctx.tui.app.build_app + daemon_link), waits for
   its first refresh and saves Textual's SVG screenshot;
5. converts the SVG to PNG with `rsvg-convert` (Debian: `apt-get install librsvg2-bin fonts-firacode`),
   after adding xml:space="preserve" (without it librsvg drops the spaces that start a text run);
6. stops the daemon.

Needs ctx installed (`pip install -e .`); rsvg-convert is only needed for this script, not by ctx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "fixtures" / "demo.toml"
SIZE = (120, 40)

SUPPORT = [  # (tenant, user, question)
    ("acme", "u123", "Some of our SAML sign-ins fail with LMN-4014. What is wrong and how do we fix it?"),
    ("acme", "u124", "Why was I charged twice this month?"),
    ("globex", "u201", "Our webhook signatures stopped validating after the key rotation."),
    ("initech", "u301", "How do we raise our API rate limit?"),
    ("umbrella", "u401", "Where is our data stored, and can we move it to the EU region?"),
    ("northwind", "u501", "How do I invite my team and assign roles?"),
]
DEFAULT = ["how do I rotate an API key?", "what does error LMN-4014 mean?", "how do refunds work?",
           "set up the Python SDK", "audit log retention"]


def ctx(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "ctx.cli", *args], env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"ctx {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def traffic(client: Any, rounds: int, pause_s: float) -> None:
    from ctx.api.schemas import AssembleIn
    from ctx.errors import CtxError

    for n in range(rounds):
        asks = [AssembleIn(query=q, recipe="support", tenant=t, user=u) for t, u, q in SUPPORT]
        asks += [AssembleIn(query=q) for q in DEFAULT]
        asks += asks[:4]  # asked again: served from the context cache
        asks.append(AssembleIn(query=SUPPORT[0][2], recipe="support", tenant="acme", user="u125", deadline_ms=1))
        for body in asks:
            try:
                client.assemble(body)
            except CtxError as exc:  # the 1 ms deadline: a failed request, traced
                print(f"  expected failure: {exc}", file=sys.stderr)
        print(f"round {n + 1}/{rounds}: {len(asks)} requests", file=sys.stderr)
        if n + 1 < rounds:
            time.sleep(pause_s)


def record(client: Any, path: Path, home: Path) -> None:
    """What the snapshot tests' fake client serves: every call the dashboard makes, answered once, here."""
    from datetime import UTC, datetime

    from ctx.api.schemas import ReplayIn

    traces = client.traces(200)
    chosen = next(t for t in traces if t["recipe"] == "support" and t["status"] == "ok")
    data = {
        "now": datetime.now(UTC).isoformat(), "status": client.status(), "traces": traces,
        "cost": client.cost("7d"), "slo": client.slo(), "trace": client.replay(ReplayIn(trace_id=chosen["id"])),
        "rerun": client.replay(ReplayIn(trace_id=chosen["id"], rerun=True)),
    }
    data["status"]["daemon"] = None
    text = json.dumps(data, indent=1, sort_keys=True).replace(str(home), "/srv/ctx/demo")
    text = text.replace(str(CONFIG), "/srv/ctx/demo.toml")
    path.write_text(text + "\n", encoding="utf-8")
    print(f"recorded {path}", file=sys.stderr)


async def shoot(home: Path) -> str:
    from ctx.tui.app import build_app
    from ctx.tui.link import daemon_link

    app = build_app(daemon_link(home), refresh_s=3600)
    async with app.run_test(size=SIZE) as pilot:
        deadline = time.monotonic() + 60
        while app.refreshes < 1 and time.monotonic() < deadline:
            await pilot.pause(0.1)
        if app.refreshes < 1:
            raise SystemExit(f"the dashboard did not refresh: {app.failure}")
        await pilot.pause(0.5)
        return app.export_screenshot(title="ctx dash")


def to_png(svg: str, out: Path) -> None:
    converter = shutil.which("rsvg-convert")
    if converter is None:
        raise SystemExit("rsvg-convert not found: apt-get install librsvg2-bin fonts-firacode")
    svg = svg.replace("<svg ", '<svg xml:space="preserve" ', 1)
    subprocess.run([converter, "--width", "1600", "-o", str(out)], input=svg.encode("utf-8"), check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--svg", type=Path, help="also keep the SVG here")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to send traffic (latency over time)")
    parser.add_argument("--record", type=Path, help="also record the snapshot tests' fixture here")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="ctx-screenshot-"))
    env = {**os.environ, "CTX_HOME": str(base)}
    env.pop("CTX_CONFIG", None)
    ctx(env, "demo", "--json")
    home = base / "demo"  # ctx demo's home: CTX_HOME/demo
    env = {**env, "CTX_HOME": str(home), "CTX_CONFIG": str(CONFIG)}
    os.environ.update(CTX_HOME=str(home), CTX_CONFIG=str(CONFIG))
    ctx(env, "daemon", "start")
    try:
        from ctx.api import runtime as rt
        from ctx.client import DaemonClient

        runtime = rt.read(home)
        assert runtime is not None
        client = DaemonClient(runtime)
        rounds = max(int(args.minutes * 2), 1)
        traffic(client, rounds, 30.0)
        if args.record:
            record(client, args.record, home)
        client.close()
        svg = asyncio.run(shoot(home))
        if args.svg:
            args.svg.write_text(svg, encoding="utf-8")
        to_png(svg, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    finally:
        ctx(env, "daemon", "stop")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
