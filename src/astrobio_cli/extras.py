"""Install tiers: which optional extra brings which module, and one message when one is missing.

`pip install astrobio` is the light core (fetch, cache, preprocess, env, plugins, config). The
heavy parts come as extras: `[train]` (torch, the built-in models and attention backends),
`[serve]`, `[plot]`, `[dask]`, or `[all]`. A command that needs a missing extra says which one.
"""

from __future__ import annotations

import importlib.util

from astrobio_cli.errors import UsageError

# module -> the extra that installs it
EXTRA_OF = {
    "torch": "train",
    "accelerate": "train",
    "safetensors": "train",
    "scipy": "train",
    "tensorboard": "train",
    "astrobio_models": "train",
    "astrobio_attention": "train",
    "fastapi": "serve",
    "uvicorn": "serve",
    "matplotlib": "plot",
    "dask": "dask",
    "distributed": "dask",
}


def missing(*modules: str) -> list[str]:
    """The modules of `modules` that are not installed (without importing them)."""
    out = []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(m)
    return out


def install_hint(module: str) -> str:
    """'torch, which is not installed here: ...' - the end of a sentence naming the extra."""
    extra = EXTRA_OF.get(module, "all")
    return (
        f"{module}, which is not installed here: install the [{extra}] extra with "
        f"pip install 'astrobio[{extra}]' (or 'astrobio[all]'; in a checkout: uv sync)"
    )


def require(what: str, *modules: str) -> None:
    """Raise one clear UsageError when `what` (e.g. "astrobio train") needs a missing module."""
    gone = missing(*modules)
    if gone:
        raise UsageError(f"{what} needs {install_hint(gone[0])}")
