"""An example third-party astrobio plugin.

It shows every hook: a data source, an attention backend and a command (a model comes with the
training issue's interface). Copy this distribution to start your own plugin; see README.md,
"Writing a plugin".

Rules a plugin follows:
- this module is imported by `astrobio --help`: import torch and friends only inside factories;
- names are kebab-case and unique across installed plugins;
- `check` is cheap and says why the thing cannot run here.
"""

from __future__ import annotations

import typer

from astrobio_cli.hardware import need_module
from astrobio_cli.hookspecs import hookimpl
from astrobio_cli.specs import AttentionBackendSpec, DataSourceSpec


def _naive_backend():
    from astrobio_example.attention import NaiveAttention

    return NaiveAttention()


@hookimpl
def register_attention_backends(register):
    register(
        AttentionBackendSpec(
            name="example-naive",
            description="Example: softmax(QK^T)V in plain torch, float32.",
            factory=_naive_backend,
            check=lambda: need_module("torch"),
        )
    )


def _constants_source():
    from astrobio_example.source import SolarSystemConstants

    return SolarSystemConstants()


@hookimpl
def register_data_sources(register):
    register(
        DataSourceSpec(
            name="example-constants",
            description="Example: a few Solar System planets' radii and orbits, offline.",
            factory=_constants_source,
            offline=True,
        )
    )


@hookimpl
def register_commands(app: typer.Typer):
    @app.command("example-hello")
    def example_hello(name: str = typer.Option("world", help="Who to greet.")) -> None:
        """Say hello (a command added by the example plugin)."""
        typer.echo(f"hello {name}, from astrobio-example-plugin")
