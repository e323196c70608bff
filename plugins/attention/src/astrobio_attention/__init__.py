"""Built-in astrobio attention plugins.

Registered through the `astrobio` entry-point group, exactly as a third-party plugin is.
This module is imported by `astrobio --help`: keep heavy imports inside factories, and keep
`check` functions free of torch (they run for `astrobio plugins list`).
"""

from astrobio_cli.hardware import need_module
from astrobio_cli.hookspecs import hookimpl
from astrobio_cli.specs import AttentionBackendSpec

__all__ = ["hookimpl"]


def _eager():
    from astrobio_attention.eager import EagerBackend

    return EagerBackend()


@hookimpl
def register_attention_backends(register):
    register(
        AttentionBackendSpec(
            name="eager",
            description="Plain PyTorch math (materialises the score matrix): the readable baseline.",
            factory=_eager,
            check=lambda: need_module("torch"),
        )
    )
