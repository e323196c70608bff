"""`cube-unet`: a 3D U-Net surrogate for climate datacubes.

Data: a `synthetic-climate` ensemble (NetCDF or Zarr; default: the generated default ensemble).
Each sample is one planet: forcing and boundary fields in, the climate fields out, all on a
(plev, lat, lon) grid.

Inputs, stacked as channels of a (C=9, Z=plev, Y=lat, X=lon) cube, standardised with the
training split's statistics: stellar_flux, log rotation_period, obliquity, greenhouse_factor,
surface_albedo (scalars broadcast over the grid), land_mask, rsdt (insolation, per latitude),
log pressure of the level and sin(latitude) (coordinates, so convolutions know where they are).

Targets: air temperature `ta` and specific humidity `hus` (2 channels over the same grid),
standardised per level. Surface temperature is `ta` at the lowest level (1000 hPa = the surface
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

from astrobio_models._common import options, regression_metrics, split_indices

NAME = "cube-unet"
DATA_KINDS = ("climate-cube",)
SCALARS = ("stellar_flux", "rotation_period", "obliquity", "greenhouse_factor", "surface_albedo")
TARGETS = ("ta", "hus")
REQUIRED_VARS = (*SCALARS, "land_mask", "rsdt", "ta", "hus", "lat", "plev")
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
}


def factory(config: dict[str, Any] | None = None) -> CubeUNetPlugin:
    return CubeUNetPlugin(options(NAME, DEFAULTS, config))


class CubeUNetPlugin:
    name = NAME
    data_kind = "climate-cube"
    train_defaults = {"lr": 3e-3, "batch_size": 8, "steps": 400, "warmup": 20}
    smoke_config = {"width": 4, "depth": 1, "heads": 1}
    primary_metric = ("rmse", "lower")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    # -- data ---------------------------------------------------------------------------------

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False):
        from astrobio_cli.training.plugin import Datasets

        path = data if data is not None else default_data_path()
        arrays, provenance = load_cube(path)
        n = arrays["ta"].shape[0]
        train_idx, val_idx = split_indices(
            n, self.config["val_fraction"], self.config["split_seed"]
        )
        tensors = to_tensors(arrays, train_idx)
        provenance.update({"samples": n, "train": len(train_idx), "val": len(val_idx)})
        return Datasets(
            train=CubeItems(tensors, train_idx),
            val=CubeItems(tensors, val_idx),
            provenance=provenance,
            context=tensors,
            seed=seed,
        )

    # -- model --------------------------------------------------------------------------------

    def build(self, datasets):
        ctx = datasets.context
        return CubeUNet(
            in_channels=ctx["x"].shape[1],
            out_channels=ctx["y"].shape[1],
            grid=tuple(ctx["x"].shape[2:]),
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
        import torch

        device = next(model.parameters()).device
        outs = []
        for s in range(0, len(items.idx), 16):
            x = items.ctx["x"][items.idx[s : s + 16]].to(device)
            outs.append(model(x).float().cpu())
        return torch.cat(outs)

    def evaluate(self, model, datasets) -> dict[str, float]:
        pred = self.predict(model, datasets.val)
        return cube_metrics(pred, datasets.val)

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


def default_data_path() -> Path:
    from astrobio_data_sources.synthetic_climate import ensure_default

    return ensure_default()


def load_cube(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the variables the model needs (float64 numpy) and a provenance record."""
    import numpy as np
    import xarray as xr

    from astrobio_cli.errors import UserError

    try:
        engine = "zarr" if Path(path).suffix == ".zarr" or Path(path).is_dir() else None
        ds = xr.open_dataset(path, engine=engine)
    except Exception as exc:
        raise UserError(f"cannot read climate cube {path}: {exc}") from None
    with ds:
        missing = [v for v in REQUIRED_VARS if v not in ds.variables]
        if missing:
            raise UserError(
                f"{path} is not a synthetic-climate ensemble: it lacks {', '.join(missing)}; "
                "cube-unet needs the variables of `astrobio fetch synthetic-climate`"
            )
        arrays = {v: np.asarray(ds[v].values, dtype=np.float64) for v in REQUIRED_VARS}
        provenance = {
            "path": str(path),
            "source": ds.attrs.get("source", ""),
            "seed": _plain(ds.attrs.get("seed")),
            "generator_version": _plain(ds.attrs.get("generator_version")),
        }
    return arrays, provenance


def to_tensors(a: dict[str, Any], train_idx: list[int]) -> dict[str, Any]:
    """Input and target cubes, standardised with the training split's statistics."""
    import numpy as np
    import torch

    n, nlev, nlat, nlon = a["ta"].shape
    scal = np.stack([a[s] for s in SCALARS], axis=1)  # (N, 5)
    scal[:, 1] = np.log(scal[:, 1])  # rotation period: log-uniform
    s_mean, s_std = scal[train_idx].mean(0), scal[train_idx].std(0) + 1e-12
    scal_n = (scal - s_mean) / s_std
    land = a["land_mask"]  # (N, lat, lon)
    rsdt = a["rsdt"]  # (N, lat)
    r_mean, r_std = rsdt[train_idx].mean(), rsdt[train_idx].std() + 1e-12
    logp = np.log(a["plev"] / a["plev"][0])  # (Z,) 0 at the surface
    sinlat = np.sin(np.deg2rad(a["lat"]))  # (Y,)
    shape = (n, nlev, nlat, nlon)
    chans = [np.broadcast_to(scal_n[:, i, None, None, None], shape) for i in range(5)]
    chans.append(np.broadcast_to(land[:, None] * 2 - 1, shape))
    chans.append(np.broadcast_to(((rsdt - r_mean) / r_std)[:, None, :, None], shape))
    chans.append(np.broadcast_to(logp[None, :, None, None] / max(1e-12, -logp[-1]), shape))
    chans.append(np.broadcast_to(sinlat[None, None, :, None], shape))
    x = np.stack(chans, axis=1)  # (N, 9, Z, Y, X)

    y_raw = np.stack([a["ta"], a["hus"]], axis=1)  # (N, 2, Z, Y, X)
    y_mean = y_raw[train_idx].mean(axis=(0, 3, 4), keepdims=True)[0]  # (2, Z, 1, 1)
    y_std = y_raw[train_idx].std(axis=(0, 3, 4), keepdims=True)[0] + 1e-12
    y = (y_raw - y_mean) / y_std

    lat_edges = np.deg2rad(np.linspace(-90, 90, nlat + 1))
    area = np.diff(np.sin(lat_edges))  # (Y,) cell area per unit longitude
    f32 = torch.float32
    return {
        "x": torch.tensor(x, dtype=f32),
        "y": torch.tensor(y, dtype=f32),
        "y_mean": torch.tensor(y_mean, dtype=f32),
        "y_std": torch.tensor(y_std, dtype=f32),
        "land": torch.tensor(land, dtype=f32),
        "rsdt": torch.tensor(rsdt, dtype=f32),
        "albedo": torch.tensor(a["surface_albedo"], dtype=f32),
        "greenhouse": torch.tensor(a["greenhouse_factor"], dtype=f32),
        "area": torch.tensor(area / area.sum(), dtype=f32),
        "scalars": torch.tensor(scal_n, dtype=f32),
    }


def _plain(v: Any) -> Any:
    """NetCDF attributes come back as NumPy scalars: make them JSON-ready."""
    return v.item() if hasattr(v, "item") else v


class CubeItems:
    """A map-style view of some samples: item i -> dict of that sample's tensors."""

    def __init__(self, ctx: dict[str, Any], idx: list[int]) -> None:
        self.ctx, self.idx = ctx, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = self.idx[i]
        c = self.ctx
        return {
            "x": c["x"][j],
            "y": c["y"][j],
            "land": c["land"][j],
            "rsdt": c["rsdt"][j],
            "albedo": c["albedo"][j],
            "greenhouse": c["greenhouse"][j],
        }


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
