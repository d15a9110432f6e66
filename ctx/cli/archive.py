"""``ctx archive``: move superseded document versions to the cold tier (compressed files in the home)."""

from __future__ import annotations

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import call


def register(app: typer.Typer) -> None:
    @app.command()
    def archive(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="Print what the pass did as JSON."),
    ) -> None:
        """Move document versions superseded longer ago than \\[archive] keep to HOME/archive/ (still readable,
        and still seen by `ctx assemble --as-of`). Ingest jobs run the same pass when \\[archive] enabled.

        Example: ctx archive --json
        """
        from ctx.api import operations as ops

        out = call(ctx, ops.ARCHIVE)
        if as_json:
            print_json(out)
            return
        typer.echo(f"moved {out['moved']} versions"
                   + (f" to {out['file']} ({out['bytes_before']} → {out['bytes_after']} bytes)" if out["file"] else ""))
        typer.echo(f"archive: {out['archived']} versions in {out['files']} files")
        if out["orphans_removed"]:
            err(f"removed {out['orphans_removed']} archive files left by an interrupted pass")
