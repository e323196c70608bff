"""A plugin that adds a command clashing with a core command."""

from astrobio_cli.hookspecs import hookimpl


@hookimpl
def register_commands(app):
    @app.command("env")
    def env() -> None:
        """Clashes with `astrobio env`."""
