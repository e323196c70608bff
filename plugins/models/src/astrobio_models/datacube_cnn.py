"""`datacube-cnn`: scalar targets from climate cubes with a depthwise-separable 3D CNN + SE.

Data: a `synthetic-climate` ensemble (as cube-unet; the same 9-channel input cube).
Targets (per planet, standardised with the training split's statistics):
    gmst            global mean surface temperature, K (area-weighted mean of Ts);
    habitable_frac  the fraction of the surface with liquid water possible, 273.15 K <= Ts <=
                    373.15 K (area-weighted).

Network: a 1x1x1 stem, then `blocks` blocks of [depthwise 3x3x3 convolution (one filter per
channel), pointwise 1x1x1 convolution, GroupNorm, SiLU, squeeze-excitation (global average ->
two small linear layers -> sigmoid channel gates, Hu et al. 2018), residual], halving lat and lon
after every block; global average pooling and a linear head. Depthwise-separable convolutions
cost about 1/27 + 1/C of a full 3x3x3 convolution's multiply-adds.
Baselines (`astrobio eval`; fitted on the training split, scored like the network): the mean
of each target; ridge, quadratic ridge and boosted trees (`tabular_baselines`) on
`pooled_inputs`, the area-weighted global mean of each input channel (the five planet scalars,
the land fraction and the mean insolation; the coordinate channels are dropped as constant).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from astrobio_models._common import options, regression_metrics, split_indices
from astrobio_models.cube_unet import default_data_path, load_cube, to_tensors, unscale

NAME = "datacube-cnn"
TARGETS = ("gmst", "habitable_frac")
DEFAULTS: dict[str, Any] = {
    "width": 16,
    "blocks": 3,
    "se_ratio": 4,
    "val_fraction": 0.2,
    "split_seed": 0,
    "grad_checkpointing": False,
}


def factory(config: dict[str, Any] | None = None) -> DatacubeCNNPlugin:
    return DatacubeCNNPlugin(options(NAME, DEFAULTS, config))


def scalar_targets(ctx: dict[str, Any]) -> torch.Tensor:
    """(N, 2) float64: global mean Ts and habitable fraction from the surface-level ta."""
    ts = unscale(ctx["y"].double(), ctx)[:, 0, 0]  # (N, Y, X), K
    w = ctx["area"].double()[None, :, None] / ts.shape[-1]  # sums to 1 over the grid
    gmst = (ts * w).sum((1, 2))
    liquid = ((ts >= 273.15) & (ts <= 373.15)).double()
    return torch.stack([gmst, (liquid * w).sum((1, 2))], 1)


class DatacubeCNNPlugin:
    name = NAME
    data_kind = "climate-cube"
    train_defaults = {"lr": 3e-3, "batch_size": 16, "steps": 300, "warmup": 20}
    smoke_config = {"width": 4, "blocks": 1}
    primary_metric = ("rmse", "lower")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False):
        from astrobio_cli.training.plugin import Datasets

        path = data if data is not None else default_data_path()
        arrays, provenance = load_cube(path)
        n = arrays["ta"].shape[0]
        tr, va = split_indices(n, self.config["val_fraction"], self.config["split_seed"])
        ctx = to_tensors(arrays, tr)
        raw = scalar_targets(ctx)
        mean, std = raw[tr].mean(0), raw[tr].std(0) + 1e-12
        ctx.update(t=((raw - mean) / std).float(), t_mean=mean, t_std=std)
        provenance.update({"samples": n, "train": len(tr), "val": len(va), "targets": TARGETS})
        return Datasets(
            train=Items(ctx, tr),
            val=Items(ctx, va),
            provenance=provenance,
            context=ctx,
            seed=seed,
        )

    def build(self, datasets):
        c = self.config
        return DatacubeCNN(
            datasets.context["x"].shape[1], len(TARGETS), c["width"], c["blocks"], c["se_ratio"],
            c["grad_checkpointing"],
        )  # fmt: skip

    def loss(self, model, batch, datasets):
        return torch.mean((model(batch["x"]).float() - batch["t"]) ** 2)

    def _predict(self, model, items):
        device = next(model.parameters()).device
        out = [
            model(items.ctx["x"][items.idx[s : s + 32]].to(device)).float().cpu()
            for s in range(0, len(items.idx), 32)
        ]
        return torch.cat(out)

    def _metrics(self, pred, items):
        ctx = items.ctx
        true = ctx["t"][items.idx]
        overall = regression_metrics(pred.numpy(), true.numpy())
        out = {"rmse": overall["rmse"], "r2": overall["r2"]}
        p = pred.double() * ctx["t_std"] + ctx["t_mean"]
        t = true.double() * ctx["t_std"] + ctx["t_mean"]
        out["rmse_gmst_K"] = regression_metrics(p[:, 0].numpy(), t[:, 0].numpy())["rmse"]
        out["rmse_habitable_frac"] = regression_metrics(p[:, 1].numpy(), t[:, 1].numpy())["rmse"]
        return out

    def evaluate(self, model, datasets):
        return self._metrics(self._predict(model, datasets.val), datasets.val)

    def baseline_predictions(self, datasets) -> dict[str, np.ndarray]:
        """Each baseline's (n_val, 2) standardised predictions, fitted on the training split:
        the mean, and ridge / quadratic ridge / boosted trees on `pooled_inputs`."""
        from astrobio_models.tabular_baselines import fit_predict

        ctx, tr, va = datasets.context, datasets.train.idx, datasets.val.idx
        x, t = pooled_inputs(ctx), ctx["t"].double().numpy()
        preds = {"mean": np.repeat(t[tr].mean(0, keepdims=True), len(va), 0)}
        preds.update(fit_predict(x[tr], t[tr], x[va], datasets.seed))
        return preds

    def baseline(self, datasets):
        preds = self.baseline_predictions(datasets)
        self._baseline_cache = (datasets, preds)  # plot() reuses them
        return {k: self._metrics(torch.from_numpy(v), datasets.val) for k, v in preds.items()}

    def plot(self, model, datasets, path: Path) -> None:
        """Predicted vs true GMST and habitable fraction on the held-out split: the model and
        the best baseline (lowest RMSE)."""
        from astrobio_models.tabular_baselines import best_baseline, plot_pred_vs_true

        cache = getattr(self, "_baseline_cache", None)
        preds = cache[1] if cache and cache[0] is datasets else self.baseline_predictions(datasets)
        with torch.no_grad():
            pred = self._predict(model, datasets.val).double().numpy()
        ctx = datasets.context
        true = ctx["t"][datasets.val.idx].double().numpy()
        best = best_baseline(preds, true)
        mean, std = ctx["t_mean"].numpy(), ctx["t_std"].numpy()
        phys = lambda v: v * std + mean  # noqa: E731
        plot_pred_vs_true(
            path, phys(true), phys(pred), phys(preds[best]), best, ("gmst (K)", "habitable_frac"),
            f"{NAME}, held-out split",
        )  # fmt: skip


def pooled_inputs(ctx: dict[str, Any]) -> np.ndarray:
    """(N, C) float64: the area-weighted global mean of each input channel (over level, lat and
    lon; what the network's global average pooling sees of its input), the tabular baselines'
    inputs. That is the five planet scalars, the land fraction and the mean insolation; the
    coordinate channels are the same for every planet (and get dropped)."""
    w = ctx["area"].double()  # (Y,), sums to 1
    return (ctx["x"].double().mean((2, 4)) * w).sum(-1).numpy()


class Items:
    def __init__(self, ctx: dict[str, Any], idx: list[int]) -> None:
        self.ctx, self.idx = ctx, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = self.idx[i]
        return {"x": self.ctx["x"][j], "t": self.ctx["t"][j]}


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, ratio: int) -> None:
        super().__init__()
        hidden = max(1, ch // ratio)
        self.fc1, self.fc2 = nn.Linear(ch, hidden), nn.Linear(hidden, ch)

    def forward(self, x):  # (B, C, Z, Y, X)
        s = x.mean((2, 3, 4))  # (B, C)
        g = torch.sigmoid(self.fc2(torch.nn.functional.silu(self.fc1(s))))
        return x * g[:, :, None, None, None]


class SeparableBlock(nn.Module):
    def __init__(self, cin: int, cout: int, se_ratio: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv3d(cin, cin, 3, padding=1, groups=cin)
        self.pointwise = nn.Conv3d(cin, cout, 1)
        self.norm = nn.GroupNorm(min(4, cout), cout)
        self.se = SqueezeExcite(cout, se_ratio)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = nn.functional.silu(self.norm(self.pointwise(self.depthwise(x))))
        return self.se(h) + self.skip(x)


class DatacubeCNN(nn.Module):
    def __init__(self, cin, n_out, width, blocks, se_ratio, grad_checkpointing=False) -> None:
        super().__init__()
        self.stem = nn.Conv3d(cin, width, 1)
        chans = [width * 2**i for i in range(blocks + 1)]
        self.blocks = nn.ModuleList(
            SeparableBlock(chans[i], chans[i + 1], se_ratio) for i in range(blocks)
        )
        self.pool = nn.AvgPool3d((1, 2, 2), ceil_mode=True)
        self.head = nn.Linear(chans[-1], n_out)
        self.grad_checkpointing = grad_checkpointing

    def forward(self, x):  # (B, C, Z, Y, X) -> (B, n_out)
        h = self.stem(x)
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, use_reentrant=False)
            else:
                h = block(h)
            h = self.pool(h)
        return self.head(h.mean((2, 3, 4)))
