"""The Python API: everything `astrobio` does, from a notebook, without subprocesses.

The same code paths as the command line (same settings, cache, provenance and checks): each
call below runs the command in this process and returns Python objects instead of printing.
Errors a user can fix raise `astrobio_cli.errors.UserError` with the CLI's one-line message.

    >>> from astrobio_cli import api
    >>> "nasa-exoplanet" in api.sources() and "planet-mass" in api.models()
    True
    >>> path = api.fetch("synthetic-climate", samples=8, seed=0, out=tmp / "climate.nc")
    >>> cube = api.open(path)                      # the core reader of its data kind
    >>> cube.form, "ta" in cube.variables
    ('raw', True)
    >>> run = api.train("planet-mass", cpu=True, steps=3, out=tmp / "pm")
    >>> run.steps, run.run_dir.name
    (3, 'pm')

Everything here imports lazily: `import astrobio_cli.api` costs nothing until a call needs
torch, pandas or astropy.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UserError

__all__ = [
    "CommandResult",
    "RunResult",
    "attention",
    "backends",
    "evaluate",
    "fetch",
    "load_run",
    "models",
    "open",
    "read_table",
    "run",
    "sources",
    "train",
]


# -- what is installed -------------------------------------------------------------------------


def _names(kind: str) -> list[str]:
    from astrobio_cli.plugins import get_host

    return get_host().names(kind)


def sources() -> list[str]:
    """Names of the installed data sources (`astrobio fetch NAME`).

    >>> "synthetic-climate" in sources()
    True
    """
    return _names("data-source")


def models() -> list[str]:
    """Names of the installed models (`astrobio train NAME`)."""
    return _names("model")


def backends() -> list[str]:
    """Names of the installed attention backends (`attention(..., backend=NAME)`)."""
    return _names("attention")


# -- any command, in this process ----------------------------------------------------------------


@dataclass
class CommandResult:
    """What a command printed, and its exit code (0: success)."""

    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The command's `--json` output, parsed."""
        return json.loads(self.stdout)


def _argv(args: tuple[Any, ...], options: dict[str, Any]) -> list[str]:
    argv = [str(a) for a in args]
    for key, value in options.items():
        flag = "--" + key.rstrip("_").replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def run(*args: Any, **options: Any) -> CommandResult:
    """Run `astrobio ARGS --OPTION VALUE ...` in this process; raise UserError on failure.

    Keyword options become flags: `steps=3` is `--steps 3`, `cpu=True` is `--cpu`,
    `columns=["a", "b"]` is `--columns a,b`, `json_=True` is `--json`.

    >>> run("plugins", "list", kind="model", json_=True).json()[0]["kind"]
    'model'
    """
    from astrobio_cli import cli

    argv = _argv(args, options)
    out, err = io.StringIO(), io.StringIO()
    import typer

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), cli.raising():
        app = cli.build_app()
        try:
            code = app(args=argv, prog_name="astrobio", standalone_mode=False)
        except typer.TyperException as exc:  # a bad option or value: what the CLI would print
            msg = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            raise UserError(f"astrobio {' '.join(argv)}: {msg}") from None
    code = code if isinstance(code, int) else 0
    result = CommandResult(argv, code, out.getvalue(), err.getvalue())
    if code != 0:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        raise UserError(lines[-1] if lines else f"astrobio {' '.join(argv)} exited {code}")
    return result


# -- data ----------------------------------------------------------------------------------------


def fetch(source: str, *args: Any, out: str | Path | None = None, **options: Any) -> Path:
    """Fetch from a data source (or generate offline data); return the written path.

    `options` are the source's own (see `astrobio fetch SOURCE --help`):

        api.fetch("nasa-exoplanet", where="pl_rade < 2", limit=50, out="small.parquet")
        api.fetch("mast-lightcurve", "TIC 261136679", mission="TESS", sector=[1, 2])
    """
    if out is not None:
        options = {"out": out, **options}
    try:  # every built-in source's --json summary names its output ("out")
        res = run("fetch", source, *args, **{"json_": True, **options})
    except UserError as exc:  # a third-party source without --json
        if "--json" not in str(exc):
            raise
        res = run("fetch", source, *args, **options)
    docs = []
    with contextlib.suppress(ValueError):
        docs.append(json.loads(res.stdout))
    for line in res.stdout.splitlines():
        if line.strip().startswith("{"):
            with contextlib.suppress(ValueError):
                docs.append(json.loads(line))
    for doc in docs:
        if isinstance(doc, dict) and isinstance(doc.get("out"), str):
            return Path(doc["out"])
    for line in res.stdout.splitlines():
        for lead in ("written to ", "written: "):
            if line.strip().startswith(lead):
                return Path(line.strip()[len(lead) :].split(" (")[0])
    if out is not None:
        return Path(out)
    raise UserError(f"astrobio fetch {source} did not say where it wrote: pass out=PATH")


def open(path: str | Path, kind: str | None = None, **options: Any) -> Any:
    """Open a data file with the core reader of its kind (what `train` reads).

    kind: "climate-cube" (NetCDF or a preprocessed Zarr store: a ClimateCube),
    "exoplanet-table" (a pandas DataFrame), "transmission-spectra" (a Spectrum),
    "light-curve", "metabolic-network", "sequences"; None guesses from the suffix.
    """
    p = Path(path)
    if kind is None:
        suffix = p.suffix.lower()
        kind = {
            ".nc": "climate-cube",
            ".zarr": "climate-cube",
            ".fasta": "sequences",
            ".fa": "sequences",
            ".gb": "sequences",
            ".xml": "metabolic-network",
            ".sbml": "metabolic-network",
        }.get(suffix)
        if kind is None:
            raise UserError(f"{p}: give kind= (one of {', '.join(_READERS)})")
    if kind not in _READERS:
        raise UserError(f"kind {kind!r} is not known: use one of {', '.join(_READERS)}")
    module, fn = _READERS[kind]
    import importlib

    return getattr(importlib.import_module(module), fn)(p, **options)


_READERS = {
    "climate-cube": ("astrobio_cli.data.climate", "open_climate_cube"),
    "exoplanet-table": ("astrobio_cli.data.tables", "read_exoplanet_table"),
    "transmission-spectra": ("astrobio_cli.data.spectra", "read_spectrum"),
    "light-curve": ("astrobio_cli.data.lightcurves", "read_light_curve"),
    "metabolic-network": ("astrobio_cli.data.networks", "read_metabolic_network"),
    "sequences": ("astrobio_cli.data.sequences", "read_sequences"),
}


def read_table(path: str | Path) -> Any:
    """A fetched table as an astropy QTable: columns with units are Quantities.

    Parquet and ECSV from `astrobio fetch` carry astropy's header, so this is
    `QTable.read(path)`; a table without units reads as plain columns.
    """
    from astropy.table import QTable

    p = Path(path)
    # An explicit format: astropy's format guessing loads pyarrow's S3 filesystem module, whose
    # unfinalised threads can abort the interpreter at exit (seen with astropy 8 + pyarrow 26).
    fmt = {".parquet": "parquet", ".ecsv": "ascii.ecsv"}.get(p.suffix.lower())
    return QTable.read(p, format=fmt) if fmt else QTable.read(p)


# -- training ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """A finished training run: where it is and what it measured."""

    run_dir: Path
    steps: int
    final_loss: float | None
    eval: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def train(model: str, **options: Any) -> RunResult:
    """Train `model` as `astrobio train MODEL` does; options are its flags.

    api.train("cube-unet", data="clim.zarr", steps=400, out="runs/cu")
    api.train("spectral-transformer", cpu=True, procs=2)    # 2 processes (gloo)
    """
    doc = run("train", model, json_=True, **options).json()
    return RunResult(
        run_dir=Path(doc["run_dir"]),
        steps=int(doc["steps"]),
        final_loss=doc.get("final_loss"),
        eval=doc.get("eval") or {},
        summary=doc,
    )


def evaluate(model: str, *checkpoints: str | Path, **options: Any) -> dict[str, Any]:
    """Held-out metrics of one or more runs beside the baselines (`astrobio eval --json`)."""
    if not checkpoints:
        raise UserError("evaluate() needs at least one run directory or checkpoint")
    args: list[Any] = ["eval", model]
    for c in checkpoints:
        args += ["--checkpoint", str(c)]
    return run(*args, json_=True, **options).json()


def load_run(model: str, checkpoint: str | Path, data: str | None = None):
    """(plugin, datasets, model) rebuilt from a run's checkpoint, the model in eval mode:
    what `astrobio eval` and `serve` use. The datasets carry the run's split and statistics."""
    from astrobio_cli.plugins import resolve
    from astrobio_cli.training.evaluate import load_model

    _, _, plugin, datasets, net = load_model(resolve("model", model), Path(checkpoint), data=data)
    return plugin, datasets, net


def attention(q: Any, k: Any, v: Any, **options: Any) -> Any:
    """The attention interface every model uses (`astrobio_cli.attention.attention`):
    (B, Hq, Tq, D) queries against (B, Hkv, Tk, D) keys/values; backend="auto" or a name.

    >>> import torch
    >>> from astrobio_cli.attention import reference_attention
    >>> q, k, v = (torch.randn(1, 2, 16, 8) for _ in range(3))
    >>> out = attention(q, k, v, causal=True, backend="eager")
    >>> ref = reference_attention(q.double(), k.double(), v.double(), causal=True)
    >>> bool((out.double() - ref).abs().max() < 1e-5)
    True
    """
    from astrobio_cli.attention import attention as _attention

    return _attention(q, k, v, **options)
