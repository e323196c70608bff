"""`astrobio preprocess IN OUT`: a NetCDF/Zarr datacube into normalised tensors in Zarr."""

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command(name="preprocess", no_args_is_help=True)(preprocess)


def preprocess(
    src: Annotated[Path, typer.Argument(metavar="IN", help="NetCDF file or Zarr store.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Zarr store to write.")],
    vars: Annotated[
        str | None,
        typer.Option("--vars", help="Comma-separated variables (default: every lat-lon field)."),
    ] = None,
    stats_from: Annotated[
        Path | None,
        typer.Option(help="Normalise with these stats (stats.json of an earlier run)."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="Stats from the 'train' split (the first --train-fraction of the first "
            "sample dim; the rest stay unseen, for validation) or from 'all' samples (a store "
            "for inference or statistics, not for training and validating a model). Default: "
            "train, or none with --stats-from."
        ),
    ] = None,
    train_fraction: Annotated[float, typer.Option(help="Size of the train split.")] = 0.8,
    regrid: Annotated[
        float | None,
        typer.Option(help="Regrid bilinearly onto a regular grid of this step in degrees."),
    ] = None,
    patch: Annotated[
        str | None,
        typer.Option(help="Cut tiles LATxLON (or LEVxLATxLON); lon wraps around."),
    ] = None,
    stride: Annotated[
        str | None, typer.Option(help="Tile stride N or LATxLON (default: the tile size).")
    ] = None,
    pad: Annotated[int, typer.Option(help="Latitude rows of padding (missing) each side.")] = 0,
    fill: Annotated[
        str, typer.Option(help="NaN becomes: 'none' (stays NaN), 'mean', or a number (raw units).")
    ] = "none",
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker threads, at most 4x the logical cores (default: setting, all cores).",
        ),
    ] = None,
    chunk: Annotated[
        int | None, typer.Option(min=1, help="Samples per step (default: ~256 MB of input).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Run the chunks as tasks on a Dask cluster: a scheduler address "
            "(tcp://host:8786; IN and OUT on a filesystem every worker shares) or local:N "
            "(N worker processes on this machine). Same store, bit for bit. Needs the dask "
            "extra.",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object (output, stats file, per-variable shape and stats) "
            "instead of the table; progress stays on stderr.",
        ),
    ] = False,
) -> None:
    """Regrid, normalise (stats from the train split), fill NaN and cut patches, into Zarr.

    Variables with different level coordinates are processed as separate groups. Writes
    OUT/stats.json too; OUT appears only when everything is written.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from astrobio_cli import datacube as dc
    from astrobio_cli import preprocess as pp
    from astrobio_cli.errors import UsageError

    try:
        spec = dc.PatchSpec.parse(patch, stride, pad) if patch else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if spec is None and (stride or pad):
        raise UsageError("--stride and --pad need --patch")
    if threads is not None and threads > (bound := dc.max_threads()):
        raise UsageError(
            f"--threads {threads} is more than the maximum of {bound} "
            f"({dc.THREADS_PER_CORE}x the {bound // dc.THREADS_PER_CORE} logical cores)"
        )
    names = [v.strip() for v in vars.split(",") if v.strip()] if vars else None
    fill_value = None if fill.lower() == "none" else fill

    err = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("reading", total=None)

        def progress(desc: str, done: int, total: int) -> None:
            bar.update(task, description=desc, completed=done, total=total)

        try:
            result = pp.preprocess(
                src,
                out,
                variables=names,
                stats_from=stats_from,
                split=split or ("all" if stats_from is not None else "train"),
                train_fraction=train_fraction,
                regrid=regrid,
                patch=spec,
                fill=fill_value,
                threads=threads,
                chunk=chunk,
                overwrite=overwrite,
                progress=progress,
                scheduler=scheduler,
            )
        except KeyboardInterrupt:
            interrupted = True
        else:
            interrupted = False
    if interrupted:
        _interrupted(err, out)

    if as_json:
        typer.echo(_json_doc(result))
        return
    table = Table(
        title=f"{result.out}  ({result.seconds:.2f} s, {'rust' if result.native else 'numpy'})"
    )
    for col in ("variable", "group", "shape", "units", "count", "mean", "std"):
        table.add_column(col, justify="right" if col in ("count", "mean", "std") else "left")
    s = result.stats
    for v, name in enumerate(s.names):
        extra = s.extra.get(name, {})
        table.add_row(
            name,
            "scalar" if extra.get("kind") == "scalar" else str(extra.get("level_dim") or "surface"),
            "x".join(map(str, result.shapes[name])),
            str(extra.get("units", "")),
            str(int(s.count[v])),
            f"{s.mean[v]:.6g}",
            f"{s.std[v]:.6g}",
        )
    console = Console(soft_wrap=True)
    console.print(table)
    console.print(f"stats: {result.stats_path}", highlight=False)


def _json_doc(result) -> str:
    """`--json`: the result as one JSON object (non-finite numbers as null)."""
    import json
    import math

    def num(x) -> float | None:
        x = float(x)
        return x if math.isfinite(x) else None

    s = result.stats
    variables = []
    for v, name in enumerate(s.names):
        extra = s.extra.get(name, {})
        group = (
            "scalar" if extra.get("kind") == "scalar" else str(extra.get("level_dim") or "surface")
        )
        variables.append(
            {
                "name": name,
                "group": group,
                "shape": list(result.shapes[name]),
                "units": extra.get("units", ""),
                "count": int(s.count[v]),
                "mean": num(s.mean[v]),
                "std": num(s.std[v]),
                "min": num(s.min[v]),
                "max": num(s.max[v]),
            }
        )
    doc = {
        "out": str(result.out),
        "stats": str(result.stats_path),
        "seconds": round(result.seconds, 3),
        "backend": "rust" if result.native else "numpy",
        "groups": [
            {"label": g.label, "sample_dims": list(g.sample_dims), "variables": list(g.names)}
            for g in result.groups
        ],
        "variables": variables,
    }
    return json.dumps(doc, indent=2)


def _interrupted(err, out: Path) -> None:
    """Ctrl-C or SIGTERM: the temporary store is already removed and OUT untouched. Leave now
    with 130: an orderly interpreter shutdown takes most of a second after the imports this
    command made, and a compute thread still inside a native kernel or a read would hold it up
    (or read a file that shutdown closes under it)."""
    import os
    import sys

    from rich.markup import escape

    err.print(f"[bold red]error:[/] interrupted; nothing was written to {escape(str(out))}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
