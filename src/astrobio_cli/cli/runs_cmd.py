"""`astrobio runs list [DIR]`: the runs with their key metrics; `astrobio runs show RUN`: one run's
chain, from the archive query to its checkpoints."""

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from astrobio_cli.errors import UsageError

_STEP = re.compile(r"^step-(\d+)$")


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Training runs: list them with their metrics; where their data came from.",
        no_args_is_help=True,
    )
    group.command("list")(runs_list)
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


# -- runs list ----------------------------------------------------------------------------------


def _metrics_tail(path: Path) -> dict[str, Any]:
    """The last step, loss and `val_*` values of metrics.jsonl (unreadable lines skipped)."""
    out: dict[str, Any] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.update({k: v for k, v in rec.items() if k in ("step", "loss") or "val_" in k})
    return out


_PRIMARY: dict[str, tuple[str, str] | None] = {}


def _primary_metric(model: str | None) -> tuple[str, str] | None:
    """The model plugin's (metric, 'lower'|'higher'); None when the model is not installed."""
    if not model:
        return None
    if model not in _PRIMARY:
        try:
            from astrobio_cli.cli import current_host

            plugin = current_host().get("model", model).factory({})
            key, better = plugin.primary_metric
            _PRIMARY[model] = (str(key), str(better))
        except Exception:  # an uninstalled or broken plugin: list the run without it
            _PRIMARY[model] = None
    return _PRIMARY[model]


def _data_path(card: dict[str, Any]) -> str | None:
    data = card.get("data")
    if isinstance(data, dict):
        data = data.get("path") or data.get("source")
    if data:
        return str(data)
    for rec in card.get("inputs") or []:
        if isinstance(rec, dict) and rec.get("path"):
            return str(rec["path"])
    return None


def summarize_run(run_dir: Path) -> dict[str, Any] | None:
    """One row of `runs list` (plain data, from run_card.json, summary.json and metrics.jsonl);
    None when `run_dir` is not a run."""
    from astrobio_cli.data.lineage import read_json

    card = read_json(run_dir / "run_card.json")
    if not isinstance(card, dict):
        return None
    summary = read_json(run_dir / "summary.json")
    summary = summary if isinstance(summary, dict) else {}
    tail = _metrics_tail(run_dir / "metrics.jsonl")
    model = card.get("model") or summary.get("model")
    primary = summary.get("primary_metric") or _primary_metric(model)
    metric = better = value = None
    if primary:
        metric, better = primary[0], primary[1]
        evals = summary.get("eval") if isinstance(summary.get("eval"), dict) else {}
        value = evals.get(metric, tail.get(f"val_{metric}"))
    when = card.get("started_utc")
    if not when:
        import datetime as dt

        when = dt.datetime.fromtimestamp((run_dir / "run_card.json").stat().st_mtime, dt.UTC)
        when = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "run": str(run_dir),
        "name": run_dir.name,
        "model": model,
        "steps": summary.get("steps", tail.get("step")),
        "final_loss": summary.get("final_loss", tail.get("loss")),
        "metric": metric,
        "better": better,
        "value": value,
        "data": _data_path(card),
        "started_utc": when,
        "finished": bool(summary),
    }


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Every run directly under `root` (or `root` itself when it is a run), newest first."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(
            f"{root} is not a directory; give the directory that holds the runs (default: the "
            "runs_dir setting)"
        )
    dirs = [root] if (root / "run_card.json").is_file() else sorted(root.iterdir())
    rows = [r for d in dirs if d.is_dir() and (r := summarize_run(d)) is not None]
    rows.sort(key=lambda r: (str(r["started_utc"]), r["name"]), reverse=True)
    return rows


def read_curves(run_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every numeric series of a run's metrics.jsonl: name -> (steps, values)."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return curves
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
            continue
        for k, v in rec.items():
            if (k == "loss" or k.startswith("val_")) and isinstance(v, int | float):
                steps, values = curves.setdefault(k, ([], []))
                steps.append(rec["step"])
                values.append(float(v))
    return curves


def plot_curves(run_dirs: list[Path], path: Path) -> dict[str, dict[str, Any]]:
    """Loss curves of `run_dirs` in one PNG: training loss on the left, the val_* metrics on
    the right (one line per run and metric). Written atomically; returns what was drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astrobio_cli.net.files import atomic_path

    drawn: dict[str, dict[str, Any]] = {}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    for d in run_dirs:
        curves = read_curves(d)
        drawn[d.name] = curves
        if "loss" in curves:
            left.plot(*curves["loss"], label=d.name)
        for k, (steps, values) in sorted(curves.items()):
            if k != "loss":
                right.plot(steps, values, marker="o", label=f"{d.name}: {k}")
    left.set(xlabel="step", ylabel="training loss", title="training loss")
    right.set(xlabel="step", title="held-out (validation) metrics")
    for ax in (left, right):
        if ax.lines:
            ax.legend(fontsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return drawn


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return "-" if x is None else str(x)


def runs_list(
    root: Annotated[
        Path | None,
        typer.Argument(
            metavar="[DIR]", help="Directory holding the runs (default: the runs_dir setting)."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object ({runs_dir, runs: [...]}).")
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write a PNG of the runs' loss curves (training loss and every val_* metric "
            "against step) here. Needs the [plot] extra (matplotlib)."
        ),
    ] = None,
) -> None:
    """The runs under DIR, newest first: model, steps, final loss, the held-out primary metric,
    data and start time."""
    if root is None:
        from astrobio_cli.settings import get_settings

        root = get_settings().runs_dir
    rows = list_runs(root)
    if plot is not None:
        from astrobio_cli.extras import require

        require("astrobio runs list --plot", "matplotlib")
        if not rows:
            raise UsageError(f"no runs under {root}: nothing to plot")
        plot_curves([Path(r["run"]) for r in rows], plot)
    if json_out:
        typer.echo(json.dumps({"runs_dir": str(root), "runs": rows}, indent=2, default=str))
        return
    from rich.console import Console
    from rich.markup import escape

    c = Console(soft_wrap=True, highlight=False)
    if not rows:
        c.print(f"no runs under {escape(str(root))}")
        return
    # Plain aligned lines, not a rich table: names and paths stay whole and greppable.
    c.print(f"runs: {escape(str(root))}")
    head = f"{'started (UTC)':<20} {'run':<24} {'model':<20} {'steps':>6} {'loss':>9}  held-out"
    c.print(f"[bold]{head}[/]  data")
    for r in rows:
        metric = "-"
        if r["metric"]:
            arrow = {"lower": " (lower better)", "higher": " (higher better)"}.get(
                str(r["better"]), ""
            )
            metric = f"{r['metric']} {_fmt(r['value'])}{arrow}"
        name = r["name"] + ("" if r["finished"] else " (unfinished)")
        c.print(
            f"{_fmt(r['started_utc']):<20} {escape(name):<24} {escape(_fmt(r['model'])):<20} "
            f"{_fmt(r['steps']):>6} {_fmt(r['final_loss']):>9}  {escape(metric)}  "
            f"{escape(_fmt(r['data']))}"
        )
