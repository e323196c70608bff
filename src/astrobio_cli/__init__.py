"""astrobio: machine learning for astrobiology from one command line.

Importing this package is cheap: it never imports torch, triton, transformers or the
native extension. Heavy modules are imported by the commands that need them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("astrobio")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
