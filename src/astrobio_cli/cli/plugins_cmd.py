"""`astrobio plugins list`."""

import json
from enum import StrEnum
from typing import Annotated

import typer


class KindChoice(StrEnum):
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
        table.add_column("kind", no_wrap=True)
        table.add_column("name", no_wrap=True, style="bold")
        table.add_column("status", overflow="fold")
        table.add_column("distribution", overflow="fold")
        table.add_column("data", overflow="fold")
        table.add_column("description", overflow="fold")
        for r in rows:
            style = STATUS_STYLE.get(r["status"], "")
            status = r["status"] + (f": {r['reason']}" if r["reason"] else "")
            table.add_row(
                r["kind"],
                r["name"],
                f"[{style}]{_esc(status)}[/]",
                f"{r['distribution']} {r['version']}",
                _esc(_data_cell(r)),
                _esc(r["description"]),
            )
        Console().print(table)

    @group.command("show")
    def show(
        name: Annotated[str, typer.Argument(help="A registered name, e.g. cube-unet.")],
        kind: Annotated[KindChoice, typer.Option(help="The kind of plugin.")] = KindChoice.model,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """One registered model, data source or attention backend, with its status."""
        from astrobio_cli.cli import current_host

        host = current_host()
        entry = host.entry(kind.value, name)  # unknown names: exit 2 with "did you mean"
        st = host.status(entry.spec)
        info = {
            "kind": kind.value,
            "name": name,
            "description": entry.spec.description,
            "plugin": entry.plugin.name,
            "module": entry.plugin.module,
            "distribution": entry.plugin.dist,
            "version": entry.plugin.version,
            "status": st.state,
            "reason": st.reason,
        }
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        for k, v in info.items():
            typer.echo(f"{k:>12}: {v}")

    app.add_typer(group, name="plugins")


def _data_cell(r: dict) -> str:
    """'reads climate-cube <- fetch synthetic-climate' / 'writes exoplanet-table -> planet-mass'."""
    if "data_kinds" in r:
        src = ", ".join(r["fed_by"]) or "no installed source"
        return f"reads {', '.join(r['data_kinds']) or '-'} <- {src}"
    if "produces" in r:
        feeds = ", ".join(r["feeds"]) or "no installed model"
        return f"writes {', '.join(r['produces']) or '-'} -> {feeds}"
    return ""


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
