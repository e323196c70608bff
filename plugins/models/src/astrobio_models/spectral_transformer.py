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

Inputs (per spectrum): its shape, the depths standardised by the spectrum's own mean and spread;
with `amplitude` (default) also the depths standardised by the training split's overall mean
and spread, and two whole-spectrum numbers, the mean depth and the log spread
(`amplitude_features`). With the planet's radius, the star's and gravity fixed, as in the
generator, the spread of the features is proportional to the scale height, so to T, which the
shape alone hides (doubling T leaves the standardised spectrum almost unchanged). For spectra of
planets of different sizes, set `amplitude: false`: the shape alone.

Network: the spectrum is cut into patches of `patch` bins; a convolution over each patch and
its two neighbours (both input channels) plus an embedding of the patch's log wavelength makes
one token per patch, the whole-spectrum numbers are added to every token; `layers` pre-norm
transformer blocks whose self-attention calls `astrobio_cli.attention.attention` (so every
backend is exercised by a real model), mean pooling (or `pool: flatten`, every token's
features) and a linear head to the 5 standardised parameters. `context_parallel: N` (training
with `--procs N`) splits each spectrum's tokens over the N processes, attention by the `ring`
backend (docs/attention.md, "Context parallelism").

Baselines (`astrobio eval`; fitted on the training split, scored like the network): the mean;
ridge, quadratic ridge and boosted trees (`tabular_baselines`) on the network's own inputs,
one feature per bin and input channel plus the two whole-spectrum numbers.
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
    "dim": 32,
    "heads": 4,
    "layers": 3,
    "dropout": 0.0,
    "patch": 2,
    "pool": "mean",
    "amplitude": True,
    "samples": 6000,
    "bins": 64,
    "data_seed": 0,
    "val_fraction": 0.15,
    "split_seed": 0,
    "attention_backend": "auto",
    "grad_checkpointing": False,
    "context_parallel": 0,  # N >= 2: training splits each spectrum's tokens over N processes
    "mixer": "attention",  # or "ssm": the selective state-space mixer (astrobio_cli.attention.ssm)
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


def amplitude_features(spectra: np.ndarray, train_idx: list[int]) -> np.ndarray:
    """(N, 2): each spectrum's mean depth and the log of its spread over wavelength,
    standardised with the training split's statistics. With the planet's radius, the star's and
    gravity fixed (as in `simulate`), the spread of the features is proportional to the scale
    height, so to the temperature, which the per-spectrum standardisation removes."""
    g = np.column_stack([spectra.mean(1), np.log(spectra.std(1) + 1e-30)])
    return (g - g[train_idx].mean(0)) / (g[train_idx].std(0) + 1e-12)


def spectrum_norm(spectra: np.ndarray, train_idx: list[int]) -> dict[str, float]:
    """The training split's statistics the input features use (kept to featurise new spectra)."""
    s = spectra[train_idx]
    g = np.column_stack([s.mean(1), np.log(s.std(1) + 1e-30)])
    return {"mean": float(s.mean()), "std": float(s.std()),
            "g_mean": g.mean(0).tolist(), "g_std": g.std(0).tolist()}  # fmt: skip


def spectrum_features(spectra: np.ndarray, norm: dict[str, Any], amplitude: bool) -> np.ndarray:
    """(N, W [+ W + 2]) model inputs: each spectrum by its own mean and spread (its shape), and
    with `amplitude` also on the training split's common scale and its two whole-spectrum
    numbers (`amplitude_features`, standardised with the training split's statistics)."""
    s = spectra
    s_n = (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-12)
    if not amplitude:
        return s_n
    s_abs = (s - norm["mean"]) / (norm["std"] + 1e-30)
    g = np.column_stack([s.mean(1), np.log(s.std(1) + 1e-30)])
    g = (g - np.asarray(norm["g_mean"])) / (np.asarray(norm["g_std"]) + 1e-12)
    return np.hstack([s_n, s_abs, g])


class SpectralTransformerPlugin:
    name = NAME
    data_kind = "transmission-spectra"
    train_defaults = {"lr": 1e-3, "batch_size": 64, "steps": 2000, "warmup": 50}
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
        # each spectrum by its own mean and spread (its shape), and with `amplitude` also on
        # the training split's common scale and its two whole-spectrum numbers
        norm = spectrum_norm(s, tr)
        s_n = spectrum_features(s, norm, c["amplitude"])
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
            "norm": norm,
            "wavelength": arrays["wavelength"],
        }
        provenance.update({"train": len(tr), "val": len(va), "params": PARAMS})
        return Datasets(
            train=Items(ctx, tr),
            val=Items(ctx, va),
            provenance=provenance,
            context=ctx,
            seed=seed,
        )

    def build(self, datasets):
        c = self.config
        return SpectralTransformer(
            len(datasets.context["lam"]), c["dim"], c["heads"], c["layers"], len(PARAMS),
            c["dropout"], c["attention_backend"], c["grad_checkpointing"],
            datasets.context["lam"], c["patch"], c["pool"], 2 if c["amplitude"] else 1,
            2 if c["amplitude"] else 0, mixer=c["mixer"],
            context_parallel=c["context_parallel"],
        )  # fmt: skip

    def loss(self, model, batch, datasets):
        return torch.mean((model(batch["x"]).float() - batch["y"]) ** 2)

    def _metrics(self, pred, items):
        ctx = items.ctx
        true = ctx["y"][items.idx]
        overall = regression_metrics(pred.numpy(), true.numpy())
        out = {"rmse": overall["rmse"], "r2": overall["r2"]}
        p = pred.double().numpy() * ctx["p_std"] + ctx["p_mean"]
        t = true.double().numpy() * ctx["p_std"] + ctx["p_mean"]
        for i, name in enumerate(PARAMS):
            out[f"rmse_{name}"] = regression_metrics(p[:, i], t[:, i])["rmse"]
        return out

    def predict(self, model, items) -> torch.Tensor:
        device = next(model.parameters()).device
        return torch.cat(
            [
                model(items.ctx["x"][items.idx[s : s + 256]].to(device)).float().cpu()
                for s in range(0, len(items.idx), 256)
            ]
        )

    def predict_file(self, model, datasets, path: Path, *, draws: int = 200) -> dict[str, Any]:
        """Atmospheric parameters from one measured spectrum (`astrobio predict`): a Parquet
        table as `astrobio fetch mast-jwst-spectrum` writes (or wavelength, depth, depth_error),
        resampled onto the model's wavelength grid by inverse-variance binning
        (`astrobio_cli.data.spectra`), then `draws` realisations of the spectrum within its
        propagated errors through the model: each parameter's mean and standard deviation."""
        from astrobio_cli.data import spectra

        ctx = datasets.context
        spec = spectra.read_spectrum(path)
        value, error = spectra.resample(spec, ctx["wavelength"])
        rng = np.random.default_rng(0)
        noisy = value[None, :] + error[None, :] * rng.standard_normal((draws, len(value)))
        x = spectrum_features(np.vstack([value[None, :], noisy]), ctx["norm"],
                              self.config["amplitude"])  # fmt: skip
        device = next(model.parameters()).device
        with torch.no_grad():
            y = model(torch.tensor(x, dtype=torch.float32, device=device)).double().cpu().numpy()
        phys = y * ctx["p_std"] + ctx["p_mean"]
        out: dict[str, Any] = {
            "input": str(path),
            "quantity": spec.quantity,
            "unit": spec.unit,
            "samples_used": len(spec.value),
            "samples_dropped": spec.dropped,
            "grid_um": [float(ctx["wavelength"][0]), float(ctx["wavelength"][-1])],
            "bins": len(value),
            "draws": draws,
            "parameters": {
                name: {"value": float(phys[0, i]), "std_from_errors": float(phys[1:, i].std())}
                for i, name in enumerate(PARAMS)
            },
        }
        if spec.quantity == "flux":
            out["warning"] = (
                "the input is a stellar flux spectrum, not a transit depth: the model was "
                "trained on transit depths, so these parameters describe its shape only"
            )
        return out

    def evaluate(self, model, datasets):
        return self._metrics(self.predict(model, datasets.val), datasets.val)

    def baseline_predictions(self, datasets) -> dict[str, np.ndarray]:
        """Each baseline's (n_val, 5) standardised predictions, fitted on the training split:
        the mean, and ridge / quadratic ridge / boosted trees on the model's own inputs (the
        standardised spectrum, one feature per bin)."""
        from astrobio_models.tabular_baselines import split_predict

        ctx, tr, va = datasets.context, datasets.train.idx, datasets.val.idx
        x, y = ctx["x"].double().numpy(), ctx["y"].double().numpy()
        return split_predict(x, y, tr, va, datasets.seed)

    def baseline(self, datasets):
        preds = self.baseline_predictions(datasets)
        self._baseline_cache = (datasets, preds)  # plot() reuses them
        return {k: self._metrics(torch.from_numpy(v), datasets.val) for k, v in preds.items()}

    def plot(self, model, datasets, path: Path) -> None:
        """Predicted vs true value of each parameter on the held-out split: the model and the
        best baseline (lowest RMSE)."""
        from astrobio_models.tabular_baselines import best_baseline, plot_pred_vs_true

        cache = getattr(self, "_baseline_cache", None)
        preds = cache[1] if cache and cache[0] is datasets else self.baseline_predictions(datasets)
        with torch.no_grad():
            pred = self.predict(model, datasets.val).double().numpy()
        ctx = datasets.context
        true = ctx["y"][datasets.val.idx].double().numpy()
        best = best_baseline(preds, true)
        phys = lambda v: v * ctx["p_std"] + ctx["p_mean"]  # noqa: E731
        plot_pred_vs_true(
            path, phys(true), phys(pred), phys(preds[best]), best, PARAMS, f"{NAME}, held-out split"
        )


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

    def forward(self, x, mask=None, backend=None):  # (B, T, C); context parallel: the shard
        from astrobio_cli.attention import attention

        b, t, c = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(b, t, 3, self.heads, c // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        p = self.dropout if self.training else 0.0
        o = attention(q, k, v, mask=mask, dropout_p=p, backend=backend or self.backend)
        x = x + self.proj(o.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.norm2(x))


class SSMBlock(nn.Module):
    """`mixer: ssm`: Block with a selective SSM (astrobio_cli.attention.ssm) for attention;
    it scans the tokens in wavelength order (causal: token t sees tokens 0..t)."""

    def __init__(self, dim: int, dropout: float) -> None:
        from astrobio_cli.attention.ssm import SelectiveSSM

        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mixer = SelectiveSSM(dim)
        self.drop = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):  # (B, T, C)
        x = x + self.drop(self.mixer(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class SpectralTransformer(nn.Module):
    def __init__(
        self, bins, dim, heads, layers, n_out, dropout, backend, grad_checkpointing, lam,
        patch=1, pool="mean", channels=1, n_global=0, mixer="attention", context_parallel=0,
    ):  # fmt: skip
        super().__init__()
        if dim % heads:
            raise ValueError(f"spectral-transformer: dim {dim} is not divisible by heads {heads}")
        if patch < 1:
            raise ValueError(f"spectral-transformer: patch {patch} must be at least 1")
        if pool not in ("mean", "flatten"):
            raise ValueError(f"spectral-transformer: pool {pool!r} is not 'mean' or 'flatten'")
        if mixer not in ("attention", "ssm"):
            raise ValueError(f"spectral-transformer: mixer {mixer!r} is not 'attention' or 'ssm'")
        if context_parallel < 0 or (context_parallel > 1 and mixer != "attention"):
            raise ValueError(
                f"spectral-transformer: context_parallel {context_parallel} must be 0 (off) or "
                "the process count N >= 2, with mixer: attention"
            )
        self.context_parallel = int(context_parallel)
        tokens = -(-bins // patch)
        pad = tokens * patch - bins
        lam = lam.clone().float()
        lam_tok = nn.functional.pad(lam[None], (0, pad), mode="replicate").view(tokens, patch)
        lam_tok = lam_tok.mean(1)
        self.patch, self.pad, self.pool = patch, pad, pool
        self.register_buffer("lam", lam_tok, persistent=True)
        # each token: its patch of depths, and the patch's neighbours on either side (a kernel
        # of 3 patches, stride 1 patch), so features that straddle a patch edge are seen whole
        self.value = nn.Conv1d(channels, dim, 3 * patch, stride=patch, padding=patch)
        self.where = nn.Sequential(nn.Linear(1, dim), nn.GELU(), nn.Linear(dim, dim))
        # whole-spectrum inputs (amplitude_features), added to every token
        self.bins, self.channels = bins, channels
        self.glob = nn.Linear(n_global, dim) if n_global else None
        self.blocks = nn.ModuleList(
            SSMBlock(dim, dropout) if mixer == "ssm" else Block(dim, heads, dropout, backend)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        head_in = dim * tokens if pool == "flatten" else dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(head_in, n_out))
        self.grad_checkpointing = grad_checkpointing

    def forward(self, x):  # x (B, W + n_global) standardised depths, globals -> (B, n_out)
        cp = self._context_parallel()
        if cp is not None:  # every rank runs its 1/N of the tokens of all N ranks' spectra
            rank, world = cp
            mine = slice(rank * len(x), (rank + 1) * len(x))
            x = self._all_ranks(x, world)
        n = self.bins * self.channels
        x, g = x[:, :n].view(len(x), self.channels, self.bins), x[:, n:]
        x = nn.functional.pad(x, (0, self.pad), mode="replicate")  # (B, channels, T*P)
        h = self.value(x).transpose(1, 2) + self.where(self.lam[:, None])[None]  # (B, T, C)
        if self.glob is not None:
            h = h + self.glob(g)[:, None]
        kw: dict[str, Any] = {}
        if cp is not None:
            tokens = h.shape[1]
            h, kw = self._shard_tokens(h, rank, world)
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, use_reentrant=False, **kw)
            else:
                h = block(h, **kw)
        if cp is not None:  # every rank's tokens back, differentiably; then this rank's spectra
            from astrobio_cli.attention.core import gather_sequence

            h = gather_sequence(h, dim=1, layout="contiguous")[:, :tokens][mine]
        h = self.norm(h)
        return self.head(h.flatten(1) if self.pool == "flatten" else h.mean(1))

    # -- context parallelism (`context_parallel: N`, training with N processes) ---------------
    # Each rank gathers the N ranks' batches, embeds all N*b spectra, keeps 1/N of the tokens
    # (padded to a multiple of N; the padding is masked as keys) and runs the blocks with the
    # `ring` attention backend over the default process group; the token shards are gathered
    # back (all_gather with autograd: its backward sums every rank's gradient) and each rank
    # keeps its own spectra, so DDP's gradient average is the exact full-sequence gradient.
    # Evaluation and prediction (eval mode or no grad) run on one process, unsharded.

    def _context_parallel(self) -> tuple[int, int] | None:
        if self.context_parallel < 2 or not (self.training and torch.is_grad_enabled()):
            return None
        import torch.distributed as dist

        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if world != self.context_parallel:
            from astrobio_cli.errors import UsageError

            raise UsageError(
                f"spectral-transformer: context_parallel: {self.context_parallel} splits each "
                f"spectrum's tokens over {self.context_parallel} processes, but this run has "
                f"{world}; train with --procs {self.context_parallel} (--cpu on a CPU) or set "
                "context_parallel: 0"
            )
        return dist.get_rank(), world

    @staticmethod
    def _all_ranks(x: torch.Tensor, world: int) -> torch.Tensor:
        import torch.distributed as dist

        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())  # inputs: no gradient to pass back
        return torch.cat(parts)

    @staticmethod
    def _shard_tokens(h: torch.Tensor, rank: int, world: int):
        from astrobio_cli.attention.core import shard_sequence

        t = h.shape[1]
        padded = -(-t // world) * world
        keep = torch.arange(padded, device=h.device) < t
        h = nn.functional.pad(h, (0, 0, 0, padded - t))
        h = shard_sequence(h, rank, world, dim=1, layout="contiguous")
        mask = None
        if padded > t:  # key padding (1, 1, 1, T/N): pad tokens are never attended to
            mask = shard_sequence(keep[None], rank, world, dim=1, layout="contiguous")
            mask = mask[:, None, None, :]
        return h, {"mask": mask, "backend": "ring"}
