"""`astrobio train MODEL` and `astrobio eval MODEL`: thin commands over astrobio_cli.training."""

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from astrobio_cli.errors import UsageError


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Optim(StrEnum):
    adamw = "adamw"
    lion = "lion"
    sgd = "sgd"


class Sched(StrEnum):
    cosine = "cosine"
    onecycle = "onecycle"
    cosine_restarts = "cosine-restarts"
    constant = "constant"


class Strategy(StrEnum):
    ddp = "ddp"
    fsdp = "fsdp"


def _model_spec(name: str):
    from astrobio_cli.cli import current_host

    return current_host().get("model", name)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("eval")(eval_command)


def train_command(
    model: Annotated[
        str, typer.Argument(help="Model name (`astrobio plugins list --kind model`).")
    ],
    data: Annotated[
        str | None,
        typer.Option(help="Data file or directory (default: the model's built-in data)."),
    ] = None,
    gpus: Annotated[int | None, typer.Option(help="Train on N GPUs (N processes, DDP).")] = None,
    cpu: Annotated[bool, typer.Option("--cpu", help="Train on the CPU.")] = False,
    procs: Annotated[int | None, typer.Option(help="With --cpu: N processes (gloo).")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (instead of --steps).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Micro-batch size per process.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    precision: Annotated[Precision | None, typer.Option(help="fp32, bf16 or fp16.")] = None,
    grad_checkpointing: Annotated[
        bool, typer.Option("--grad-checkpointing", help="Recompute activations in backward.")
    ] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    resume: Annotated[
        str | None, typer.Option(help="'auto' (newest checkpoint of --out) or a checkpoint path.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default: runs_dir/MODEL-TIME).")
    ] = None,
    optimizer: Annotated[Optim | None, typer.Option(help="adamw, lion or sgd.")] = None,
    scheduler: Annotated[Sched | None, typer.Option(help="Learning-rate schedule.")] = None,
    warmup: Annotated[int | None, typer.Option(help="Warmup steps.")] = None,
    strategy: Annotated[
        Strategy | None, typer.Option(help="ddp or fsdp (N GPUs, or --cpu --procs N).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file of options (and a model: section).")
    ] = None,
    quick_smoke: Annotated[
        bool, typer.Option("--quick-smoke", help="10 steps of a tiny model on built-in data.")
    ] = False,
    auto_batch: Annotated[
        bool, typer.Option("--auto-batch", help="On out-of-memory, split micro-batches and retry.")
    ] = False,
    log_every: Annotated[int | None, typer.Option(help="Log every N steps.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate every N steps.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps.")] = None,
    keep_last: Annotated[int | None, typer.Option(help="Checkpoints to keep.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="DataLoader worker processes that read and transform the training items "
            "(0: in the training process; default: the model's).",
        ),
    ] = None,
    model_path: Annotated[
        str | None, typer.Option(help="llm-lora: a local Hugging Face checkpoint directory.")
    ] = None,
    nnodes: Annotated[
        int | None,
        typer.Option(help="Nodes of a multi-node run (same command on each, own --node-rank)."),
    ] = None,
    node_rank: Annotated[
        int | None, typer.Option(help="With --nnodes: this node's rank, 0 on --master-addr.")
    ] = None,
    master_addr: Annotated[
        str | None, typer.Option(help="With --nnodes: node 0's address (c10d rendezvous).")
    ] = None,
    master_port: Annotated[
        int | None, typer.Option(help="With --nnodes: the rendezvous port (default 29500).")
    ] = None,
    print_slurm: Annotated[
        bool,
        typer.Option("--print-slurm", help="Print an sbatch script for this run; train nothing."),
    ] = False,
    nodes: Annotated[int | None, typer.Option(help="With --print-slurm: nodes (2).")] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option(help="With --print-slurm: GPUs per node (default --gpus or 1).")
    ] = None,
    partition: Annotated[str | None, typer.Option(help="With --print-slurm: partition.")] = None,
    time: Annotated[
        str | None, typer.Option(help="With --print-slurm: time limit HH:MM:SS.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train a model: one process, N CPU processes (--cpu --procs N) or N GPUs (--gpus N).

    The run directory holds the config, run card, metrics.jsonl (`astrobio runs list --plot`),
    checkpoints and, for a model with its own export format, <run>/export (llm-lora: a PEFT
    adapter directory that peft's AutoPeftModelForCausalLM loads).
    """
    from astrobio_cli.hardware import cuda_device_count
    from astrobio_cli.training import launch, slurm
    from astrobio_cli.training.config import resolve_config
    from astrobio_cli.training.data import check_data

    spec = _model_spec(model)
    if not quick_smoke:
        check_data(model, spec.data_kinds, data)
    elif data is not None:
        raise UsageError("--quick-smoke trains on the built-in data; leave out --data")
    flags: dict[str, Any] = {
        "data": data,
        "gpus": gpus,
        "cpu": cpu or None,
        "procs": procs,
        "steps": steps,
        "epochs": epochs,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "lr": lr,
        "precision": precision.value if precision else None,
        "grad_checkpointing": grad_checkpointing or None,
        "compile": compile or None,
        "seed": seed,
        "resume": resume,
        "out": str(out) if out else None,
        "optimizer": optimizer.value if optimizer else None,
        "scheduler": scheduler.value if scheduler else None,
        "warmup": warmup,
        "strategy": strategy.value if strategy else None,
        "quick_smoke": quick_smoke or None,
        "auto_batch": auto_batch or None,
        "log_every": log_every,
        "eval_every": eval_every,
        "checkpoint_every": checkpoint_every,
        "keep_last": keep_last,
        "workers": workers,
        "model_path": model_path,
    }
    defaults = dict(spec.factory({}).train_defaults)
    if defaults.get("workers"):  # the model's default, at most half the CPUs this process has
        defaults["workers"] = min(int(defaults["workers"]), _cpus() // 2)
    cfg = resolve_config(model, flags, model_defaults=defaults, config_file=config)
    multi_node = [
        f"--{k.replace('_', '-')}"
        for k, v in (("nnodes", nnodes), ("node_rank", node_rank), ("master_addr", master_addr))
        if v is not None
    ]
    slurm.check_options(
        print_slurm=print_slurm,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        partition=partition,
        time=time,
        cpu=cfg.cpu,
        master_port=master_port,
        multi_node_flags=multi_node,
    )
    if print_slurm:
        _print_slurm(model, flags, config, cfg, nodes, gpus_per_node, partition, time, master_port)
        return
    node_set = launch.check_nodes(nnodes, node_rank, master_addr, master_port, cfg.out)
    launch.check_gpus(cfg.gpus)
    if cfg.precision == "fp16" and (cfg.cpu or not cuda_device_count()):
        raise UsageError("--precision fp16 needs a CUDA device; on CPU use --precision bf16")
    world = cfg.procs * (node_set.nnodes if node_set else 1)
    if cfg.strategy == "fsdp" and (cfg.cpu or not cuda_device_count()) and world < 2:
        raise UsageError(
            "--strategy fsdp shards a model over processes: use it with --gpus N, or on the "
            "CPU with --cpu --procs N (N >= 2, gloo)"
        )
    run_dir = _run_dir(cfg)

    nprocs = cfg.procs if cfg.cpu else (cfg.gpus or 1)
    if (nprocs > 1 or node_set is not None) and not launch.inside_launch():
        argv = _child_argv(model, flags, config)
        _export_settings()
        code = launch.launch(nprocs, argv, run_dir, cpu=cfg.cpu, nodes=node_set)
        if code != 0:
            raise typer.Exit(code)
        _print_summary(run_dir, json_out)
        return

    from astrobio_cli.training.loop import make_plugin, train

    plugin = make_plugin(spec, cfg)
    main = launch.rank() == 0
    with _Progress(enabled=main and not json_out) as progress:
        result = train(cfg, plugin, run_dir, on_log=progress.update if main else None)
    if main and not os.environ.get(launch.CHILD_ENV):
        _print_summary(result.run_dir, json_out)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run_dir(cfg) -> Path:
    from astrobio_cli.settings import get_settings
    from astrobio_cli.training.launch import RUN_DIR_ENV
    from astrobio_cli.training.rundir import new_run_dir

    if cfg.out:
        return Path(cfg.out)
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    runs = get_settings().runs_dir
    if cfg.resume == "auto":
        previous = sorted(runs.glob(f"{cfg.model}-*"), key=lambda p: p.stat().st_mtime)
        if previous:
            return previous[-1]
    elif cfg.resume:
        from astrobio_cli.training.checkpoint import resolve_checkpoint

        return resolve_checkpoint(Path(cfg.resume)).parent.parent
    return new_run_dir(runs, cfg.model)


def _print_slurm(model, flags, config, cfg, nodes, gpus_per_node, partition, time, port) -> None:
    """`--print-slurm`: the sbatch script on stdout (training.slurm), nothing trained."""
    from astrobio_cli import settings as settings_mod
    from astrobio_cli.training.slurm import sbatch_script

    _export_settings()
    exports = {
        k: os.environ[k]
        for k in ("ASTROBIO_DATA_DIR", "ASTROBIO_CACHE_DIR", "ASTROBIO_RUNS_DIR", "ASTROBIO_CONFIG")
        if k in os.environ
    }
    gpus = None if cfg.cpu else (gpus_per_node or cfg.gpus or 1)
    argv = _child_argv(model, {**flags, "gpus": None}, config)
    script = sbatch_script(
        model=model,
        argv=argv,
        out=Path(cfg.out) if cfg.out else None,
        runs_dir=Path(settings_mod.loaded().settings.runs_dir),
        nodes=nodes or 2,
        gpus_per_node=gpus,
        partition=partition,
        time=time,
        master_port=port,
        exports=exports,
        cpus_per_task=cfg.procs if cfg.cpu else None,
    )
    typer.echo(script, nl=False)


def _child_argv(model: str, flags: dict[str, Any], config: Path | None) -> list[str]:
    argv = ["train", model]
    for key, value in flags.items():
        if value is None or key in ("out",):
            continue
        opt = "--" + key.replace("_", "-")
        if value is True:
            argv.append(opt)
        else:
            argv += [opt, str(value)]
    if config is not None:
        argv += ["--config", str(Path(config).resolve())]
    return argv


def _export_settings() -> None:
    """Workers read settings from the environment: pass on what the root flags set."""
    from astrobio_cli import settings as settings_mod

    ls = settings_mod.loaded()
    os.environ["ASTROBIO_DATA_DIR"] = str(Path(ls.settings.data_dir).resolve())
    os.environ["ASTROBIO_CACHE_DIR"] = str(Path(ls.settings.cache_dir).resolve())
    os.environ["ASTROBIO_RUNS_DIR"] = str(Path(ls.settings.runs_dir).resolve())
    if ls.config_exists and ls.config_origin != "default":
        os.environ["ASTROBIO_CONFIG"] = str(ls.config_path.resolve())


def _print_summary(run_dir: Path, json_out: bool) -> None:
    from rich.console import Console

    path = run_dir / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    c = Console(highlight=False)
    c.print(f"[bold]run[/] {run_dir}")
    if summary and summary.get("final_loss") is None:  # resumed at (or past) its last step
        c.print(
            f"steps {summary['steps']}: nothing left to train, the run had already reached its "
            "last step; give a larger --steps to train on"
        )
    elif summary:
        c.print(
            f"steps {summary['steps']}  final loss {summary['final_loss']:.4g}  "
            f"{summary['samples_per_s']:.1f} samples/s  processes {summary['world_size']}"
        )
        if summary.get("resumed_from"):
            c.print(f"resumed from {summary['resumed_from']}")
        if summary.get("eval"):
            c.print("held-out: " + "  ".join(f"{k} {v:.4g}" for k, v in summary["eval"].items()))
    c.print(f"evaluate: astrobio eval {summary.get('model', 'MODEL')} --checkpoint {run_dir}")


class _Progress:
    """A rich progress bar (steps, loss, samples/s, ETA) on the main process only."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[sps]} samples/s"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.__enter__()
        return self

    def update(self, record: dict[str, Any]) -> None:
        if self._bar is None:
            return
        if self._task is None:
            self._task = self._bar.add_task("train", total=record["total"], loss="-", sps="-")
        self._bar.update(
            self._task,
            completed=record["step"],
            loss=f"{record['loss']:.4g}",
            sps=f"{record['samples_per_s']:.1f}",
        )

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def eval_command(
    model: Annotated[str, typer.Argument(help="Model name.")],
    checkpoint: Annotated[
        list[Path],
        typer.Option(
            help="A run directory, its checkpoints/ or a step-NNNNNN directory. Repeat it for "
            "runs of several seeds: every figure is then mean ± std over the runs."
        ),
    ],
    data: Annotated[
        str | None, typer.Option(help="Data (default: the data the checkpoint was trained on).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write a PNG figure here (of the first checkpoint's run)."),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            help="Write the first run's predictions for held-out samples here, one JSON line "
            "each: the sample, the request body `astrobio serve` takes for it, the prediction."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, help="With --predictions: at most this many samples.")
    ] = 16,
) -> None:
    """Held-out metrics of checkpoints beside the strongest cheap baselines on the same split.

    Train the same model with several seeds and give every run, e.g.
    `astrobio eval graph-vae --checkpoint runs/gv-0 --checkpoint runs/gv-1 --checkpoint runs/gv-2`.
    """
    from astrobio_cli.training.data import check_data
    from astrobio_cli.training.evaluate import evaluate_checkpoints

    spec = _model_spec(model)
    check_data(model, spec.data_kinds, data)
    report = evaluate_checkpoints(
        spec, list(checkpoint), data=data, plot=plot, predictions=predictions, limit=limit
    )
    if json_out:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    from rich.console import Console

    c = Console(highlight=False)
    c.print(eval_table(model, report))
    ckpts = report["checkpoint"]
    c.print("checkpoint " + (ckpts if isinstance(ckpts, str) else ", ".join(ckpts)))
    key, better = report["primary_metric"]
    for name, rel in report["vs_baseline"].items():
        word = "below" if better == "lower" else "above"
        c.print(f"{key}: {abs(rel) * 100:.1f}% {word if rel >= 0 else 'worse than'} {name}")
    if report["loses_to"]:
        c.print(
            f"[bold]the model loses to {', '.join(report['loses_to'])} on {key}[/bold] "
            "(mean over the runs)"
        )
    if plot is not None:
        c.print(f"figure: {plot}")
    if predictions is not None:
        c.print(f"held-out predictions: {predictions}")


def _cell(mean: float | None, std: float | None, runs: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4g} ± {std:.2g}" if runs > 1 and std is not None else f"{mean:.4g}"


def eval_table(model: str, report: dict[str, Any]):
    """The rich table of `astrobio eval`: the model, then every baseline; mean ± std over runs."""
    from rich.table import Table

    runs = report.get("runs", 1)
    seeds = report.get("seeds") or []
    over = f", mean ± std over {runs} seeds ({', '.join(map(str, seeds))})" if runs > 1 else ""
    title = f"{model} on {report['split']} ({report['samples']} samples{over})"
    table = Table(title=title)
    metrics = list(report["model"])
    table.add_column("predictor")
    for m in metrics:
        table.add_column(m, justify="right")
    std = report.get("model_std", {})
    table.add_row("model", *(_cell(report["model"][m], std.get(m), runs) for m in metrics))
    for name, vals in report["baselines"].items():
        bstd = report.get("baselines_std", {}).get(name, {})
        table.add_row(name, *(_cell(vals.get(m), bstd.get(m), runs) for m in metrics))
    return table
