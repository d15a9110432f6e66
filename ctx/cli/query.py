"""``ctx search`` and ``ctx assemble``: hybrid retrieval, and budgeted context windows."""

from __future__ import annotations

import typer

from ctx.cli._output import err, print_json, write_exact
from ctx.cli._ws import workspace

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
        ws = workspace(ctx)
        hits = ws.search(query, ws.filters(source, tenant, path), limit)
        if as_json:
            print_json([h.to_dict() for h in hits])
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False)
        for column in ("#", "score", "source", "document", "section", "text"):
            table.add_column(column, overflow="fold")
        for i, h in enumerate(hits, 1):
            snippet = " ".join(h.text.split())[:120]
            table.add_row(str(i), f"{h.score:.4f}", h.source, f"{h.doc_key} v{h.version}",
                          " › ".join(h.heading_path), snippet)
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
        as_json: bool = typer.Option(False, "--json", help="Blocks with provenance, scores, tokens, degradations."),
    ) -> None:
        """Assemble a token-budgeted context window and log it as a replayable trace.

        Example: ctx assemble "how do refunds work?" --budget 2000 --model gpt-4o
        """
        ws = workspace(ctx)
        request = ws.request(query, budget, model, fmt, ws.filters(source, tenant, path), top_k)
        context = ws.assemble(request)
        if as_json:
            print_json(context.to_dict())
            return
        for warning in context.warnings:
            err(f"[yellow]warning:[/] {warning}")
        write_exact(context.rendered)
        drops = len(context.degradations)
        err(f"[dim]trace {context.trace_id} · {context.tokens}/{request.budget} tokens ({context.encoding}) · "
            f"{len(context.blocks)} blocks · {drops} degradations · {context.timings['total_ms']:.1f} ms[/]")
