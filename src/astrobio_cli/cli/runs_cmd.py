"""`astrobio runs show RUN`: one run's chain, from the archive query to its checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from astrobio_cli.errors import UsageError

_STEP = re.compile(r"^step-(\d+)$")


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Training runs: where their data came from.", no_args_is_help=True)
    group.command("show")(runs_show)
    app.add_typer(group, name="runs")


def describe_run(run_dir: Path) -> dict[str, Any]:
    """Plain data about a run directory (no torch): its card, data lineage and checkpoints."""
    from astrobio_cli.data.lineage import chain, read_json

    run_dir = Path(run_dir)
    if (run_dir / "meta.json").is_file() and run_dir.parent.name == "checkpoints":
        run_dir = run_dir.parent.parent
    card = read_json(run_dir / "run_card.json")
    if card is None:
        raise UsageError(
            f"{run_dir} is not a run directory (no readable run_card.json); give the --out of "
            "`astrobio train` or a directory under the runs_dir setting"
        )
    ckpts = []
    ckpt_dir = run_dir / "checkpoints"
    if ckpt_dir.is_dir():
        found = sorted(
            (int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _STEP.match(p.name))
        )
        for step, p in found:
            meta = read_json(p / "meta.json") or {}
            ckpts.append({"step": step, "path": str(p), "loss": meta.get("loss"),
                          "has_lineage": "lineage" in meta})  # fmt: skip
    inputs = card.get("inputs") or []
    return {
        "run": str(run_dir),
        "model": card.get("model"),
        "seed": card.get("seed"),
        "command_line": card.get("command_line"),
        "git_revision": card.get("git_revision"),
        "started_utc": card.get("started_utc"),
        "data": card.get("data"),
        "inputs": inputs,
        "chain": [chain(rec) for rec in inputs],
        "checkpoints": ckpts,
    }


def runs_show(
    run: Annotated[Path, typer.Argument(help="A run directory (the --out of `astrobio train`).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """The chain from archive query (or generator) through preprocess to the run's checkpoints."""
    info = describe_run(run)
    if json_out:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    from rich.console import Console
    from rich.markup import escape

    c = Console(soft_wrap=True, highlight=False)
    n = 0
    for steps in info["chain"]:
        for s in steps:
            n += 1
            c.print(f"[bold]{n}. {s['step']}[/bold]  {escape(str(s.get('path') or ''))}")
            for key in ("source", "generator", "seed", "query", "url", "retrieved_at", "rows",
                        "response_sha256", "sha256", "fingerprint", "options"):  # fmt: skip
                if s.get(key) is not None:
                    c.print(f"     {key}: {escape(str(s[key]))}")
    n += 1
    c.print(f"[bold]{n}. train[/bold]  {escape(info['run'])}")
    for key in ("model", "seed", "command_line", "git_revision", "started_utc"):
        if info.get(key) is not None:
            c.print(f"     {key}: {escape(str(info[key]))}")
    for ck in info["checkpoints"]:
        loss = f"loss {ck['loss']:.4g}" if isinstance(ck["loss"], int | float) else ""
        c.print(f"     checkpoint step {ck['step']}  {loss}  {escape(ck['path'])}")
