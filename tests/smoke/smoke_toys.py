"""Toy model plugins for the smoke tests: one that works, and ones broken in one way each.

Real torch modules through the real model plugin interface (astrobio_cli.training.plugin), small
enough to run in milliseconds, so each test can show that a check fails when it should.
"""

from __future__ import annotations

from astrobio_cli.hookspecs import hookimpl
from astrobio_cli.specs import ModelSpec


class ToyPlugin:
    data_kind = "toy"
    train_defaults = {"lr": 1e-2, "batch_size": 4, "steps": 10}
    smoke_config = {"hidden": 5}
    primary_metric = ("mse", "lower")

    def __init__(self, name: str, flaw: str, config: dict | None) -> None:
        self.name, self.flaw = name, flaw
        self.config = {"hidden": 8, **(config or {})}

    def make_datasets(self, data, *, seed, smoke=False):
        import torch

        from astrobio_cli.training.plugin import Datasets

        g = torch.Generator().manual_seed(seed)
        x = torch.randn(12, 3, generator=g)
        y = x.sum(1, keepdim=True)
        items = [{"x": x[i], "y": y[i]} for i in range(12)]
        return Datasets(train=items[:8], val=items[8:], provenance={"toy": True})

    def build(self, datasets):
        import torch
        from torch import nn

        h = self.config["hidden"]
        model = nn.Sequential(nn.Linear(3, h), nn.Tanh(), nn.Linear(h, 1))
        if self.flaw == "forgetful":
            # A random offset that is not saved with the weights: outputs change after a reload.
            model.register_buffer("offset", torch.randn(1), persistent=False)
            model.register_forward_hook(lambda m, i, out: out + m.offset)
        return model

    def loss(self, model, batch, datasets):
        import torch

        pred = model(batch["x"])
        loss = torch.mean((pred - batch["y"]) ** 2)
        if self.flaw == "nan":
            loss = loss * float("nan")
        return loss

    def evaluate(self, model, datasets):
        return {"mse": 0.0}

    def baseline(self, datasets):
        return {"mean": {"mse": 1.0}}


def _factory(name, flaw):
    return lambda config=None: ToyPlugin(name, flaw, config)


@hookimpl
def register_models(register):
    for name, flaw in (("toy-good", ""), ("toy-nan", "nan"), ("toy-forgetful", "forgetful")):
        register(
            ModelSpec(
                name=name, description=f"toy ({flaw or 'fine'})", factory=_factory(name, flaw)
            )
        )
    register(
        ModelSpec(
            name="toy-away",
            description="toy that is never available",
            factory=_factory("toy-away", ""),
            check=lambda: (False, "needs a toy accelerator"),
        )
    )
