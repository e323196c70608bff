"""Built-in astrobio attention plugins.

Registered through the `astrobio` entry-point group, exactly as a third-party plugin is.
This module is imported by `astrobio --help`: keep heavy imports inside factories.
"""

from astrobio_cli.hookspecs import hookimpl

__all__ = ["hookimpl"]
