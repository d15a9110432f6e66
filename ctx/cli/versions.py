"""``ctx versions list | show | diff | label | rollback | build``: configuration versions and their labels."""

from __future__ import annotations

import json

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import call, workspace

versions_app = typer.Typer(
    help="Configuration versions: every effective chunking, embedding, retrieval and assembly configuration of "
    "a recipe, fingerprinted and kept, with labels (prod, candidate, ...) that point at them.\n\n"
    "Example: ctx versions list",
    no_args_is_help=True,
)

RECIPE = typer.Option(None, "--recipe", "-r", help="A \\[recipes.NAME] of ctx.toml (labels live per recipe).")
JSON = typer.Option(False, "--json", help="Print as JSON.")


def _check(*refs: str, recipe: str | None = None) -> None:
    """The same checks the daemon's routes make, so a bad reference is the same one-line error either way."""
    from ctx.api.schemas import VersionRefIn
    from ctx.client import build

    for ref in refs or ("any",):  # without a reference, only the recipe's name is checked
        build(VersionRefIn, ref=ref, recipe=recipe)


@versions_app.command("list")
def list_(ctx: typer.Context, recipe: str = RECIPE, as_json: bool = JSON) -> None:
    """Every stored version, newest first: recipe, created, index, labels, and which one is in force.

    Example: ctx versions list --recipe support
    """
    from ctx.api import operations as ops

    _check(recipe=recipe)
    rows = call(ctx, ops.VERSIONS, recipe=recipe)
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("version", "recipe", "created", "index", "labels", "in force"):
        table.add_column(column, overflow="fold")
    for v in rows:
        index = v["index"] if v["index_state"] == "live" else f"{v['index']} ({v['index_state']})"
        table.add_row(v["id"], v["recipe"], v["created_at"][:19], index, ", ".join(v["labels"]),
                      "[green]✓[/]" if v["current"] else "")
    Console().print(table)


@versions_app.command()
def show(ctx: typer.Context,
         ref: str = typer.Argument(None, help="Version id, id prefix or label (default: the version in force)."),
         recipe: str = RECIPE, as_json: bool = JSON) -> None:
    """One version in full: every setting, its labels, its index id and whether that index is built.

    Example: ctx versions show prod --recipe support
    """
    from ctx.api import operations as ops
    from ctx.api.inputs import VersionRefIn, VersionsIn
    from ctx.client import connect_workspace

    ws = workspace(ctx)
    backend = connect_workspace(ws)
    if ref is None:  # the version in force of the recipe: the listing says which one that is
        name = recipe or ws.settings.assembly.recipe
        _check(recipe=name)
        listing = backend.call(ops.VERSIONS, VersionsIn(recipe=name))
        ref = next(v["id"] for v in listing if v["current"])
    _check(ref, recipe=recipe)
    out = backend.call(ops.VERSION, VersionRefIn(ref=ref, recipe=recipe))
    if as_json:
        print_json(out)
        return
    labels = ", ".join(out["labels"]) or "none"
    print(f"version {out['id']} · recipe {out['recipe']} · created {out['created_at'][:19]}"
          f"{' · in force' if out['current'] else ''}")
    print(f"labels: {labels}")
    print(f"index: {out['index']} ({out['index_state']})")
    from ctx.versions.store import flatten

    for key, value in flatten(out["config"]).items():
        print(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    if out["index_state"] == "not built":
        err(f"its index differs from the live one: `ctx versions build {out['id']}` builds it")


@versions_app.command()
def diff(ctx: typer.Context,
         a: str = typer.Argument(..., help="Version id, id prefix or label."),
         b: str = typer.Argument(..., help="Version id, id prefix or label."),
         recipe: str = RECIPE, as_json: bool = JSON) -> None:
    """The settings that differ between two versions (and whether their indexes differ too).

    Example: ctx versions diff prod candidate
    """
    from ctx.api import operations as ops

    _check(a, b, recipe=recipe)
    out = call(ctx, ops.VERSION_DIFF, a=a, b=b, recipe=recipe)
    if as_json:
        print_json(out)
        return
    for change in out["changes"]:
        print(f"{change['setting']}: {json.dumps(change['from'])} → {json.dumps(change['to'])}")
    if not out["changes"]:
        err(f"versions {out['a']['id']} and {out['b']['id']} are the same configuration")
    if out["index_differs"]:
        err("chunking or embedding differ: the two need separate indexes")
    for vid in out["needs_side_index"]:
        side = out["a"] if out["a"]["id"] == vid else out["b"]
        if side["index_state"] == "not built":
            err(f"version {vid} needs its own index: `ctx versions build {vid}`")


@versions_app.command()
def label(ctx: typer.Context,
          ref: str = typer.Argument(..., help="Version id, id prefix or label."),
          name: str = typer.Argument(..., help="The label: a letter, then letters, digits, '_', '-', '.'."),
          recipe: str = RECIPE, as_json: bool = JSON) -> None:
    """Point a label at a version (in that version's recipe); prints where it pointed before.

    Example: ctx versions label 3f2a9c candidate
    """
    from ctx.api import operations as ops

    out = call(ctx, ops.LABEL, ref=ref, label=name, recipe=recipe)
    if as_json:
        print_json(out)
        return
    before = out["previous"] or "nowhere (new label)"
    err(f"label {out['label']} of recipe {out['recipe']}: {before} → {out['version']}")


@versions_app.command()
def rollback(ctx: typer.Context,
             name: str = typer.Argument(..., help="The label to move back."),
             recipe: str = typer.Option(None, "--recipe", "-r", help="Its recipe (default: \\[assembly] recipe)."),
             as_json: bool = JSON) -> None:
    """Move a label back to the version it pointed at before its last move (again: further back).

    Example: ctx versions rollback prod
    """
    from ctx.api import operations as ops

    out = call(ctx, ops.ROLLBACK, label=name, recipe=recipe)
    if as_json:
        print_json(out)
        return
    err(f"label {out['label']} of recipe {out['recipe']}: {out['from']} → {out['to']} (rolled back)")


@versions_app.command("build")
def build_(ctx: typer.Context,
           ref: str = typer.Argument(..., help="Version id, id prefix or label."),
           recipe: str = RECIPE,
           quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
           as_json: bool = JSON) -> None:
    """Build the side index a version needs when it chunks or embeds differently from the live index.

    It ingests every source into HOME/versions/index-ID/ in this process (with a daemon running too:
    the daemon's index is not touched, and it uses the new one as soon as it is in place).

    Example: ctx versions build candidate
    """
    from ctx.api import operations as ops
    from ctx.api.inputs import VersionRefIn
    from ctx.cli.ingest import print_summary, progress_bar
    from ctx.client import connect_workspace
    from ctx.versions import manage
    from ctx.versions.store import Version

    _check(ref, recipe=recipe)
    ws = workspace(ctx)
    # resolved where the catalog is written (the daemon, if one runs)
    found = connect_workspace(ws).call(ops.VERSION, VersionRefIn(ref=ref, recipe=recipe))
    version = Version(found["id"], found["recipe"], found["config"], found["created_at"])
    with progress_bar(quiet or as_json) as progress:
        out = manage.build(ws, version, progress)  # type: ignore[arg-type]  # duck-typed, as ctx ingest's
    if as_json:
        print_json(out)
        return
    if not out["built"]:
        err(f"version {version.id} chunks and embeds as the live index does: nothing to build")
        return
    print_summary(out["summary"])
    err(f"index {out['index']} of version {version.id} is ready at {out['home']}")


def register(app: typer.Typer) -> None:
    app.add_typer(versions_app, name="versions")
