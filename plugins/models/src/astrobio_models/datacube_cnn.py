"""`datacube-cnn`: scalar targets from climate cubes with a depthwise-separable 3D CNN + SE.

Data: a `synthetic-climate` ensemble or an `astrobio preprocess --split train` store of one, read
by the core data layer (as cube-unet; the same 9-channel input cube, built per item in the
reading process; option `augment` as cube-unet's). On the tiles of a patched store the targets
are the tile's area-weighted mean Ts and habitable fraction.
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

from astrobio_models._common import options, regression_metrics
from astrobio_models.cube_data import UNetItem, area_weights, open_cube
from astrobio_models.cube_unet import cube_datasets, unscale

NAME = "datacube-cnn"
TARGETS = ("gmst", "habitable_frac")
DEFAULTS: dict[str, Any] = {
    "width": 16,
    "blocks": 3,
    "se_ratio": 4,
    "val_fraction": 0.2,
    "split_seed": 0,
    "grad_checkpointing": False,
    "augment": "",  # e.g. "flip,roll,noise=0.05": per training item, native kernels
}


def factory(config: dict[str, Any] | None = None) -> DatacubeCNNPlugin:
    return DatacubeCNNPlugin(options(NAME, DEFAULTS, config))


def scalar_targets(ctx: dict[str, Any]) -> torch.Tensor:
    """(N, 2) float64: area-weighted mean Ts and habitable fraction from the surface-level ta
    of every item of the context (a tile: over the tile)."""
    ts = unscale(ctx["y"].double(), ctx)[:, 0, 0]  # (N, Y, X), K
    return _targets(ts, ctx["item_lat"])


def _targets(ts: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """ts (N, Y, X) K, lat (N, Y) degrees -> (N, 2) gmst, habitable fraction."""
    import numpy as np

    w = torch.from_numpy(np.stack([area_weights(row) for row in np.asarray(lat)]))
    w = w[:, :, None] / ts.shape[-1]  # (N, Y, 1): sums to 1 over each item's grid
    gmst = (ts * w).sum((1, 2))
    liquid = ((ts >= 273.15) & (ts <= 373.15)).double()
    return torch.stack([gmst, (liquid * w).sum((1, 2))], 1)


class CNNItem:
    """The cube item (`UNetItem`) -> {"x", "t"}: the standardised scalar targets, in the
    reading process."""

    def __init__(self, base: UNetItem, ta: tuple[float, float], t_mean, t_std) -> None:
        self.base, self.ta = base, ta
        self.t_mean, self.t_std = t_mean, t_std

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        out = self.base(item)
        ts = out["y"][0, 0].double() * self.ta[1] + self.ta[0]  # (Y, X) K, surface level
        t = _targets(ts[None], torch.as_tensor(item["lat"], dtype=torch.float64)[None])[0]
        return {"x": out["x"], "t": ((t - self.t_mean) / self.t_std).float()}


def target_scale(cube, ta: tuple[float, float], most: int = 1024):
    """Mean and std (ddof 1) of the raw targets over up to `most` evenly spaced train items."""
    import numpy as np

    train = cube.items("train")
    pick = train[np.unique(np.linspace(0, train.size - 1, min(most, train.size)).astype(int))]
    ts, lat = [], []
    for item in pick:
        it = cube.read(int(item), ("ta",))
        ts.append(torch.from_numpy(it["ta"][0]).double() * ta[1] + ta[0])
        lat.append(torch.from_numpy(it["lat"]))
    raw = _targets(torch.stack(ts), torch.stack(lat))
    std = raw.std(0) if raw.shape[0] > 1 else torch.ones(2, dtype=torch.float64)
    return raw.mean(0), std + 1e-12


class DatacubeCNNPlugin:
    name = NAME
    data_kind = "climate-cube"
    train_defaults = {"lr": 3e-3, "batch_size": 16, "steps": 300, "warmup": 20, "workers": 2}
    smoke_config = {"width": 4, "blocks": 1}
    primary_metric = ("rmse", "lower")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False, provenance=None):
        from astrobio_cli.training.plugin import Datasets

        cube = open_cube(data, self.config, provenance)
        st = cube.stats
        i = st.names.index("ta")
        ta = (float(st.mean[i]), float(st.std[i]))
        base = UNetItem(st, cube.plev)
        mean, std = target_scale(cube, ta)
        tf = CNNItem(base, ta, mean, std)
        train, val, provenance, ctx = cube_datasets(cube, self.config, transform=tf)
        ctx.update(t_mean=mean, t_std=std)
        ctx._transform = base  # the lazy whole-cube arrays are the cube's (x, y, ...)
        ctx._extra_keys = ("t",)
        ctx._extra = lambda c: {"t": ((scalar_targets(c) - mean) / std).float()}
        provenance.update(targets=TARGETS, target_mean=mean.tolist(), target_std=std.tolist())
        return Datasets(train=train, val=val, provenance=provenance, context=ctx, seed=seed)

    def build(self, datasets):
        c = self.config
        return DatacubeCNN(
            datasets.context["in_channels"], len(TARGETS), c["width"], c["blocks"], c["se_ratio"],
            c["grad_checkpointing"],
        )  # fmt: skip

    def loss(self, model, batch, datasets):
        return torch.mean((model(batch["x"]).float() - batch["t"]) ** 2)

    def _predict(self, model, items, with_true: bool = False):
        device = next(model.parameters()).device
        preds, trues = [], []
        for b in items.batches(32):
            preds.append(model(b["x"].to(device)).float().cpu())
            trues.append(b["t"])
        pred = torch.cat(preds)
        return (pred, torch.cat(trues)) if with_true else pred

    def _metrics(self, pred, items, true=None):
        ctx = items.ctx
        true = ctx["t"][items.idx] if true is None else true
        overall = regression_metrics(pred.numpy(), true.numpy())
        out = {"rmse": overall["rmse"], "r2": overall["r2"]}
        p = pred.double() * ctx["t_std"] + ctx["t_mean"]
        t = true.double() * ctx["t_std"] + ctx["t_mean"]
        out["rmse_gmst_K"] = regression_metrics(p[:, 0].numpy(), t[:, 0].numpy())["rmse"]
        out["rmse_habitable_frac"] = regression_metrics(p[:, 1].numpy(), t[:, 1].numpy())["rmse"]
        return out

    def evaluate(self, model, datasets):
        pred, true = self._predict(model, datasets.val, with_true=True)  # streamed
        return self._metrics(pred, datasets.val, true)

    def baseline_predictions(self, datasets) -> dict[str, np.ndarray]:
        """Each baseline's (n_val, 2) standardised predictions, fitted on the training split:
        the mean, and ridge / quadratic ridge / boosted trees on `pooled_inputs`."""
        from astrobio_models.tabular_baselines import split_predict

        ctx, tr, va = datasets.context, datasets.train.idx, datasets.val.idx
        x, t = pooled_inputs(ctx), ctx["t"].double().numpy()
        return split_predict(x, t, tr, va, datasets.seed)

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
