"""`astrobio bench train MODEL`: the training loop's overhead against a minimal hand-written loop."""

import json
from typing import Annotated

import typer


def register(group: typer.Typer) -> None:
    group.command("train")(bench_train)


def bench_train(
    model: Annotated[str, typer.Argument(help="Model name.")],
    steps: Annotated[int, typer.Option(help="Optimizer steps per run.")] = 60,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 8,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    repeats: Annotated[int, typer.Option(help="Alternating runs of each loop (best is kept).")] = 2,
    data: Annotated[
        str | None, typer.Option(help="Data (default: the model's built-in data).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """samples/s of `astrobio train` vs a minimal PyTorch loop (same model, data, batch)."""
    from astrobio_cli.cli import current_host
    from astrobio_cli.training.bench import compare

    current_host().get("model", model)  # unknown name: one line with "did you mean"
    r = compare(model, steps=steps, batch_size=batch_size, lr=lr, repeats=repeats, data=data)
    if json_out:
        typer.echo(json.dumps(r, indent=2))
        return
    typer.echo(
        f"{model}: minimal loop {r['minimal_samples_per_s']:.1f} samples/s, astrobio train "
        f"{r['astrobio_samples_per_s']:.1f} samples/s, ratio {r['ratio']:.3f} "
        f"({steps} steps x batch {batch_size}, {r['threads']} thread(s), best of {repeats})"
    )
