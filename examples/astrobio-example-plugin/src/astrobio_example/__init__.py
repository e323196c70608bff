"""An example third-party astrobio plugin.

It shows every hook: a model (`example-mlp`), a data source with a fetch command
(`example-constants`), an attention backend (`example-naive`) and a command (`example-hello`).
Copy this distribution to start your own plugin; see its README.md and the top-level README.md,
"Writing a plugin".

Rules a plugin follows:
- this module is imported by `astrobio --help`: import torch and friends only inside factories;
- names are kebab-case and unique across installed plugins;
- `check` is cheap and says why the thing cannot run here.
"""

import typer

from astrobio_cli.hardware import need_module
from astrobio_cli.hookspecs import hookimpl
from astrobio_cli.specs import AttentionBackendSpec, DataSourceSpec, ModelSpec


def _mlp_factory(config=None):
    # torch is imported here, when a command builds the model, never at registration.
    from astrobio_example.mlp import factory

    return factory(config)


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="example-mlp",
            description="Example: a two-layer MLP predicting planets' equilibrium temperature.",
            factory=_mlp_factory,
            # .csv data is "exoplanet-table": `astrobio train example-mlp --data x.csv` passes
            # the data check; with no --data the model generates its own table.
            data_kinds=("exoplanet-table",),
            check=lambda: need_module("torch"),
        )
    )


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


def _constants_command():
    # `astrobio fetch example-constants`: the function's Typer annotations are its options.
    from astrobio_example.fetch_cli import command

    return command()


@hookimpl
def register_data_sources(register):
    register(
        DataSourceSpec(
            name="example-constants",
            description="Example: a few Solar System planets' radii and orbits, offline.",
            factory=_constants_source,
            command=_constants_command,
            offline=True,
        )
    )


@hookimpl
def register_commands(app: typer.Typer):
    @app.command("example-hello")
    def example_hello(name: str = typer.Option("world", help="Who to greet.")) -> None:
        """Say hello (a command added by the example plugin)."""
        typer.echo(f"hello {name}, from astrobio-example-plugin")
