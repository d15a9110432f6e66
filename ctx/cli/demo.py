"""``ctx demo``: ingest the bundled fixtures into a home of its own and show an assembled context."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ctx.cli._output import err, print_json, write_exact
from ctx.errors import ConfigError

DEMO_QUERY = "Some of our SAML sign-ins fail with LMN-4014. What is wrong and how do we fix it?"


def fixtures_dir() -> Path:
    """The demo corpus: packaged in the wheel as ctx/_fixtures, or the repository's fixtures/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_fixtures", here.parent / "fixtures"):
        if (candidate / "demo.toml").exists():
            return candidate
    raise ConfigError("", "the demo fixtures are not installed with this copy of ctx")


def demo_home(env: dict[str, str]) -> Path:
    base = Path(env["CTX_HOME"]) if env.get("CTX_HOME") else Path.cwd() / ".ctx"
    return (base / "demo").resolve()


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        query: str = typer.Option(DEMO_QUERY, "--query", "-q", help="The request to assemble."),
        tenant: str = typer.Option("acme", "--tenant", "-t", help="Whose tickets and records may appear."),
        recipe: str = typer.Option("support", "--recipe", "-r", help="support (policy, profile, the user's tickets, "
                                   "docs) or default (docs retrieval only)."),
        user: str = typer.Option("u123", "--user", "-u", help="Who asks (users of customers.db: u123..u127 are "
                                 "acme's)."),
        budget: int = typer.Option(2000, "--budget", "-b", help="Token budget."),
        as_json: bool = typer.Option(False, "--json", help="Print the ingest summary and the context as JSON."),
    ) -> None:
        """Ingest the bundled demo corpus (docs, tickets, customers) and assemble a context.

        Example: ctx demo --query "how do I rotate an API key?"
        """
        from ctx.api import operations as ops
        from ctx.api.schemas import AssembleIn
        from ctx.cli.ingest import print_summary, run_ingest
        from ctx.client import build, connect_workspace
        from ctx.settings import load_settings
        from ctx.workspace import Workspace

        env = dict(os.environ)
        home = demo_home(env)
        env["CTX_HOME"] = str(home)
        backend = connect_workspace(Workspace(load_settings(fixtures_dir() / "demo.toml", env), env))
        if not as_json:
            err(f"[b]ctx demo[/] · home {home}")
        summary = run_ingest(backend, None, as_json)
        if not as_json:
            print_summary(summary)
        context = backend.call(ops.ASSEMBLE, build(AssembleIn, query=query, budget=budget, tenant=tenant, recipe=recipe,
                                         user=user))
        if as_json:
            print_json({"home": str(home), "ingest": summary, "assemble": context})
            return
        err(f"\n[b]assembled context[/] (recipe {recipe!r}) for user {user!r} of tenant {tenant!r}: {query}\n")
        write_exact(context["context"])
        err(f"\n[b]trace[/] {context['trace_id']} · {context['tokens']}/{budget} tokens · {len(context['blocks'])} "
            f"blocks · {len(context['degradations'])} degradations · {context['timings']['total_ms']:.1f} ms")
        outcomes = ", ".join(f"{name} {p['status']} ({p['ms']:.0f} ms)" for name, p in context["providers"].items())
        err(f"providers: {outcomes}")
        err(f"replay it:  CTX_CONFIG={fixtures_dir() / 'demo.toml'} CTX_HOME={home} ctx replay {context['trace_id']}")
