"""`astrobio config show`."""

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Inspect settings.", no_args_is_help=True)

    @group.command("show")
    def show(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """The effective settings, each with where it came from; secrets masked."""
        from astrobio_cli import settings

        ls = settings.loaded()
        rows = settings.effective(ls)
        if as_json:
            out = {
                "config_file": {
                    "path": str(ls.config_path),
                    "origin": ls.config_origin,
                    "exists": ls.config_exists,
                },
                "settings": {r["key"]: {"value": r["value"], "source": r["source"]} for r in rows},
            }
            typer.echo(json.dumps(out, indent=2, default=str))
            return
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        exists = "" if ls.config_exists else " (not present)"
        table = Table(title=f"settings file: {ls.config_path}{exists} [{ls.config_origin}]")
        table.add_column("key")
        table.add_column("value")
        table.add_column("source")
        for r in rows:
            table.add_row(r["key"], escape(str(r["value"])), escape(r["source"]))
        Console().print(table)

    app.add_typer(group, name="config")
