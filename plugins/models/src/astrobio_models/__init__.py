"""Built-in astrobio models plugins.

Registered through the `astrobio` entry-point group, exactly as a third-party plugin is.
This module is imported by `astrobio --help`: keep heavy imports inside factories.
"""

from __future__ import annotations

import importlib
from typing import Any

from astrobio_cli.hardware import need_module
from astrobio_cli.hookspecs import hookimpl
from astrobio_cli.specs import ModelSpec

__all__ = ["hookimpl", "register_models"]


def _factory(module: str):
    """A factory that imports `astrobio_models.<module>` (and torch) only when called."""

    def build(config: dict[str, Any] | None = None):
        return importlib.import_module(f"astrobio_models.{module}").factory(config)

    build.__name__ = f"{module}_factory"
    return build


def _needs(module: str, pip_name: str):
    return lambda: need_module(module, pip_name)


MODELS = (
    # (name, module, data kinds, description, availability check)
    (
        "cube-unet",
        "cube_unet",
        ("climate-cube",),
        "3D U-Net surrogate for climate datacubes (attention bottleneck, physical loss terms).",
        None,
    ),
    (
        "datacube-cnn",
        "datacube_cnn",
        ("climate-cube",),
        "Depthwise-separable 3D CNN with squeeze-excitation: scalar targets from climate cubes.",
        None,
    ),
    (
        "spectral-transformer",
        "spectral_transformer",
        ("transmission-spectra",),
        "Transformer over transmission spectra predicting atmospheric parameters.",
        None,
    ),
    (
        "graph-vae",
        "graph_vae",
        ("metabolic-network",),
        "Variational graph auto-encoder over cobra's metabolic networks (link reconstruction).",
        _needs("torch_geometric", "torch-geometric"),
    ),
    (
        "planet-mass",
        "planet_mass",
        ("exoplanet-table",),
        "Mixture density network ensemble: a predictive distribution of planet mass from radius and context.",
        None,
    ),
    (
        "llm-lora",
        "llm_lora",
        ("exoplanet-table", "text-corpus", "sequences"),
        "Causal language model fine-tuned with PEFT LoRA on text generated from an exoplanet table.",
        _needs("peft", "peft"),
    ),
)


@hookimpl
def register_models(register):
    for name, module, kinds, description, check in MODELS:
        extra = {"check": check} if check is not None else {}
        register(
            ModelSpec(
                name=name,
                description=description,
                factory=_factory(module),
                data_kinds=kinds,
                **extra,
            )
        )
