"""`astrobio env`."""

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("env")
    def env(
        as_json: Annotated[
            bool, typer.Option("--json", help="Print JSON (paste it into bug reports).")
        ] = False,
    ) -> None:
        """Python, platform, torch and accelerators, library versions, native extension, settings, plugins."""
        from astrobio_cli import envinfo
        from astrobio_cli.cli import current_host

        report = envinfo.collect(current_host())
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        render(report)


def render(report: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"astrobio {report['astrobio']}", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    py = report["python"]
    t.add_row("python", f"{py['version']} ({py['executable']})")
    pf = report["platform"]
    t.add_row("platform", f"{pf['system']} {pf['release']} {pf['machine']}")
    t.add_row("cpu", f"{report['cpu']['cores']} cores, {report['cpu']['memory_gb']} GiB")
    tor = report["torch"]
    if tor.get("installed"):
        t.add_row("torch", f"{tor['version']} ({tor['build']})")
        accs = tor["accelerators"]
        if accs:
            for a in accs:
                t.add_row(
                    f"cuda:{a['index']}",
                    f"{a['name']}, sm {a['compute_capability']}, {a['memory_gb']} GiB",
                )
        else:
            t.add_row("accelerators", "none (CPU only)")
    else:
        t.add_row("torch", f"[red]not importable[/]: {escape(tor.get('error', ''))}")
    for name, ver in report["libraries"].items():
        if name != "torch":
            t.add_row(name, ver)
    nat = report["native"]
    t.add_row(
        "native extension",
        f"{nat['version']} ({nat['build_profile']})"
        if nat["present"]
        else f"[red]missing[/]: {escape(nat['error'])}",
    )
    for k, v in report["settings"].items():
        t.add_row(k.replace("_", " "), escape(str(v)))
    c = report["plugins"]
    t.add_row(
        "plugins",
        f"{c['available']} available, {c['unavailable']} unavailable, {c['broken']} broken",
    )
    for b in report["plugins_broken"]:
        t.add_row("  broken", escape(f"{b['name']} ({b['distribution']}): {b['error']}"))
    Console().print(t)
