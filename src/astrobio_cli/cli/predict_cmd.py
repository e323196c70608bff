"""`astrobio predict MODEL --checkpoint RUN --input FILE`: a trained model on one input file."""

import json
from pathlib import Path
from typing import Annotated

import typer

from astrobio_cli.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)


def predict_command(
    model: Annotated[str, typer.Argument(help="Model name.")],
    checkpoint: Annotated[Path, typer.Option(help="A run directory or a checkpoint.")],
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            help="The file to predict from, e.g. a spectrum from `astrobio fetch "
            "mast-jwst-spectrum` for spectral-transformer.",
        ),
    ],
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run a trained model on one input file (the model's `predict_file`), with the
    uncertainty the input's own errors carry where the model propagates them."""
    import torch

    from astrobio_cli.cli.train_cmd import _model_spec
    from astrobio_cli.training.evaluate import load_model

    spec = _model_spec(model)
    if not input.exists():
        raise UsageError(f"--input {input}: no such file")
    _, _, plugin, datasets, net = load_model(spec, checkpoint, verb="predict")
    fn = getattr(plugin, "predict_file", None)
    if not callable(fn):
        raise UsageError(
            f"model '{model}' predicts from no input file (its plugin has no predict_file); "
            "use `astrobio eval` or `astrobio serve`"
        )
    with torch.no_grad():
        result = fn(net, datasets, input)
    if json_out:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    c = Console(highlight=False)
    params = result.get("parameters") or {}
    table = Table(title=f"{model} on {input}")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column("± from input errors", justify="right")
    for name, v in params.items():
        table.add_row(name, f"{v['value']:.4g}", f"{v.get('std_from_errors', 0):.2g}")
    c.print(table)
    for key, val in result.items():
        if key not in ("parameters",):
            c.print(f"{key}: {val}")
