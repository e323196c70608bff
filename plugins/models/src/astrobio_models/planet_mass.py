"""`planet-mass`: a predictive distribution of planet mass from radius and context.

Data (kind `exoplanet-table`): any table `astrobio_cli.data.tables.read_exoplanet_table` reads
(a NASA Exoplanet Archive `ps`/`pscomppars` Parquet or CSV as `astrobio fetch nasa-exoplanet`
writes it, the exoplanet.eu CSV export, TEPCat), reduced by `measured_mass_radius` to the
planets with a measured mass and radius and their uncertainties (no mass from a mass-radius
relation, no M sin i alone). Default (no `--data`): the bundled extract
`data/planets_measured.csv` (TEPCat + exoplanet.eu, one row per planet; see data/README.md).

Split: by host system (`host_key` of `hostname`: siblings never straddle the split); the hosts
are shuffled with `split_seed` (default None: the run seed, so runs of several seeds are scored
on different held-out systems and their spread includes the split's) and taken until
`val_fraction` of the planets are held out.

Inputs (a planet is never dropped for missing context): log10 radius [R_earth], and where
present log10 orbital period [d], log10 equilibrium temperature [K] (from pl_eqt, else from the
insolation S as 278.3 K * S**0.25: zero albedo, full redistribution), log10 stellar mass
[M_sun], stellar Teff [K], [Fe/H] [dex]; each context input has a missing indicator and a
missing value is replaced by the train split's median. Inputs are standardised with train
statistics; hinge features max(0, log10 R - log10 k) at `radius_knots` k (R_earth) give the
network the breaks of the mass-radius relation directly. Target: log10 mass [M_earth] as measured (the predictive distribution is that of a
catalogue's measured mass: measurement scatter is part of what it predicts, so no deconvolution).

Model: an ensemble of `heads` mixture density networks (Bishop 1994) in one module (batched
weights): each an MLP (`depth` x `width`, SiLU) giving `components` Gaussians in log10 mass;
each head is trained on its own negative log-likelihood plus `mse_weight` times the squared error
of its mixture mean, (sum_k w_k mu_k - y)**2, in standardised target units (so the mean that
rmse_log10 scores is fitted for squared error, not only as a by-product of the density fit),
with Gaussian noise (`input_noise`, in standard deviations) on its inputs as regulariser; the
prediction is the equal-weight mixture of all heads' mixtures (a deep ensemble, Lakshminarayanan
et al. 2017). With `clamp` each raw input is clipped to its train-split range before
standardisation and the hinges, so the network extrapolates flat beyond the train planets (as
trees do) rather than along its last linear piece (the smallest radii were the worst case).
The sizes (10 heads of 3 x 12, 4 components, 2,000 steps) were chosen for held-out NLL and
calibration on a host-grouped validation split carved out of each run's TRAIN planets (6 seeds),
never on the held-out planets; smaller networks calibrate better than wide ones here.

`mse_weight` = 4 and `clamp` were chosen the same way, for rmse_log10 against boosted-trees:
for run seeds s = 0..15 the run's train planets were split again by host (`host_split`, seed
s + 1000, 25% inner validation), the network trained on the inner-train part with the loop's
settings and boosted_trees (unchanged) fitted on the same part; mean inner-validation
rmse_log10 over the 16 splits, network vs boosted-trees 0.4589: NLL only (the former model)
0.4590 (wins 8/16); mse_weight 4 0.4548 (12/16); mse_weight 4 + clamp 0.4525 (12/16; paired
difference -0.0063 +- 0.0044 s.e.; NLL 0.362 vs 0.641, CRPS 0.217 vs 0.237, cover68 0.671,
cover95 0.928). In 10-split screens mse_weight 0.5 / 1 / 2 / 8 gave 0.4634 / 0.4621 / 0.4596 /
0.4615 (boosted-trees 0.4637), and width 8, 16 or 24, depth 2, 20 heads, 3 components, input
noise 0, 0.05 or 0.2, 4,000 steps, lr 1e-3, weight decay 1e-2 or 3e-2, a radius x Teq product
input and a Teq imputed from period, stellar mass and Teff changed rmse_log10 by no more than
the split-to-split noise or made it worse. The margin over boosted-trees is small (about 1.4
standard errors): both miss the same planets (errors correlate at 0.94), mostly brown dwarfs
and low-mass stars of 8-12 R_earth whose radius says little about their mass.

Metrics (`evaluate`, and every baseline on the same held-out planets), in log10 M_earth:
rmse_log10 (of the predictive mean; rmse_log10_median of the median), nll (mean negative
log-likelihood density of the measured log10 mass), crps (continuous ranked probability score),
cover68 / cover95 (fraction of held-out masses inside the central 68% / 95% interval), and each
per regime by radius after the Kepler size classes of Borucki et al. (2011, ApJ 736, 19): rocky
R < 2 R_earth (Earth- and super-Earth-size), neptunian 2 <= R < 6, giant R >= 6 (Jupiter-size
and larger); n_<regime> counts them.

Baselines (`baseline`, fitted on the train split only):
- forecaster: Chen & Kipping (2017, ApJ 834, 17) as published: the four-class broken power law
  R(M) of their Table 1 (FORECASTER below; checked against the posterior medians in
  forecaster-plus 1.1.0's fitting_parameters.h5), inverted as their Rstat2M does: a flat prior in
  log10 M on [-3.522, 5.477], the posterior on a grid, with the planet's radius uncertainty
  convolved into the intrinsic scatter.
- power-law-refit: a continuous three-segment broken power law fitted directly as M(R) (log10 M
  piecewise linear in log10 R, two free breakpoints, Gaussian scatter in log10 M per segment) by
  maximum likelihood on the train split; the same functional family as Otegi et al. (2020, A&A
  634, A43) and Mueller et al. (2024, A&A 686, A296), fitted in the predictive direction.
- boosted-trees: sklearn HistGradientBoostingRegressor on the same inputs (NaN handled natively,
  random_state = the run seed; learning rate 0.03, 150 iterations, 10 leaves, 20 per leaf: the
  best of a 140-setting search on the same train-only validation splits) with a Gaussian
  predictive whose sigma per regime is the RMS of 5-fold host-grouped out-of-fold residuals
  on the train split.

Forecaster's numbers: Table 1 of the paper (C = 0.00346; slopes 0.2790, 0.589, -0.044, 0.881;
scatter 0.0403, 0.146, 0.0736, 0.0440 dex; transitions 2.04 M_earth, 0.414 M_jup, 0.0800 M_sun).
The medians of the hyper-posterior that forecaster-plus ships (1,020,431 draws) are 0.00348;
0.2790, 0.5863, -0.0434, 0.8803; 0.0395, 0.1457, 0.0737, 0.0439; 10**0.3140 = 2.06 M_earth,
10**2.1230 = 132.8 M_earth, 10**4.4257 = 26,650 M_earth: the same within the rounding of the
table. Forecaster itself draws a hyper-parameter sample per prediction; the point values are
used here (the hyper-parameter spread is small beside the intrinsic scatter).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from astrobio_cli.data.lineage import file_sha256
from astrobio_models._common import options

NAME = "planet-mass"
DATA_DIR = Path(__file__).parent / "data"
DEFAULT_TABLE = DATA_DIR / "planets_measured.csv"
FEATURES = (
    "log10_rade",
    "log10_orbper",
    "log10_eqt",
    "log10_st_mass",
    "st_teff",
    "st_met",
)
CONTEXT = FEATURES[1:]
REGIMES = (("rocky", 0.0, 2.0), ("neptunian", 2.0, 6.0), ("giant", 6.0, math.inf))
TEQ_EARTH_ZERO_ALBEDO = 278.3  # K: 5772 K * sqrt(R_sun / 2 au)
LOG_M_GRID = (-3.522, 5.477)  # Forecaster's mass range, log10 M_earth
GRID_POINTS = 2000

# Chen & Kipping (2017) Table 1: log10 R = C_j + S_j log10 M in class j (M, R in Earth units),
# continuous at the transitions; Gaussian intrinsic scatter sigma_j in log10 R.
FORECASTER = {
    "C0": 0.00346,
    "slopes": (0.2790, 0.589, -0.044, 0.881),  # Terran, Neptunian, Jovian, stellar
    "sigmas": (0.0403, 0.146, 0.0736, 0.0440),
    # transitions: 2.04 M_earth, 0.414 M_jup, 0.0800 M_sun (317.83 and 332,946 M_earth each)
    "transitions": (2.04, 0.414 * 317.83, 0.0800 * 332946.0),
}

DEFAULTS: dict[str, Any] = {
    "heads": 10,
    "components": 4,
    "width": 12,
    "depth": 3,
    "min_sigma": 0.01,
    "input_noise": 0.1,
    "radius_knots": (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 13.0),
    "val_fraction": 0.25,
    "split_seed": None,
    "grad_checkpointing": False,
    "mse_weight": 4.0,
    "clamp": True,
}


def factory(config: dict[str, Any] | None = None) -> PlanetMassPlugin:
    return PlanetMassPlugin(options(NAME, DEFAULTS, config))


# -- data --------------------------------------------------------------------------------------


def raw_features(df) -> np.ndarray:
    """(N, len(FEATURES)) float64 with NaN where a planet lacks the value."""

    def col(name):
        return df[name].to_numpy(dtype=np.float64, na_value=np.nan)

    def log10(v):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(v > 0, np.log10(v), np.nan)

    teq = col("pl_eqt")
    from_insol = TEQ_EARTH_ZERO_ALBEDO * np.power(
        np.where(col("pl_insol") > 0, col("pl_insol"), np.nan), 0.25
    )
    teq = np.where(np.isfinite(teq) & (teq > 0), teq, from_insol)
    out = np.stack(
        [
            log10(col("pl_rade")),
            log10(col("pl_orbper")),
            log10(teq),
            log10(col("st_mass")),
            np.where(col("st_teff") > 0, col("st_teff"), np.nan),
            col("st_met"),
        ],
        axis=1,
    )
    out[~np.isfinite(out)] = np.nan
    return out


def design(raw: np.ndarray, stats: dict[str, np.ndarray], train: list[int]) -> np.ndarray:
    """The network's inputs: the standardised features (train medians for missing values), the
    missing indicators of the context features, and hinge features max(0, log10 R - log10 knot)
    at `stats["knots"]` (standardised over the `train` rows) that make the broken power laws of
    the mass-radius relation easy to represent."""
    missing = np.isnan(raw)
    filled = np.where(missing, stats["median"][None, :], raw)
    if "lo" in stats:  # no extrapolation beyond the train range (as trees do)
        filled = np.clip(filled, stats["lo"][None, :], stats["hi"][None, :])
    z = (filled - stats["mean"][None, :]) / stats["std"][None, :]
    hinge = np.maximum(filled[:, :1] - stats["knots"][None, :], 0.0)
    hinge = (hinge - hinge[train].mean(axis=0)) / (hinge[train].std(axis=0) + 1e-9)
    return np.concatenate([z, missing[:, 1:].astype(np.float64), hinge], axis=1)


def feature_stats(raw: np.ndarray) -> dict[str, np.ndarray]:
    median = np.nanmedian(raw, axis=0)
    median = np.where(np.isfinite(median), median, 0.0)
    filled = np.where(np.isnan(raw), median[None, :], raw)
    std = filled.std(axis=0)
    return {"median": median, "mean": filled.mean(axis=0), "std": np.where(std > 0, std, 1.0)}


def regime_of(radius: np.ndarray) -> np.ndarray:
    """0 rocky, 1 neptunian, 2 giant (REGIMES' radius bounds)."""
    return np.digitize(radius, [REGIMES[1][1], REGIMES[2][1]])


def host_split(hosts: list[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Rows split by host: hosts in a seeded random order are held out until `val_fraction` of
    the rows are. Deterministic; no host is on both sides."""
    from astrobio_cli.data.tables import host_key

    keys = [host_key(h) for h in hosts]
    uniq = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(uniq))
    count: dict[str, int] = {}
    for k in keys:
        count[k] = count.get(k, 0) + 1
    target = max(1, round(len(keys) * val_fraction))
    held: set[str] = set()
    n = 0
    for i in order:
        if n >= target:
            break
        held.add(uniq[i])
        n += count[uniq[i]]
    val = [i for i, k in enumerate(keys) if k in held]
    train = [i for i, k in enumerate(keys) if k not in held]
    return train, val


def data_provenance(path: Path, table, bundled: bool) -> dict[str, Any]:
    """Where the planets came from: the file, its sha256, the selection and, when the file was
    written by `astrobio fetch` (a `.provenance.json` sidecar beside it), the fetch's query,
    URL and output sha256."""
    prov: dict[str, Any] = {
        "source": str(path),
        "bundled": bundled,
        "sha256": file_sha256(path),
        "catalogue": table.attrs.get("catalogue"),
        "selection": table.attrs.get("selection"),
    }
    sidecar = path.with_name(path.name + ".provenance.json")
    if sidecar.is_file():
        try:
            rec = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rec = None
        if isinstance(rec, dict):
            out = rec.get("output") or {}
            prov["fetch"] = {
                "sidecar": str(sidecar),
                "source": rec.get("source"),
                "query": rec.get("query"),
                "url": rec.get("url"),
                "retrieved_at": rec.get("retrieved_at"),
                "body_sha256": rec.get("sha256"),
                "output_sha256": out.get("sha256"),
                "matches_file": out.get("sha256") == prov["sha256"],
            }
    return prov


class Items:
    def __init__(self, ctx: dict[str, Any], idx: list[int]) -> None:
        self.ctx, self.idx = ctx, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = self.idx[i]
        return {"x": self.ctx["x"][j], "y": self.ctx["y"][j]}


# -- predictive distributions and scores -------------------------------------------------------


def _phi(z):
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _Phi(z):
    from scipy.special import ndtr

    return ndtr(z)


class Mixture:
    """Gaussian mixtures, one per row: weights, means, sds (N, C) float64 (log10 M_earth)."""

    def __init__(self, w, mu, sd) -> None:
        self.w = np.asarray(w, dtype=np.float64)
        self.mu = np.asarray(mu, dtype=np.float64)
        self.sd = np.asarray(sd, dtype=np.float64)
        self.w = self.w / self.w.sum(axis=1, keepdims=True)

    def cdf(self, y):
        y = np.asarray(y, dtype=np.float64)
        return (self.w * _Phi((y[:, None] - self.mu) / self.sd)).sum(axis=1)

    def logpdf(self, y):
        from scipy.special import logsumexp

        y = np.asarray(y, dtype=np.float64)
        z = (y[:, None] - self.mu) / self.sd
        logp = -0.5 * z * z - np.log(self.sd) - 0.5 * math.log(2 * math.pi)
        with np.errstate(divide="ignore"):
            return logsumexp(logp + np.log(self.w), axis=1)

    def mean(self):
        return (self.w * self.mu).sum(axis=1)

    def crps(self, y):
        """Closed form (Grimit et al. 2006): sum_i w_i A(y - mu_i, s_i^2)
        - 1/2 sum_ij w_i w_j A(mu_i - mu_j, s_i^2 + s_j^2), A(m, v) = E|X|, X ~ N(m, v)."""
        y = np.asarray(y, dtype=np.float64)

        def a(m, s):
            return 2 * s * _phi(m / s) + m * (2 * _Phi(m / s) - 1)

        first = (self.w * a(y[:, None] - self.mu, self.sd)).sum(axis=1)
        dm = self.mu[:, :, None] - self.mu[:, None, :]
        ds = np.sqrt(self.sd[:, :, None] ** 2 + self.sd[:, None, :] ** 2)
        ww = self.w[:, :, None] * self.w[:, None, :]
        return first - 0.5 * (ww * a(dm, ds)).sum(axis=(1, 2))

    def quantile(self, p: float, iters: int = 64):
        lo = (self.mu - 10 * self.sd).min(axis=1)
        hi = (self.mu + 10 * self.sd).max(axis=1)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < p
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)


class GridDist:
    """Distributions on a uniform grid, one per row: cell centres x (G,), masses p (N, G);
    the density is constant within each cell (width dx), so the CDF is piecewise linear."""

    def __init__(self, x, p) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        p = np.asarray(p, dtype=np.float64)
        self.p = p / p.sum(axis=1, keepdims=True)
        self.dx = float(self.x[1] - self.x[0])
        self.e0 = float(self.x[0] - 0.5 * self.dx)
        edges = np.zeros((self.p.shape[0], self.p.shape[1] + 1))
        edges[:, 1:] = np.cumsum(self.p, axis=1)
        edges[:, -1] = 1.0
        self.F = edges  # CDF at the cell edges

    def _cell(self, y):
        t = (np.asarray(y, dtype=np.float64) - self.e0) / self.dx
        c = np.clip(np.floor(t).astype(np.int64), 0, self.p.shape[1] - 1)
        return c, np.clip(t - c, 0.0, 1.0), t

    def cdf(self, y):
        c, frac, _ = self._cell(y)
        rows = np.arange(len(c))
        return self.F[rows, c] + frac * self.p[rows, c]

    def logpdf(self, y):
        c, _, t = self._cell(y)
        inside = (t >= 0) & (t <= self.p.shape[1])
        dens = self.p[np.arange(len(c)), c] / self.dx
        with np.errstate(divide="ignore"):
            return np.where(inside, np.log(dens), -np.inf)

    def mean(self):
        return self.p @ self.x

    def crps(self, y):
        """Exact for the piecewise-linear CDF: int_{-inf}^y F^2 + int_y^inf (1 - F)^2."""
        y = np.asarray(y, dtype=np.float64)
        F, dx = self.F, self.dx
        lo, hi = F[:, :-1], F[:, 1:]
        below = dx * (lo * lo + lo * hi + hi * hi) / 3  # int F^2 over each cell
        a, b = 1 - lo, 1 - hi
        above = dx * (a * a + a * b + b * b) / 3  # int (1 - F)^2 over each cell
        c, frac, t = self._cell(y)
        rows = np.arange(len(c))
        k = np.arange(F.shape[1] - 1)[None, :]
        total = (below * (k < c[:, None])).sum(axis=1) + (above * (k > c[:, None])).sum(axis=1)
        fl, fh = F[rows, c], F[rows, c + 1]
        fy = fl + frac * (fh - fl)
        total += frac * dx * (fl * fl + fl * fy + fy * fy) / 3
        total += (1 - frac) * dx * ((1 - fy) ** 2 + (1 - fy) * (1 - fh) + (1 - fh) ** 2) / 3
        ncell = F.shape[1] - 1
        total += np.where(t < 0, -t * dx, 0.0) + np.where(t > ncell, (t - ncell) * dx, 0.0)
        return total

    def quantile(self, q: float):
        rows = np.arange(self.p.shape[0])
        c = np.clip((q > self.F).sum(axis=1) - 1, 0, self.p.shape[1] - 1)
        pc = np.maximum(self.p[rows, c], 1e-300)
        frac = np.clip((q - self.F[rows, c]) / pc, 0.0, 1.0)
        return self.e0 + (c + frac) * self.dx


def score(pred, y: np.ndarray, radius: np.ndarray) -> dict[str, float]:
    """The metrics of the module docstring for predictive distributions `pred` of log10 mass."""
    y = np.asarray(y, dtype=np.float64)
    mean, median = pred.mean(), pred.quantile(0.5)
    pit = pred.cdf(y)
    per = {
        "sq_mean": (mean - y) ** 2,
        "sq_median": (median - y) ** 2,
        "nll": -pred.logpdf(y),
        "crps": pred.crps(y),
        "in68": (np.abs(pit - 0.5) <= 0.34).astype(np.float64),
        "in95": (np.abs(pit - 0.5) <= 0.475).astype(np.float64),
    }
    regime = regime_of(radius)

    def block(mask, suffix):
        if not mask.any():
            return {}
        return {
            f"rmse_log10{suffix}": float(np.sqrt(per["sq_mean"][mask].mean())),
            f"rmse_log10_median{suffix}": float(np.sqrt(per["sq_median"][mask].mean())),
            f"nll{suffix}": float(per["nll"][mask].mean()),
            f"crps{suffix}": float(per["crps"][mask].mean()),
            f"cover68{suffix}": float(per["in68"][mask].mean()),
            f"cover95{suffix}": float(per["in95"][mask].mean()),
        }

    out = block(np.ones(len(y), dtype=bool), "")
    for r, (name, _lo, _hi) in enumerate(REGIMES):
        out.update(block(regime == r, f"_{name}"))
        out[f"n_{name}"] = float((regime == r).sum())
    return out


# -- baselines ---------------------------------------------------------------------------------


def forecaster_log_radius(logm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chen & Kipping (2017) Table 1: mean and intrinsic sd of log10 R at log10 M (Earth units)."""
    slopes = np.array(FORECASTER["slopes"])
    sig = np.array(FORECASTER["sigmas"])
    t = np.log10(np.array(FORECASTER["transitions"]))
    c = np.zeros(4)
    c[0] = FORECASTER["C0"]
    for j in range(1, 4):  # continuity at each transition
        c[j] = c[j - 1] + t[j - 1] * (slopes[j - 1] - slopes[j])
    k = np.searchsorted(t, logm, side="right")
    return c[k] + slopes[k] * logm, sig[k]


def forecaster_predict(logr: np.ndarray, logr_err: np.ndarray) -> GridDist:
    """Forecaster's R -> M inversion on its grid (flat prior in log10 M)."""
    grid = np.linspace(*LOG_M_GRID, GRID_POINTS)
    mu, sig = forecaster_log_radius(grid)
    s = np.sqrt(sig[None, :] ** 2 + np.asarray(logr_err)[:, None] ** 2)
    z = (np.asarray(logr)[:, None] - mu[None, :]) / s
    logp = -0.5 * z * z - np.log(s)
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    return GridDist(grid, p)


def broken_line(x, params):
    """Continuous piecewise-linear: params (c, s1, s2, s3, b1, b2); y = c + s1 x below b1..."""
    c, s1, s2, s3, b1, b2 = params
    y = c + s1 * x
    y = y + (s2 - s1) * np.maximum(x - b1, 0.0)
    return y + (s3 - s2) * np.maximum(x - b2, 0.0)


def fit_broken_power_law(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Maximum-likelihood fit of log10 M = broken_line(log10 R) with Gaussian scatter per
    segment: a grid over the two breakpoints (profiling the rest by iteratively reweighted least
    squares), then all 9 parameters polished with Nelder-Mead."""
    from scipy.optimize import minimize

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def segments(b1, b2):
        return np.digitize(x, [b1, b2])

    def nll(theta):
        b1, b2 = theta[4:6]
        if b2 <= b1:
            return 1e12
        seg = segments(b1, b2)
        sd = np.exp(theta[6:9])[seg]
        r = y - broken_line(x, theta[:6])
        return float(np.sum(0.5 * (r / sd) ** 2 + np.log(sd)))

    best = None
    qs = np.quantile(x, np.linspace(0.05, 0.95, 19))
    for i, b1 in enumerate(qs):
        for b2 in qs[i + 1 :]:
            seg = segments(b1, b2)
            if min(np.sum(seg == k) for k in range(3)) < 10:
                continue
            basis = np.stack(
                [np.ones_like(x), x, np.maximum(x - b1, 0), np.maximum(x - b2, 0)], axis=1
            )
            w = np.ones_like(x)
            for _ in range(3):
                coef, *_ = np.linalg.lstsq(basis * w[:, None], y * w, rcond=None)
                r = y - basis @ coef
                sd = np.array([np.sqrt(np.mean(r[seg == k] ** 2)) + 1e-6 for k in range(3)])
                w = 1 / sd[seg]
            s1 = coef[1]
            theta = np.array(
                [coef[0], s1, s1 + coef[2], s1 + coef[2] + coef[3], b1, b2, *np.log(sd)]
            )
            val = nll(theta)
            if best is None or val < best[0]:
                best = (val, theta)
    assert best is not None
    res = minimize(
        nll, best[1], method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-8}
    )
    theta = res.x if res.fun <= best[0] else best[1]
    return {"params": theta[:6], "sd": np.exp(theta[6:9]), "nll": float(min(res.fun, best[0]))}


def power_law_predict(fit: dict[str, Any], logr: np.ndarray) -> Mixture:
    b1, b2 = fit["params"][4:6]
    seg = np.digitize(logr, [b1, b2])
    mu = broken_line(logr, fit["params"])
    return Mixture(np.ones((len(logr), 1)), mu[:, None], fit["sd"][seg][:, None])


def boosted_trees(raw_tr, y_tr, hosts_tr, raw_va, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """HistGradientBoostingRegressor on the raw inputs (NaN native); Gaussian sigma per regime
    from 5-fold host-grouped out-of-fold residuals on the train split. Returns (mean, sd)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import GroupKFold

    def model():
        return HistGradientBoostingRegressor(
            learning_rate=0.03,
            max_iter=150,
            max_leaf_nodes=10,
            min_samples_leaf=20,
            l2_regularization=0.0,
            random_state=seed,
        )

    oof = np.zeros_like(y_tr)
    for fit_idx, out_idx in GroupKFold(n_splits=5).split(raw_tr, y_tr, hosts_tr):
        oof[out_idx] = model().fit(raw_tr[fit_idx], y_tr[fit_idx]).predict(raw_tr[out_idx])
    reg_tr = regime_of(10 ** raw_tr[:, 0])
    resid = y_tr - oof
    overall = float(np.sqrt(np.mean(resid**2)))
    sd_reg = np.array(
        [
            float(np.sqrt(np.mean(resid[reg_tr == r] ** 2)))
            if np.sum(reg_tr == r) >= 10
            else overall
            for r in range(len(REGIMES))
        ]
    )
    mean = model().fit(raw_tr, y_tr).predict(raw_va)
    return mean, sd_reg[regime_of(10 ** raw_va[:, 0])]


# -- the network -------------------------------------------------------------------------------


class EnsembleMDN(nn.Module):
    """`heads` independent MLPs with batched weights, each giving a `components`-Gaussian
    mixture over the standardised target."""

    def __init__(self, n_in, heads, width, depth, components, min_sigma) -> None:
        super().__init__()
        sizes = [n_in] + [width] * depth + [3 * components]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(sizes):
            bound = 1 / math.sqrt(a)
            self.weights.append(nn.Parameter(torch.empty(heads, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(heads, 1, b).uniform_(-bound, bound)))
        with torch.no_grad():  # spread the initial component means over the target range
            self.biases[-1][:, 0, components : 2 * components] = torch.linspace(
                -1.5, 1.5, components
            )
        self.k, self.min_sigma = components, min_sigma

    def forward(self, x):  # x (B, F) -> logits, mu, sigma each (H, B, K)
        h = x.unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = nn.functional.silu(h)
        k = self.k
        logits, mu, raw = h[..., :k], h[..., k : 2 * k], h[..., 2 * k :]
        return logits, mu, nn.functional.softplus(raw) + self.min_sigma


def head_nll(out, y):
    """(H, B) negative log-likelihood of standardised targets y (B,) under each head."""
    logits, mu, sd = out
    z = (y[None, :, None] - mu) / sd
    logp = -0.5 * z * z - torch.log(sd) - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(torch.log_softmax(logits, dim=-1) + logp, dim=-1)


# -- the plugin --------------------------------------------------------------------------------


class PlanetMassPlugin:
    name = NAME
    data_kind = "exoplanet-table"
    train_defaults = {
        "lr": 3e-3,
        "batch_size": 128,
        "steps": 2000,
        "warmup": 50,
        "weight_decay": 1e-3,
    }
    smoke_config = {"heads": 2, "width": 16, "depth": 1}
    primary_metric = ("nll", "lower")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False):
        from astrobio_cli.data.tables import measured_mass_radius, read_exoplanet_table
        from astrobio_cli.errors import UsageError
        from astrobio_cli.training.plugin import Datasets

        c = self.config
        path = Path(data) if data is not None else DEFAULT_TABLE
        table = measured_mass_radius(read_exoplanet_table(path))
        if len(table) < 20:
            raise UsageError(
                f"{path} has {len(table)} planet(s) with a measured mass and radius; "
                "planet-mass needs at least 20"
            )
        split_seed = seed if c["split_seed"] is None else int(c["split_seed"])
        hosts = [
            str(h) if h is not None else str(n)
            for h, n in zip(table["hostname"], table["pl_name"], strict=True)
        ]
        tr, va = host_split(hosts, c["val_fraction"], split_seed)
        raw = raw_features(table)
        stats = feature_stats(raw[tr])
        stats["knots"] = np.log10(np.asarray(c["radius_knots"], dtype=np.float64))
        if c["clamp"]:  # the train range of each input (unbounded where a column is all missing)
            with np.errstate(invalid="ignore"):
                lo, hi = np.nanmin(raw[tr], axis=0), np.nanmax(raw[tr], axis=0)
            stats["lo"] = np.where(np.isfinite(lo), lo, -np.inf)
            stats["hi"] = np.where(np.isfinite(hi), hi, np.inf)
        x = design(raw, stats, train=tr)
        radius = table["pl_rade"].to_numpy(dtype=np.float64)
        y = np.log10(table["pl_bmasse"].to_numpy(dtype=np.float64))
        y_mean, y_std = float(y[tr].mean()), float(y[tr].std() or 1.0)
        e1 = table["pl_radeerr1"].to_numpy(dtype=np.float64)
        e2 = -table["pl_radeerr2"].to_numpy(dtype=np.float64)
        logr_err = 0.5 * (np.log10(radius + e1) - np.log10(np.maximum(radius - e2, 1e-3 * radius)))
        ctx = {
            "x": torch.from_numpy(x.astype(np.float32)),
            "y": torch.from_numpy(((y - y_mean) / y_std).astype(np.float32)),
            "y_mean": y_mean,
            "y_std": y_std,
            "raw": raw,
            "log10_mass": y,
            "radius": radius,
            "log10_radius_err": logr_err,
            "hosts": hosts,
            "names": table["pl_name"].tolist(),
            "stats": stats,
            "train_idx": tr,
            "val_idx": va,
        }
        provenance = data_provenance(path, table, bundled=data is None)
        provenance.update(
            {
                "planets": len(y),
                "train": len(tr),
                "val": len(va),
                "hosts_train": len({hosts[i] for i in tr}),
                "hosts_val": len({hosts[i] for i in va}),
                "split": "by host system",
                "split_seed": split_seed,
                "features": list(FEATURES),
                "target": "log10 pl_bmasse [M_earth]",
            }
        )
        return Datasets(
            train=Items(ctx, tr), val=Items(ctx, va), provenance=provenance, context=ctx, seed=seed
        )

    def build(self, datasets):
        c = self.config
        n_in = datasets.context["x"].shape[1]
        return EnsembleMDN(
            n_in, c["heads"], c["width"], c["depth"], c["components"], c["min_sigma"]
        )

    def loss(self, model, batch, datasets):
        x = batch["x"].float()
        if self.config["input_noise"] > 0:  # Gaussian noise on the standardised inputs
            x = x + self.config["input_noise"] * torch.randn_like(x)
        # the mean over heads of each head's own NLL: the heads are trained independently
        y = batch["y"].float()
        out = model(x)
        loss = head_nll(out, y).mean()
        lam = self.config["mse_weight"]
        if lam > 0:  # each head's mixture mean also trained for squared error
            logits, mu, _sd = out
            mean = (torch.softmax(logits, dim=-1) * mu).sum(dim=-1)
            loss = loss + lam * ((mean - y[None, :]) ** 2).mean()
        return loss

    def predict(self, model, datasets, idx: list[int]) -> Mixture:
        """The ensemble's predictive mixture (log10 M_earth) for rows `idx` of the table."""
        ctx = datasets.context
        device = next(model.parameters()).device
        with torch.no_grad():
            logits, mu, sd = model(ctx["x"][idx].to(device).float())
        h, n, k = mu.shape
        w = torch.softmax(logits.double(), dim=-1) / h
        flat = lambda t: t.permute(1, 0, 2).reshape(n, h * k).double().cpu().numpy()  # noqa: E731
        return Mixture(flat(w), flat(mu) * ctx["y_std"] + ctx["y_mean"], flat(sd) * ctx["y_std"])

    def evaluate(self, model, datasets):
        ctx, va = datasets.context, datasets.val.idx
        pred = self.predict(model, datasets, va)
        return score(pred, ctx["log10_mass"][va], ctx["radius"][va])

    def baseline(self, datasets):
        ctx = datasets.context
        tr, va = datasets.train.idx, datasets.val.idx
        y, radius, raw = ctx["log10_mass"], ctx["radius"], ctx["raw"]
        logr = np.log10(radius)
        out = {}
        fc = forecaster_predict(logr[va], ctx["log10_radius_err"][va])
        out["forecaster"] = score(fc, y[va], radius[va])
        fit = fit_broken_power_law(logr[tr], y[tr])
        out["power-law-refit"] = score(power_law_predict(fit, logr[va]), y[va], radius[va])
        hosts = np.array([ctx["hosts"][i] for i in tr])
        mean, sd = boosted_trees(raw[tr], y[tr], hosts, raw[va], datasets.seed)
        out["boosted-trees"] = score(
            Mixture(np.ones((len(va), 1)), mean[:, None], sd[:, None]), y[va], radius[va]
        )
        return out

    def plot(self, model, datasets, path):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ctx, va = datasets.context, datasets.val.idx
        pred = self.predict(model, datasets, va)
        radius, y = ctx["radius"][va], ctx["log10_mass"][va]
        med, lo, hi = pred.quantile(0.5), pred.quantile(0.16), pred.quantile(0.84)
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [2, 1]})
        order = np.argsort(radius)
        ax.errorbar(
            radius[order], 10 ** med[order],
            yerr=[10 ** med[order] - 10 ** lo[order], 10 ** hi[order] - 10 ** med[order]],
            fmt="o", ms=3, lw=0.6, alpha=0.5, color="C0", label="planet-mass: median, 68%",
        )  # fmt: skip
        ax.scatter(radius, 10**y, s=6, color="k", label="measured (held-out systems)", zorder=3)
        grid = np.linspace(*LOG_M_GRID, GRID_POINTS)
        mu, _ = forecaster_log_radius(grid)
        keep = (10**mu > 0.3) & (10**mu < 30)
        ax.plot(
            10 ** mu[keep], 10 ** grid[keep], color="C3", lw=1.2, label="Chen & Kipping 2017 R(M)"
        )
        ax.set(xscale="log", yscale="log", xlabel="radius [R_earth]", ylabel="mass [M_earth]")
        ax.set_ylim(10 ** (y.min() - 0.5), 10 ** (y.max() + 0.5))
        ax.legend(fontsize=8)
        pit = pred.cdf(y)
        ax2.hist(pit, bins=10, range=(0, 1), color="C0", alpha=0.8)
        ax2.axhline(len(pit) / 10, color="k", lw=1, ls="--")
        ax2.set(
            xlabel="PIT = F(measured mass)", ylabel="planets", title="calibration (flat = ideal)"
        )
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


# -- the bundled extract -----------------------------------------------------------------------


def write_extract(sources: list[Path], out: Path) -> dict[str, Any]:
    """The planets with a measured mass and radius from `sources` (the preferred catalogue
    first), one row per planet (`merge_catalogues`), in the schema of
    `astrobio_cli.data.tables`, floats to 6 significant digits."""
    from astrobio_cli.data.tables import (
        COLUMNS,
        measured_mass_radius,
        merge_catalogues,
        read_exoplanet_table,
    )

    frames = [measured_mass_radius(read_exoplanet_table(p)) for p in sources]
    merged = merge_catalogues(frames)
    merged = merged.sort_values(["hostname", "pl_name"], kind="stable").reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    merged[list(COLUMNS)].to_csv(out, index=False, float_format="%.6g", lineterminator="\n")
    return {
        "rows": len(merged),
        "by_catalogue": merged["catalogue"].value_counts().to_dict(),
        "sha256": file_sha256(out),
    }


if __name__ == "__main__":  # python -m astrobio_models.planet_mass OUT.csv SOURCE.csv...
    import sys

    if len(sys.argv) < 3:
        sys.exit("usage: python -m astrobio_models.planet_mass OUT.csv SOURCE [SOURCE ...]")
    print(json.dumps(write_extract([Path(p) for p in sys.argv[2:]], Path(sys.argv[1])), indent=2))
