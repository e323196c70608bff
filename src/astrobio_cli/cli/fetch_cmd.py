"""`astrobio fetch SOURCE ...`: one subcommand per registered data source.

Each DataSourceSpec's `command()` returns a plain function whose Typer-annotated parameters are
that source's options; it is added here as `astrobio fetch NAME`. Those functions live in light
modules (no torch, no httpx at import) because building the app imports them.
"""

import typer


def register(app: typer.Typer) -> None:
    from astrobio_cli.cli import current_host
    from astrobio_cli.plugins import Broken, _format_error

    group = typer.Typer(
        help="Download data from an archive, or generate it offline. "
        "`astrobio fetch SOURCE --help` shows a source's options.",
        no_args_is_help=True,
    )
    host = current_host()
    for entry in sorted(host.entries["data-source"].values(), key=lambda e: e.spec.name):
        spec = entry.spec
        if spec.command is None:
            continue
        try:
            fn = spec.command()
        except Exception as exc:  # a source whose CLI module fails to import is quarantined
            host.broken.append(Broken(entry.plugin, _format_error(exc), "data-source"))
            continue
        group.command(name=spec.name, help=spec.description, no_args_is_help=False)(fn)
    app.add_typer(group, name="fetch")
