"""The plugin contract of astrobio: four hooks, project name "astrobio".

A plugin is a module that implements any of these hooks with `@astrobio_cli.hookimpl` and is
named in its distribution's `astrobio` entry-point group::

    # pyproject.toml of the plugin's distribution
    [project.entry-points.astrobio]
    my-plugin = "my_package"

The built-in plugins are found exactly this way. A plugin module is imported by
`astrobio --help`, so it must not import torch or other heavy modules at the top level: put
those imports inside the factories it registers.

If a plugin's import or any of its hooks raises, astrobio quarantines it: `astrobio plugins list`
shows it as broken with the error and every other command keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from astrobio_cli.specs import AttentionBackendSpec, DataSourceSpec, ModelSpec

PROJECT = "astrobio"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register model plugins (`astrobio train NAME`, `astrobio eval NAME`).

    When: once per process, the first time a command needs the plugin registry (including
    `astrobio --help`, so keep it cheap).

    :param register: call it once per model with an :class:`astrobio_cli.specs.ModelSpec`.
        It raises ``ValueError`` for a spec that is not well formed (e.g. a name that is not
        kebab-case); that error quarantines this plugin.

    Example::

        @hookimpl
        def register_models(register):
            register(ModelSpec(
                name="tiny-mlp",
                description="A two-layer MLP over exoplanet table features.",
                factory=lambda config: __import__("my_pkg.mlp").mlp.build(config),
                data_kinds=("exoplanet-table",),
            ))
    """


@hookspec
def register_data_sources(register: Callable[[DataSourceSpec], None]) -> None:
    """Register data sources (`astrobio fetch NAME`).

    When: as for :func:`register_models`.

    :param register: call it once per source with an :class:`astrobio_cli.specs.DataSourceSpec`.

    Example::

        @hookimpl
        def register_data_sources(register):
            register(DataSourceSpec(
                name="my-archive",
                description="Tables from My Archive (https://example.org).",
                factory=lambda: __import__("my_pkg.archive").archive.MyArchive(),
                command=lambda: __import__("my_pkg.archive").archive.fetch_command,
            ))
    """


@hookspec
def register_attention_backends(register: Callable[[AttentionBackendSpec], None]) -> None:
    """Register attention backends (`attention(q, k, v, backend=NAME)`, `astrobio bench attention`).

    When: as for :func:`register_models`.

    :param register: call it once per backend with an
        :class:`astrobio_cli.specs.AttentionBackendSpec`. The spec's ``check`` says whether the
        backend can run on this machine at all (library installed, a GPU present); the backend
        object's ``supports(q, k, v, mask, causal, training) -> (ok, reason)`` decides per call, and
        an optional ``supports_dropout`` attribute (``False``, or a function of ``q``) says whether
        it implements ``dropout_p > 0``. docs/attention.md has the semantics every backend follows.

    Example::

        @hookimpl
        def register_attention_backends(register):
            register(AttentionBackendSpec(
                name="my-kernel",
                description="Our fused kernel.",
                factory=lambda: __import__("my_pkg.attn").attn.MyKernel(),
                check=lambda: (True, "") if cuda_device_count() else (False, "needs a CUDA device"),
            ))
    """


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add top-level commands to the `astrobio` command line.

    When: each time the command-line app is built (once per `astrobio` invocation).

    :param app: the root :class:`typer.Typer`; add commands with ``@app.command()`` or groups with
        ``app.add_typer(...)``. Import heavy modules inside the command function, not here.
        A name that clashes with an existing command is an error naming the plugin.

    Example::

        @hookimpl
        def register_commands(app):
            @app.command()
            def hello(name: str = "world"):
                \"\"\"Say hello.\"\"\"
                print(f"hello {name}")
    """
