"""astrobio: machine learning for astrobiology from one command line.

Importing this package is cheap: it never imports torch, triton, transformers or the
native extension, nor importlib.metadata (`__version__` is looked up on first use). Heavy
modules are imported by the commands that need them. The Python API is `astrobio_cli.api`.
"""

__all__ = ["__version__"]


def __getattr__(name: str):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("astrobio")
        except PackageNotFoundError:  # a source tree that was never installed
            value = "0.0.0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'astrobio_cli' has no attribute {name!r}")
