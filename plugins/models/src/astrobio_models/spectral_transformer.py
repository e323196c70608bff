"""`spectral-transformer`: atmospheric parameters from exoplanet transmission spectra.

Data: synthetic spectra from the small forward model below (default), or an `.npz` file with
arrays `wavelength` (W,), `spectra` (N, W) transit depths and `params` (N, 5) in PARAMS order.

Forward model (an isothermal, H2-dominated atmosphere in hydrostatic equilibrium; the analytic
transit-depth approximation of Lecavelier des Etangs et al. 2008 / de Wit & Seager 2013)::

    H = k T / (mu m_H g)                               scale height (mu = 2.3, g = 10 m s-2)
    sigma(lam) = sum_i x_i sigma_i(lam) + sigma_R(lam)  total cross-section per molecule
    z(lam) = H ln(sigma(lam) / sigma_0)                 altitude where the slant optical depth ~ 1
    z_cloud = H ln(P_ref / P_cloud)                     a grey cloud deck hides what lies below it
    depth(lam) = (R_p + max(z(lam), z_cloud))^2 / R_s^2  + Gaussian noise (30 ppm)

- sigma_i: the molecular bands of H2O (1.15, 1.4, 1.9, 2.7 um), CH4 (1.7, 2.3, 3.3 um) and CO2
  (2.0, 2.7, 4.3 um) as Gaussians in wavelength (width 0.06-0.12 um; peak strengths of order
  the real band strengths, 1e-26 to 1e-24 m2, over a 1e-29 continuum); sigma_R: H2 Rayleigh
  scattering, 8.5e-33 m2 (lam / 0.5 um)^-4. sigma_0 = 1e-30 m2 and P_ref = 1 bar set the zero.
- A hot Jupiter around a Sun-like star: R_p = 1 R_Jup, R_s = 1 R_Sun.
- 64 wavelength bins, log-spaced over 0.6-5.0 um.

Parameters (uniform priors): T 500-2000 K; log10 x_H2O, x_CH4, x_CO2 in [-8, -2];
log10 P_cloud / bar in [-5, 1].

Network: each wavelength bin is a token (its standardised depth and its log wavelength, both
projected to `dim`), `layers` pre-norm transformer blocks whose self-attention calls
`astrobio_cli.attention.attention` (so every backend is exercised by a real model), mean
pooling and a linear head to the 5 standardised parameters.
Baseline: the mean predictor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from astrobio_models._common import options, regression_metrics, split_indices

NAME = "spectral-transformer"
PARAMS = ("temperature", "log_h2o", "log_ch4", "log_co2", "log_p_cloud")
PRIORS = {
    "temperature": (500.0, 2000.0),
    "log_h2o": (-8.0, -2.0),
    "log_ch4": (-8.0, -2.0),
    "log_co2": (-8.0, -2.0),
    "log_p_cloud": (-5.0, 1.0),
}
K_B, M_H = 1.380649e-23, 1.6735575e-27
MU, GRAVITY, R_P, R_S = 2.3, 10.0, 7.1492e7, 6.957e8
SIGMA_0, SIGMA_CONT = 1e-30, 1e-29
NOISE_PPM = 30.0
# (centre um, width um, peak cross-section m2)
BANDS = {
    "h2o": [(1.15, 0.06, 2e-26), (1.4, 0.08, 1e-25), (1.9, 0.1, 2e-25), (2.7, 0.12, 1e-24)],
    "ch4": [(1.7, 0.07, 5e-26), (2.3, 0.08, 1e-25), (3.3, 0.1, 1e-24)],
    "co2": [(2.0, 0.06, 2e-26), (2.7, 0.08, 2e-25), (4.3, 0.1, 3e-24)],
}

DEFAULTS: dict[str, Any] = {
    "dim": 64,
    "heads": 4,
    "layers": 3,
    "dropout": 0.0,
    "samples": 6000,
    "bins": 64,
    "data_seed": 0,
    "val_fraction": 0.15,
    "split_seed": 0,
    "attention_backend": "auto",
    "grad_checkpointing": False,
}


def factory(config: dict[str, Any] | None = None) -> SpectralTransformerPlugin:
    return SpectralTransformerPlugin(options(NAME, DEFAULTS, config))


def wavelengths(bins: int) -> np.ndarray:
    return np.geomspace(0.6, 5.0, bins)


def cross_sections(lam: np.ndarray) -> dict[str, np.ndarray]:
    """(W,) cross-section per molecule, m2, for each absorber; plus H2 Rayleigh."""
    out = {}
    for mol, bands in BANDS.items():
        s = np.full_like(lam, SIGMA_CONT)
        for c, w, peak in bands:
            s = s + peak * np.exp(-0.5 * ((lam - c) / w) ** 2)
        out[mol] = s
    out["rayleigh"] = 8.5e-33 * (lam / 0.5) ** -4
    return out


def transit_depth(params: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """(N, W) transit depths (float64) for params (N, 5) in PARAMS order, noise-free."""
    xs = cross_sections(lam)
    t = params[:, 0:1]
    x = 10.0 ** params[:, 1:4]  # (N, 3) mixing ratios
    sigma = x[:, 0:1] * xs["h2o"] + x[:, 1:2] * xs["ch4"] + x[:, 2:3] * xs["co2"] + xs["rayleigh"]
    h = K_B * t / (MU * M_H * GRAVITY)  # (N, 1) m
    z = h * np.log(sigma / SIGMA_0)
    z_cloud = h * np.log(1.0 / 10.0 ** params[:, 4:5])
    return (R_P + np.maximum(z, z_cloud)) ** 2 / R_S**2


def simulate(n: int, bins: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = np.column_stack([rng.uniform(*PRIORS[p], size=n) for p in PARAMS])
    lam = wavelengths(bins)
    spectra = transit_depth(params, lam) + rng.normal(0.0, NOISE_PPM * 1e-6, size=(n, bins))
    return {"wavelength": lam, "spectra": spectra, "params": params}


class SpectralTransformerPlugin:
    name = NAME
    data_kind = "transmission-spectra"
    train_defaults = {"lr": 1e-3, "batch_size": 64, "steps": 600, "warmup": 30}
    smoke_config = {"dim": 16, "heads": 2, "layers": 1, "samples": 512, "bins": 32}
    primary_metric = ("rmse", "lower")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False):
        from astrobio_cli.errors import UserError
        from astrobio_cli.training.plugin import Datasets

        c = self.config
        if data is None:
            arrays = simulate(c["samples"], c["bins"], c["data_seed"])
            provenance = {
                "generator": "astrobio_models.spectral_transformer.simulate",
                "samples": c["samples"],
                "bins": c["bins"],
                "seed": c["data_seed"],
            }
        else:
            try:
                with np.load(data) as z:
                    arrays = {
                        k: np.asarray(z[k], dtype=np.float64)
                        for k in ("wavelength", "spectra", "params")
                    }
            except (KeyError, ValueError, OSError) as exc:
                raise UserError(
                    f"{data}: not a spectra file ({exc}); it needs arrays wavelength (W,), "
                    f"spectra (N, W) and params (N, 5) in the order {', '.join(PARAMS)}"
                ) from None
            provenance = {"path": str(data), "samples": len(arrays["spectra"])}
        n = len(arrays["spectra"])
        tr, va = split_indices(n, c["val_fraction"], c["split_seed"])
        s, p = arrays["spectra"], arrays["params"]
        # standardise each spectrum by its own mean and spread (the planet's size is not a
        # parameter; the shape of the spectrum carries the atmosphere)
        s_n = (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-12)
        p_mean, p_std = p[tr].mean(0), p[tr].std(0) + 1e-12
        log_lam = np.log(arrays["wavelength"])
        ctx = {
            "x": torch.tensor(s_n, dtype=torch.float32),
            "y": torch.tensor((p - p_mean) / p_std, dtype=torch.float32),
            "lam": torch.tensor(
                (log_lam - log_lam.mean()) / (log_lam.std() + 1e-12), dtype=torch.float32
            ),
            "p_mean": p_mean,
            "p_std": p_std,
        }
        provenance.update({"train": len(tr), "val": len(va), "params": PARAMS})
        return Datasets(
            train=Items(ctx, tr), val=Items(ctx, va), provenance=provenance, context=ctx
        )

    def build(self, datasets):
        c = self.config
        return SpectralTransformer(
            len(datasets.context["lam"]), c["dim"], c["heads"], c["layers"], len(PARAMS),
            c["dropout"], c["attention_backend"], c["grad_checkpointing"],
            datasets.context["lam"],
        )  # fmt: skip

    def loss(self, model, batch, datasets):
        return torch.mean((model(batch["x"]).float() - batch["y"]) ** 2)

    def _metrics(self, pred, items):
        ctx = items.ctx
        true = ctx["y"][items.idx]
        out = {"rmse": regression_metrics(pred.numpy(), true.numpy())["rmse"]}
        p = pred.double().numpy() * ctx["p_std"] + ctx["p_mean"]
        t = true.double().numpy() * ctx["p_std"] + ctx["p_mean"]
        for i, name in enumerate(PARAMS):
            out[f"rmse_{name}"] = regression_metrics(p[:, i], t[:, i])["rmse"]
        return out

    def evaluate(self, model, datasets):
        items = datasets.val
        device = next(model.parameters()).device
        pred = torch.cat(
            [
                model(items.ctx["x"][items.idx[s : s + 256]].to(device)).float().cpu()
                for s in range(0, len(items.idx), 256)
            ]
        )
        return self._metrics(pred, items)

    def baseline(self, datasets):
        mean = datasets.context["y"][datasets.train.idx].mean(0, keepdim=True)
        return {"mean": self._metrics(mean.expand(len(datasets.val), -1), datasets.val)}


class Items:
    def __init__(self, ctx: dict[str, Any], idx: list[int]) -> None:
        self.ctx, self.idx = ctx, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = self.idx[i]
        return {"x": self.ctx["x"][j], "y": self.ctx["y"][j]}


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, backend: str) -> None:
        super().__init__()
        self.heads, self.dropout, self.backend = heads, dropout, backend
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):  # (B, T, C)
        from astrobio_cli.attention import attention

        b, t, c = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(b, t, 3, self.heads, c // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        p = self.dropout if self.training else 0.0
        o = attention(q, k, v, dropout_p=p, backend=self.backend)  # (B, H, T, D)
        x = x + self.proj(o.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.norm2(x))


class SpectralTransformer(nn.Module):
    def __init__(self, bins, dim, heads, layers, n_out, dropout, backend, grad_checkpointing, lam):
        super().__init__()
        if dim % heads:
            raise ValueError(f"spectral-transformer: dim {dim} is not divisible by heads {heads}")
        self.register_buffer("lam", lam.clone().float(), persistent=True)
        self.value = nn.Linear(1, dim)
        self.where = nn.Sequential(nn.Linear(1, dim), nn.GELU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, backend) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_out)
        self.grad_checkpointing = grad_checkpointing

    def forward(self, x):  # x (B, W) standardised depths -> (B, n_out)
        h = self.value(x[..., None]) + self.where(self.lam[:, None])[None]  # (B, W, C)
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, use_reentrant=False)
            else:
                h = block(h)
        return self.head(self.norm(h).mean(1))
