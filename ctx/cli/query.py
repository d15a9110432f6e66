"""``ctx search`` and ``ctx assemble``: hybrid retrieval, and budgeted context windows."""

from __future__ import annotations

import typer

from ctx.cli._output import err, print_json, write_exact
from ctx.cli._ws import call

SOURCE = typer.Option(None, "--source", "-s", help="Only these sources (repeatable).")
TENANT = typer.Option(None, "--tenant", "-t", help="Tenant: its data plus shared data; without it, shared data only.")
PATH = typer.Option(None, "--path", help="Only documents whose key matches this glob, e.g. 'billing/**'.")


def register(app: typer.Typer) -> None:
    @app.command()
    def search(
        ctx: typer.Context,
        query: str = typer.Argument(..., help="What to search for."),
        source: list[str] = SOURCE,
        tenant: str = TENANT,
        path: str = PATH,
        limit: int = typer.Option(10, "--limit", "-n", min=1, max=1000, help="How many hits."),
        as_json: bool = typer.Option(False, "--json", help="Print hits with provenance as JSON."),
    ) -> None:
        """Hybrid search (BM25 + vectors, fused by reciprocal rank) over ingested chunks.

        Example: ctx search "rotate api key" --source docs
        """
        from ctx.api import operations as ops

        hits = call(ctx, ops.SEARCH, query=query, sources=source or None, tenant=tenant, path=path, limit=limit)
        if as_json:
            print_json(hits)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False)
        for column in ("#", "score", "source", "document", "section", "text"):
            table.add_column(column, overflow="fold")
        for i, h in enumerate(hits, 1):
            snippet = " ".join(h["text"].split())[:120]
            table.add_row(str(i), f"{h['score']:.4f}", h["source"], f"{h['doc_key']} v{h['version']}",
                          " › ".join(h["heading_path"]), snippet)
        Console().print(table)
        if not hits:
            err("no hits")

    @app.command()
    def assemble(
        ctx: typer.Context,
        query: str = typer.Argument(..., help="The request to assemble context for."),
        budget: int = typer.Option(None, "--budget", "-b", help="Token budget (default from ctx.toml: 4000)."),
        model: str = typer.Option(None, "--model", "-m", help="Model whose tokenizer counts the budget."),
        fmt: str = typer.Option(None, "--format", "-f", help="markdown (default) or messages (chat JSON)."),
        source: list[str] = SOURCE,
        tenant: str = TENANT,
        path: str = PATH,
        top_k: int = typer.Option(None, "--top-k", min=1, max=1000, help="Candidates to consider."),
        recipe: str = typer.Option(None, "--recipe", "-r", help="A \\[recipes.NAME] of ctx.toml (default: default)."),
        user: str = typer.Option(None, "--user", "-u", help="User id, for session and record providers."),
        session: str = typer.Option(None, "--session", help="Session id, for session providers."),
        param: list[str] = typer.Option(None, "--param", "-p", help="NAME=VALUE for record queries and http URLs "
                                        "(repeatable)."),
        deadline: str = typer.Option(None, "--deadline", help="For all providers together, e.g. 300ms (default: "
                                     "the recipe's, else \\[assembly] deadline)."),
        version: str = typer.Option(None, "--version", help="A stored version of the recipe: id, id prefix or "
                                    "label (see ctx versions list; default: the settings in force)."),
        as_of: str = typer.Option(None, "--as-of", help="Against the data as it was then: an ISO-8601 time "
                                  "(UTC unless it has an offset) or an age such as 2h or 3d."),
        as_json: bool = typer.Option(False, "--json", help="Blocks with provenance, scores, tokens, degradations."),
    ) -> None:
        """Assemble a token-budgeted context window from a recipe's providers and log it as a replayable trace.

        Example: ctx assemble --recipe support --user u123 --deadline 300ms "why was I charged twice?"
        """
        from ctx.api import operations as ops
        from ctx.duration import parse_duration
        from ctx.errors import UserError

        params = {}
        for item in param or []:
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise UserError(f"--param {item!r}: expected NAME=VALUE")
            params[name.strip()] = value
        try:
            deadline_ms = parse_duration(deadline) * 1000 if deadline is not None else None
        except ValueError as exc:
            raise UserError(f"--deadline: {exc}") from None
        context = call(
            ctx, ops.ASSEMBLE, query=query, budget=budget, model=model, format=fmt, sources=source or None,
            tenant=tenant, path=path, top_k=top_k, recipe=recipe, user=user, session=session, params=params,
            deadline_ms=deadline_ms, version=version, as_of=as_of,
        )
        if as_json:
            print_json(context)
            return
        for warning in context["warnings"]:
            err(f"[yellow]warning:[/] {warning}")
        write_exact(context["context"])
        for name, out in context["providers"].items():
            if out["status"] not in ("ok", "cached", "coalesced"):
                err(f"[yellow]{name}:[/] {out['status']} ({out['error']})")
        drops = len(context["degradations"])
        err(f"[dim]trace {context['trace_id']} · recipe {context['recipe']} · {context['tokens']}/{context['budget']} "
            f"tokens ({context['encoding']}) · {len(context['blocks'])} blocks · {drops} degradations · "
            f"cache {context['cache']} · {context['timings']['total_ms']:.1f} ms[/]")
