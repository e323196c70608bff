"""`astrobio smoke`: run the readiness checks (astrobio_cli.smoke) and show them as a table."""

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

STATUS_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow"}


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


def register(app: typer.Typer) -> None:
    app.command("smoke")(smoke_command)


def smoke_command(
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON to this file.")
    ] = None,
    require: Annotated[
        list[str] | None,
        typer.Option(
            help="Fail unless these passed (comma-separated): gpu, native, triton, flash-attn, "
            "a model name, a group, or a check name. A required check that was skipped fails."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only these groups (comma-separated): accelerator, imports, native, data, "
            "model, checkpoint, attention, precision, plugins."
        ),
    ] = None,
    device: Annotated[
        Device | None,
        typer.Option(help="Run model and attention checks here (default: cuda if usable)."),
    ] = None,
) -> None:
    """Check this installation: every check passes, fails (with the error) or is skipped (with
    the reason). Exit 0 only when nothing failed and every --require'd item passed."""
    from rich.console import Console

    from astrobio_cli.cli import current_host
    from astrobio_cli.smoke import check_only, parse_list, run_smoke

    groups = check_only(parse_list(only))
    required = parse_list(require)
    console = Console(highlight=False, stderr=False)
    with console.status("checking...") as status:

        def progress(result) -> None:
            status.update(f"checking... {result.name} {result.status}")

        report = run_smoke(
            current_host(),
            only=groups,
            require=required,
            device=device.value if device else None,
            on_check=progress if console.is_terminal else None,
        )
    if json_path is not None:
        _write_json(json_path, report.to_dict())
    _render(console, report)
    if not report.ok:
        raise typer.Exit(1)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)


def _render(console, report) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"astrobio smoke (device: {report.device})")
    table.add_column("check", no_wrap=True, style="bold")
    table.add_column("status", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for c in report.checks:
        style = STATUS_STYLE[c.status]
        table.add_row(
            escape(c.name), f"[{style}]{c.status}[/]", f"{c.seconds:.1f}s", escape(c.detail)
        )
    console.print(table)
    for r in report.requirements:
        style = STATUS_STYLE["passed" if r.status == "passed" else "failed"]
        console.print(
            f"required [bold]{escape(r.item)}[/]: [{style}]{r.status}[/] {escape(r.detail)}"
        )
    n = report.counts()
    warned = sum(len(c.warnings) for c in report.checks)
    if warned:
        console.print(f"{warned} library warning(s) while checking: see the JSON report (--json)")
    verdict = "[bold green]ready[/]" if report.ok else "[bold red]NOT ready[/]"
    console.print(
        f"{verdict}: {n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped "
        f"(skipped is not passed) in {report.seconds:.1f}s"
    )
