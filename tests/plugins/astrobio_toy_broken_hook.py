"""A plugin whose hook raises."""

from astrobio_cli.hookspecs import hookimpl


@hookimpl
def register_models(register):
    raise RuntimeError("toy hook exploded")
