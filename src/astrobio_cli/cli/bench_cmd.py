"""`astrobio bench ...`: benchmarks that print what they measured and how.

Each benchmark lives in its own module with `register(group)`; they are imported here.
"""

import importlib

import typer

BENCH_MODULES = (
    "astrobio_cli.cli.bench_attention",
    "astrobio_cli.cli.bench_loader",
    "astrobio_cli.cli.bench_preprocess",
    "astrobio_cli.cli.bench_train",
)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Benchmarks: timings, throughput and memory, reproducible by command.",
        no_args_is_help=True,
    )
    for dotted in BENCH_MODULES:
        try:
            module = importlib.import_module(dotted)
        except ModuleNotFoundError as exc:
            if exc.name == dotted:
                continue
            raise
        module.register(group)
    app.add_typer(group, name="bench")
