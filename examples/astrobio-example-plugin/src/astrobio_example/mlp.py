"""`example-mlp`: the smallest complete model plugin, a two-layer MLP.

It learns a planet's equilibrium temperature from three columns of a table:

    flux            stellar flux at the planet, in units of Earth's (S / S_earth);
    albedo          Bond albedo A;
    redistribution  heat-redistribution factor f: 1/4 when the whole sphere re-radiates,
                    up to 1/2 for a tidally locked dayside;
    teq             the target, T_eq = (f * S_earth * S * (1 - A) / sigma) ** (1/4), in K.

Its built-in data is a deterministic synthetic table (a fixed seed, 512 planets, the closed form
above plus 3 K of Gaussian "measurement" noise), so training needs no network and no files.
`--data FILE.csv` trains on any CSV with those four columns instead.

This module imports torch at the top: that is fine, because the plugin's `__init__` imports it
only inside the spec's factory, i.e. only when a command trains or evaluates the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from astrobio_cli.errors import UsageError
from astrobio_cli.training.plugin import Datasets

NAME = "example-mlp"
COLUMNS = ("flux", "albedo", "redistribution")
TARGET = "teq"
SIGMA = 5.670374419e-8  # Stefan-Boltzmann constant, W m^-2 K^-4
S_EARTH = 1361.0  # solar constant, W m^-2

# Every option the model accepts, with its default. `--config FILE.yaml`'s `model:` section
# overrides them; an unknown key is an error (see `factory`).
DEFAULTS: dict[str, Any] = {
    "hidden": 64,
    "samples": 512,  # rows of the built-in table
    "noise_k": 3.0,  # Gaussian noise added to the built-in T_eq, in K
    "val_fraction": 0.25,
    "data_seed": 0,  # fixes the built-in table AND the split: `eval` must see the same val rows
    "grad_checkpointing": False,  # every model accepts it; an MLP this small ignores it
}


def factory(config: dict[str, Any] | None = None) -> ExampleMLPPlugin:
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise UsageError(
            f"model '{NAME}' has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(sorted(DEFAULTS))}"
        )
    return ExampleMLPPlugin({**DEFAULTS, **config})


def equilibrium_temperature(flux, albedo, redistribution):
    """T_eq in K (float64) for flux in Earth units; Earth (1, 0.306, 1/4) gives about 254 K."""
    flux, albedo, f = (np.asarray(a, dtype=np.float64) for a in (flux, albedo, redistribution))
    return (f * S_EARTH * flux * (1.0 - albedo) / SIGMA) ** 0.25


def synthetic_table(samples: int, noise_k: float, seed: int) -> dict[str, np.ndarray]:
    """The built-in data: `samples` planets drawn with numpy's seeded generator (same seed, same
    table on every machine)."""
    rng = np.random.default_rng(seed)
    flux = 10.0 ** rng.uniform(-1.0, 1.0, samples)  # 0.1 to 10 times Earth's insolation
    albedo = rng.uniform(0.0, 0.7, samples)
    f = rng.uniform(0.25, 0.5, samples)
    teq = equilibrium_temperature(flux, albedo, f) + rng.normal(0.0, noise_k, samples)
    return {"flux": flux, "albedo": albedo, "redistribution": f, "teq": teq}


def read_table(path: Path) -> dict[str, np.ndarray]:
    """A CSV with a header row holding (at least) the columns flux, albedo, redistribution, teq."""
    try:
        arr = np.genfromtxt(path, delimiter=",", names=True, dtype=np.float64, encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise UsageError(f"--data {path}: cannot read it as a CSV table ({exc})") from None
    missing = [c for c in (*COLUMNS, TARGET) if c not in (arr.dtype.names or ())]
    if missing or arr.size < 4:
        raise UsageError(
            f"--data {path}: model '{NAME}' needs a CSV with at least 4 rows and the columns "
            f"{', '.join((*COLUMNS, TARGET))} (missing: {', '.join(missing) or 'rows'})"
        )
    return {c: np.atleast_1d(arr[c]) for c in (*COLUMNS, TARGET)}


class ExampleMLPPlugin:
    """The object the training loop, `astrobio eval` and `check_plugin` talk to."""

    name = NAME
    data_kind = "exoplanet-table"  # .csv files are this kind: `--data x.csv` passes the check
    # What the model trains best with; YAML and flags override. No warmup: 10 smoke steps are
    # enough for this MLP to beat the mean predictor only if the first steps already count.
    train_defaults = {"lr": 3e-2, "batch_size": 64, "steps": 200, "warmup": 0}
    smoke_config = {"hidden": 16}  # --quick-smoke: tiny, and still learns in 10 steps
    primary_metric = ("rmse_K", "lower")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config  # saved in checkpoints: `eval` rebuilds the same model from it

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False) -> Datasets:
        c = self.config
        if data is None:
            table = synthetic_table(c["samples"], c["noise_k"], c["data_seed"])
            source = {"generator": "synthetic_table", "seed": c["data_seed"]}
        else:
            table, source = read_table(data), {"path": str(data)}
        n = len(table[TARGET])
        # The split depends on data_seed only (not on the run's seed), so `astrobio eval`
        # scores exactly the rows training held out.
        perm = np.random.default_rng(c["data_seed"]).permutation(n)
        n_val = max(1, round(n * c["val_fraction"]))
        val, train = perm[:n_val], perm[n_val:]

        # Inputs: log10(flux) spans two decades evenly; then standardise every column with the
        # TRAINING rows' statistics (val statistics would leak the held-out data).
        x = np.stack([np.log10(table["flux"]), table["albedo"], table["redistribution"]], 1)
        y = table[TARGET]
        x_mean, x_std = x[train].mean(0), x[train].std(0) + 1e-12
        y_mean, y_std = y[train].mean(), y[train].std() + 1e-12
        xs = torch.from_numpy((x - x_mean) / x_std).float()
        ys = torch.from_numpy((y - y_mean) / y_std).float()

        def subset(idx):  # a map-style dataset: ds[i] -> (x, y); default_collate stacks them
            return TensorDataset(xs[idx], ys[idx])

        provenance = {**source, "rows": n, "train": len(train), "val": len(val)}
        # `context` carries what evaluate/baseline need to report metrics in kelvin.
        context = {"y_mean": float(y_mean), "y_std": float(y_std)}
        return Datasets(subset(train), subset(val), provenance=provenance, context=context)

    def build(self, datasets: Datasets) -> nn.Module:
        h = self.config["hidden"]
        return nn.Sequential(nn.Linear(len(COLUMNS), h), nn.GELU(), nn.Linear(h, 1))

    def loss(self, model, batch, datasets):
        x, y = batch
        # Call `model(...)` itself, not a submodule, so DDP sees the forward pass.
        return torch.mean((model(x).squeeze(-1).float() - y) ** 2)

    def _metrics(self, pred_std, datasets: Datasets) -> dict[str, float]:
        """RMSE and MAE in kelvin (float64) of standardised predictions on the val rows."""
        ctx = datasets.context
        true = datasets.val.tensors[1].double().numpy() * ctx["y_std"] + ctx["y_mean"]
        pred = np.asarray(pred_std, dtype=np.float64) * ctx["y_std"] + ctx["y_mean"]
        err = pred - true
        return {"rmse_K": float(np.sqrt(np.mean(err**2))), "mae_K": float(np.mean(np.abs(err)))}

    def evaluate(self, model, datasets: Datasets) -> dict[str, float]:
        x = datasets.val.tensors[0].to(next(model.parameters()).device)
        return self._metrics(model(x).squeeze(-1).float().cpu().numpy(), datasets)

    def baseline(self, datasets: Datasets) -> dict[str, dict[str, float]]:
        # The mean predictor: always answer the training rows' mean. A model that cannot beat
        # it has learned nothing. (Standardised targets: the training mean is 0.)
        train_mean = float(datasets.train.tensors[1].double().mean())
        return {"mean": self._metrics(np.full(len(datasets.val), train_mean), datasets)}
