"""`cube-unet`: a 3D U-Net surrogate for climate datacubes.

Data: a `synthetic-climate` ensemble (NetCDF or Zarr; default: the generated default ensemble)
or a store written from one by `astrobio preprocess --split train` (normalised, maybe regridded
and cut into tiles). The model never opens a file: `astrobio_cli.data.climate` reads either form,
splits it (a store: exactly the samples its stats came from are the train split) and normalises
every variable with the train split's stats (see `astrobio_models.cube_data`). Each item is one
planet (or one tile of one): forcing and boundary fields in, the climate fields out, on a
(plev, lat, lon) grid.

Inputs, stacked as channels of a (C=9, Z=plev, Y=lat, X=lon) cube, normalised per variable by the
data layer: stellar_flux, rotation_period, obliquity, greenhouse_factor, surface_albedo (scalars
broadcast over the grid), land_mask, rsdt (insolation, per latitude), log pressure of the level
and sin(latitude) (coordinates, so convolutions know where they are). Option `augment`
(`flip,roll,noise=0.05`) flips latitude, rolls longitude and adds noise per training item in
the native kernels (`astrobio_cli.data.climate.Augment`).

Targets: air temperature `ta` and specific humidity `hus` (2 channels over the same grid),
normalised per variable. Surface temperature is `ta` at the lowest level (1000 hPa = the surface
pressure of the generator), so it needs no channel of its own.

Network: encoder blocks (two 3x3x3 convolutions, GroupNorm, SiLU, residual) that halve lat and
lon at each of `depth` levels (plev is short: never pooled), a bottleneck with multi-head
self-attention over its Z*Y*X tokens through `astrobio_cli.attention.attention` (so any
attention backend serves it), and a mirrored decoder with skip connections. With
`grad_checkpointing`, every block's activations are recomputed in backward (about 30% more
compute, activation memory of one block instead of all).

Loss (all terms documented, weights are options):
    mse                       mean squared error of the standardised targets;
    humidity_weight * hneg    mean of relu(-q)^2 / q_scale^2: specific humidity is never negative;
    energy_weight * ebal      the generator's planets are in radiative equilibrium: the global
                              mean absorbed sunlight, mean_w(Q (1 - alpha(Ts))), equals the global
                              mean outgoing long-wave, mean_w((1 - f/2) sigma Ts^4) (area
                              weights w, alpha the generator's albedo with ice feedback). ebal is
                              the squared imbalance of the predicted Ts, in units of 340 W m-2.
                              It needs whole planets: on the tiles of a patched store it is
                              skipped (0), and the run card says so (`energy_balance`).

Baselines (`astrobio eval`; fitted on the training split, scored like the network):
    climatology       the training mean at every grid point;
    linear            per grid point, least squares on the five scalars and the land mask;
    ridge-quadratic   per grid point, ridge on the scalars, their squares and pairwise products
                      and the land mask (float64 normal equations, intercept not shrunk), one
                      alpha for the grid chosen by 5-fold cross-validation on the training split.

This module imports torch; the registration in `__init__.py` imports it only when called.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from astrobio_cli.data.climate import MODEL_TARGETS
from astrobio_cli.data.climate import SCALARS as SCALARS  # re-exported (serving)
from astrobio_models._common import options, regression_metrics
from astrobio_models.cube_data import (
    VARIABLES,
    CubeItems,
    RegressionAccumulator,
    UNetItem,
    context,
    open_cube,
)
from astrobio_models.cube_data import default_data_path as default_data_path  # re-exported

NAME = "cube-unet"
DATA_KINDS = ("climate-cube",)
TARGETS = MODEL_TARGETS  # the schema is stated once, in astrobio_cli.data.climate
SIGMA = 5.670374419e-8
ICE_T, ICE_W, ICE_ALBEDO, LAND_OFFSET = 263.15, 5.0, 0.6, 0.1

DEFAULTS: dict[str, Any] = {
    "width": 16,
    "depth": 1,
    "heads": 2,
    "attention": True,
    "attention_backend": "auto",
    "humidity_weight": 1.0,
    "energy_weight": 0.1,
    "val_fraction": 0.2,
    "split_seed": 0,
    "grad_checkpointing": False,
    "augment": "",  # e.g. "flip,roll,noise=0.05": per training item, native kernels
}


def factory(config: dict[str, Any] | None = None) -> CubeUNetPlugin:
    return CubeUNetPlugin(options(NAME, DEFAULTS, config))


class CubeUNetPlugin:
    name = NAME
    data_kind = "climate-cube"
    train_defaults = {"lr": 3e-3, "batch_size": 8, "steps": 400, "warmup": 20, "workers": 2}
    smoke_config = {"width": 4, "depth": 1, "heads": 1}
    primary_metric = ("rmse", "lower")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    # -- data ---------------------------------------------------------------------------------

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False, provenance=None):
        from astrobio_cli.training.plugin import Datasets

        cube = open_cube(data, self.config, provenance)
        train, val, provenance, ctx = cube_datasets(cube, self.config)
        provenance["energy_balance"] = (
            "skipped: the items are tiles, not whole planets" if cube.tiled else "on"
        )
        return Datasets(train=train, val=val, provenance=provenance, context=ctx, seed=seed)

    # -- model --------------------------------------------------------------------------------

    def build(self, datasets):
        ctx = datasets.context
        return CubeUNet(
            in_channels=ctx["in_channels"],  # from the cube's layout: no data read
            out_channels=ctx["out_channels"],
            grid=ctx["grid"],
            width=self.config["width"],
            depth=self.config["depth"],
            heads=self.config["heads"],
            use_attention=self.config["attention"],
            attention_backend=self.config["attention_backend"],
            grad_checkpointing=self.config["grad_checkpointing"],
        )

    def loss(self, model, batch, datasets):
        return loss_terms(model(batch["x"]), batch, datasets.context, self.config)["loss"]

    # -- evaluation ---------------------------------------------------------------------------

    def predict(self, model, items) -> Any:
        device = next(model.parameters()).device
        outs = [model(b["x"].to(device)).float().cpu() for b in items.batches(16)]
        return torch.cat(outs)

    def evaluate(self, model, datasets) -> dict[str, float]:
        return streamed_metrics(model, datasets.val)

    def baseline(self, datasets) -> dict[str, dict[str, float]]:
        ctx, tr, va = datasets.context, datasets.train.idx, datasets.val.idx
        clim, lin = baselines(ctx, tr, va)
        quad, _alpha = quadratic_baseline(ctx, tr, va)
        return {
            "climatology": cube_metrics(clim, datasets.val),
            "linear": cube_metrics(lin, datasets.val),
            "ridge-quadratic": cube_metrics(quad, datasets.val),
        }

    def serve_adapter(self, model, datasets):
        """`astrobio serve cube-unet`: planet parameters in, the predicted climate out."""
        from astrobio_models.cube_unet_serve import CubeUNetAdapter

        return CubeUNetAdapter(self, model, datasets)

    def held_out_predictions(self, model, datasets, limit: int | None = None):
        """Whole held-out planets (tiles stitched) with the request body that serves each."""
        from astrobio_models.cube_unet_serve import HeldOut

        return HeldOut(self, model, datasets).records(limit)

    def plot(self, model, datasets, path: Path) -> None:
        """Predicted vs true surface temperature of the first held-out planet."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        pred = unscale(self.predict(model, datasets.val), datasets.context)
        true = unscale(datasets.context["y"][datasets.val.idx], datasets.context)
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
        p, t = pred[0, 0, 0].detach().numpy(), true[0, 0, 0].numpy()
        lo, hi = float(min(p.min(), t.min())), float(max(p.max(), t.max()))
        for ax, img, title in ((axes[0], t, "true Ts (K)"), (axes[1], p, "predicted Ts (K)")):
            im = ax.imshow(img, origin="lower", vmin=lo, vmax=hi, cmap="inferno", aspect="auto")
            ax.set_title(title)
            fig.colorbar(im, ax=ax)
        im = axes[2].imshow(p - t, origin="lower", cmap="coolwarm", aspect="auto")
        axes[2].set_title("predicted - true (K)")
        fig.colorbar(im, ax=axes[2])
        fig.suptitle("cube-unet, first held-out sample, lowest level (lat x lon)")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def cube_datasets(cube, config, transform=None):
    """(train, val, provenance, context) of an opened cube, items through `transform`."""
    from astrobio_cli.data.climate import Augment

    tf = transform or UNetItem(cube.stats, cube.plev)
    aug = Augment.parse(config.get("augment") or None)
    ctx = context(cube, tf, reader=cube)
    train = CubeItems(cube.dataset("train", VARIABLES, augment=aug, transform=tf), ctx)
    val = CubeItems(cube.dataset("val", VARIABLES, transform=tf), ctx)
    provenance = cube.provenance()
    provenance["augment"] = aug.to_dict() if aug else None
    return train, val, provenance, ctx


def unscale(y, ctx):
    return y * ctx["y_std"] + ctx["y_mean"]


def energy_imbalance(ts, rsdt, land, albedo, greenhouse, area):
    """Global-mean absorbed minus emitted flux, W m-2, per sample. ts (B, Y, X) in K."""
    import torch

    ice_free = albedo[:, None, None] + LAND_OFFSET * land
    frozen = 0.5 * (1 - torch.tanh((ts - ICE_T) / ICE_W))
    alpha = ice_free + (ICE_ALBEDO - ice_free) * frozen
    absorbed = rsdt[:, :, None] * (1 - alpha)
    emitted = (1 - greenhouse[:, None, None] / 2) * SIGMA * ts**4
    w = area[None, :] / ts.shape[-1]  # (1, Y): weights of each cell, summing to 1
    return ((absorbed - emitted).sum(-1) * w).sum(-1)


def loss_terms(pred, batch, ctx, config) -> dict[str, Any]:
    import torch

    pred = pred.float()  # the physics in float32 even under bf16 autocast
    mse = torch.mean((pred - batch["y"]) ** 2)
    phys = unscale(pred, ctx)  # (B, 2, Z, Y, X) in K and kg/kg
    q_scale = ctx["y_std"][1].mean()
    hneg = torch.mean(torch.relu(-phys[:, 1]) ** 2) / q_scale**2
    if ctx.get("tiled"):  # tiles are not whole planets: no global energy balance to keep
        ebal = torch.zeros((), device=pred.device)
    else:
        ts = phys[:, 0, 0]  # (B, Y, X): ta at the surface level
        imb = energy_imbalance(
            ts, batch["rsdt"], batch["land"], batch["albedo"], batch["greenhouse"], ctx["area"]
        )
        ebal = torch.mean((imb / 340.0) ** 2)
    loss = mse + config["humidity_weight"] * hneg + config["energy_weight"] * ebal
    return {"loss": loss, "mse": mse, "hneg": hneg, "ebal": ebal}


def cube_metrics(pred, items) -> dict[str, float]:
    """RMSE over all standardised targets, plus ta in K and hus in g/kg."""
    ctx = items.ctx
    true = ctx["y"][items.idx]
    out = {"rmse": regression_metrics(pred.numpy(), true.numpy())["rmse"]}
    p, t = unscale(pred, ctx), unscale(true, ctx)
    out["rmse_ta_K"] = regression_metrics(p[:, 0].numpy(), t[:, 0].numpy())["rmse"]
    out["rmse_hus_gkg"] = regression_metrics(p[:, 1].numpy() * 1e3, t[:, 1].numpy() * 1e3)["rmse"]
    out["r2"] = regression_metrics(pred.numpy(), true.numpy())["r2"]
    return out


def streamed_metrics(model, items) -> dict[str, float]:
    """`cube_metrics` of the model on `items`, batch by batch (memory of one batch)."""
    device = next(model.parameters()).device
    acc = {k: RegressionAccumulator() for k in ("all", "ta", "hus")}
    for b in items.batches(16):
        pred, true = model(b["x"].to(device)).float().cpu(), b["y"]
        acc["all"].update(pred, true)
        p, t = unscale(pred, items.ctx), unscale(true, items.ctx)
        acc["ta"].update(p[:, 0], t[:, 0])
        acc["hus"].update(p[:, 1] * 1e3, t[:, 1] * 1e3)
    out = acc["all"].result()
    return {
        "rmse": out["rmse"],
        "rmse_ta_K": acc["ta"].result()["rmse"],
        "rmse_hus_gkg": acc["hus"].result()["rmse"],
        "r2": out["r2"],
    }


def baselines(ctx, train_idx, val_idx):
    """Climatology (train mean per grid point) and a linear regression per grid point on the
    five standardised scalars and the land mask at that point (float64 least squares)."""
    import torch

    y = ctx["y"].double()
    clim = y[train_idx].mean(0, keepdim=True).expand(len(val_idx), *y.shape[1:])

    _, c, z, ny, nx = y.shape

    def features(idx):
        s = ctx["scalars"][idx].double()  # (n, 5)
        land = ctx["land"][idx].double()  # (n, Y, X)
        ones = torch.ones_like(land)
        s_b = s[:, :, None, None].expand(-1, -1, ny, nx)
        return torch.cat([s_b, land[:, None], ones[:, None]], 1).permute(2, 3, 0, 1)  # (Y,X,n,F)

    a_tr = features(train_idx)
    b_tr = y[train_idx].permute(3, 4, 0, 1, 2).reshape(ny, nx, len(train_idx), c * z)
    # Normal equations per grid point with a tiny ridge (land can be constant at a point).
    ata = a_tr.transpose(-1, -2) @ a_tr + 1e-6 * torch.eye(a_tr.shape[-1], dtype=torch.float64)
    coef = torch.linalg.solve(ata, a_tr.transpose(-1, -2) @ b_tr)  # (Y, X, F, C*Z)
    lin = (features(val_idx) @ coef).reshape(ny, nx, len(val_idx), c, z).permute(2, 3, 4, 0, 1)
    return clim.float(), lin.float()


QUADRATIC_ALPHAS = tuple(10.0**k for k in range(-3, 4))
CV_FOLDS = 5


def quadratic_features(ctx, idx):
    """(Y, X, n, 22) float64 per-grid-point features: the five standardised scalars, their
    squares and pairwise products (15), the land mask at the point, and a constant (last)."""
    import torch

    s = ctx["scalars"][idx].double()  # (n, 5)
    i, j = torch.triu_indices(s.shape[1], s.shape[1])
    glob = torch.cat([s, s[:, i] * s[:, j]], 1)  # (n, 20)
    land = ctx["land"][idx].double().permute(1, 2, 0)[..., None]  # (Y, X, n, 1)
    ny, nx = land.shape[:2]
    # (Y, X, n, F)
    return torch.cat([glob.expand(ny, nx, -1, -1), land, torch.ones_like(land)], -1)


def _grid_ridge(ata, atb, alpha):
    """Per-grid-point ridge coefficients (Y, X, F, K) from the normal equations' a^T a
    (Y, X, F, F) and a^T b (Y, X, F, K); the constant feature (last) is not shrunk."""
    import torch

    pen = torch.full((ata.shape[-1],), float(alpha), dtype=torch.float64)
    pen[-1] = 0.0
    return torch.linalg.solve(ata + torch.diag(pen), atb)


def quadratic_baseline(ctx, train_idx, val_idx, alphas=QUADRATIC_ALPHAS):
    """A ridge regression per grid point on `quadratic_features` (all targets of the column of
    levels at once), float64 normal equations. One alpha for the whole grid, chosen from
    `alphas` by `CV_FOLDS`-fold cross-validation on the training split (contiguous folds of
    the training samples). Returns the (n_val, 2, Z, Y, X) float32 predictions and alpha."""
    import torch

    y = ctx["y"].double()
    _, c, z, ny, nx = y.shape
    train_idx = list(train_idx)
    a = quadratic_features(ctx, train_idx)
    b = y[train_idx].permute(3, 4, 0, 1, 2).reshape(ny, nx, len(train_idx), c * z)
    gram = lambda u, v: u.transpose(-1, -2) @ v  # noqa: E731
    ata, atb = gram(a, a), gram(a, b)
    folds = torch.arange(len(train_idx)) * CV_FOLDS // len(train_idx)
    errors = [0.0] * len(alphas)
    for k in range(CV_FOLDS):
        ah, bh = a[:, :, folds == k], b[:, :, folds == k]
        ata_k, atb_k = ata - gram(ah, ah), atb - gram(ah, bh)
        for i, alpha in enumerate(alphas):
            errors[i] += float(((ah @ _grid_ridge(ata_k, atb_k, alpha) - bh) ** 2).sum())
    alpha = alphas[min(range(len(alphas)), key=errors.__getitem__)]
    coef = _grid_ridge(ata, atb, alpha)
    pred = quadratic_features(ctx, list(val_idx)) @ coef  # (Y, X, n_val, C*Z)
    pred = pred.reshape(ny, nx, len(val_idx), c, z).permute(2, 3, 4, 0, 1)
    return pred.float(), alpha


def groups(ch: int) -> int:
    return math.gcd(ch, 8)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(cin, cout, 3, padding=1),
            nn.GroupNorm(groups(cout), cout),
            nn.SiLU(),
            nn.Conv3d(cout, cout, 3, padding=1),
            nn.GroupNorm(groups(cout), cout),
            nn.SiLU(),
        )
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.skip(x)


class BottleneckAttention(nn.Module):
    """Multi-head self-attention over the bottleneck's Z*Y*X tokens (pre-norm, residual)."""

    def __init__(self, ch: int, heads: int, backend: str) -> None:
        super().__init__()
        if ch % heads:
            raise ValueError(f"cube-unet: bottleneck width {ch} is not divisible by heads {heads}")
        self.heads, self.backend = heads, backend
        self.norm = nn.GroupNorm(groups(ch), ch)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj = nn.Linear(ch, ch)

    def forward(self, x):
        from astrobio_cli.attention import attention

        b, c, z, y, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)  # (B, T, C), T = Z*Y*X
        q, k, v = self.qkv(t).view(b, -1, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        o = attention(q, k, v, backend=self.backend)  # (B, H, T, D)
        o = self.proj(o.transpose(1, 2).reshape(b, -1, c))
        return x + o.transpose(1, 2).reshape(b, c, z, y, w)


class CubeUNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        grid: tuple[int, int, int],
        width: int,
        depth: int,
        heads: int,
        use_attention: bool,
        attention_backend: str,
        grad_checkpointing: bool,
    ) -> None:
        super().__init__()
        from astrobio_cli.errors import UsageError

        _, ny, nx = grid
        if ny % 2**depth or nx % 2**depth:
            raise UsageError(
                f"cube-unet: a depth of {depth} halves lat and lon {depth} times, so the grid "
                f"{ny}x{nx} must be divisible by {2**depth}; lower depth"
            )
        chans = [width * 2**i for i in range(depth + 1)]
        self.grad_checkpointing = grad_checkpointing
        self.inp = Block(in_channels, chans[0])
        self.down = nn.ModuleList(Block(chans[i], chans[i + 1]) for i in range(depth))
        self.pool = nn.MaxPool3d((1, 2, 2))
        self.attn = (
            BottleneckAttention(chans[-1], heads, attention_backend) if use_attention else None
        )
        self.upsample = nn.ModuleList(
            nn.ConvTranspose3d(chans[i + 1], chans[i], (1, 2, 2), stride=(1, 2, 2))
            for i in reversed(range(depth))
        )
        self.up = nn.ModuleList(Block(2 * chans[i], chans[i]) for i in reversed(range(depth)))
        self.out = nn.Conv3d(chans[0], out_channels, 1)

    def _run(self, block, *args):
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(self, x):  # x (B, C_in, Z, Y, X) -> (B, C_out, Z, Y, X)
        h = self._run(self.inp, x)
        skips = [h]
        for block in self.down:
            h = self._run(block, self.pool(h))
            skips.append(h)
        if self.attn is not None:
            h = self._run(self.attn, h)
        skips.pop()
        for upsample, block in zip(self.upsample, self.up, strict=True):
            h = self._run(block, torch.cat([upsample(h), skips.pop()], 1))
        return self.out(h)
