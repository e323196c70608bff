"""`astrobio plugins list`."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer


class KindChoice(str, Enum):
    model = "model"
    data_source = "data-source"
    attention = "attention"


STATUS_STYLE = {"available": "green", "unavailable": "yellow", "broken": "bold red"}


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Inspect installed plugins.", no_args_is_help=True)

    @group.command("list")
    def list_plugins(
        kind: Annotated[KindChoice | None, typer.Option(help="Only this kind.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Every plugin with its kind, distribution and status (available, unavailable, broken)."""
        from astrobio_cli.cli import current_host

        rows = current_host().rows(kind.value if kind else None)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="astrobio plugins")
        for col in ("kind", "name", "status", "distribution", "description"):
            table.add_column(col)
        for r in rows:
            style = STATUS_STYLE.get(r["status"], "")
            status = r["status"] + (f": {r['reason']}" if r["reason"] else "")
            table.add_row(
                r["kind"],
                r["name"],
                f"[{style}]{_esc(status)}[/]",
                f"{r['distribution']} {r['version']}",
                _esc(r["description"]),
            )
        Console().print(table)

    app.add_typer(group, name="plugins")


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
