"""A well-behaved toy plugin implementing every hook."""

import typer

from astrobio_cli.hookspecs import hookimpl
from astrobio_cli.specs import AttentionBackendSpec, DataSourceSpec, ModelSpec


@hookimpl
def register_models(register):
    register(
        ModelSpec(name="toy-model", description="A toy model.", factory=lambda cfg=None: "built")
    )


@hookimpl
def register_data_sources(register):
    register(
        DataSourceSpec(name="toy-source", description="A toy source.", factory=dict, offline=True)
    )


@hookimpl
def register_attention_backends(register):
    register(
        AttentionBackendSpec(
            name="toy-gpu-kernel",
            description="Needs hardware this machine lacks.",
            factory=object,
            check=lambda: (False, "needs a CUDA device"),
        )
    )


@hookimpl
def register_commands(app):
    @app.command("toy-hello")
    def toy_hello(name: str = typer.Option("world")) -> None:
        """Say hello from the toy plugin."""
        typer.echo(f"toy hello {name}")
