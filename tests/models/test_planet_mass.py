"""planet-mass on real catalogue extracts: split by host, missing context kept, the Forecaster
baseline against the published relation in float64, CRPS against numerical references, and a
short training that beats the trivial predictor."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from astrobio_cli.data.tables import host_key
from astrobio_cli.plugins import resolve
from astrobio_cli.training.plugin import check_plugin
from astrobio_models import planet_mass as pm

PLANETS = Path(__file__).resolve().parents[1] / "data" / "planets"


@pytest.fixture(scope="module")
def extract(tmp_path_factory) -> Path:
    """The measured planets of the two real test extracts, merged (TEPCat first)."""
    out = tmp_path_factory.mktemp("planets") / "measured.csv"
    pm.write_extract([PLANETS / "TEPCat_extract.csv", PLANETS / "exoplanet_eu_extract.csv"], out)
    return out


def short_training(plugin, ds, steps=300, seed=0):
    torch.manual_seed(seed)
    model = plugin.build(ds)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-3)
    n = len(ds.train)
    for _ in range(steps):
        idx = torch.randperm(n)[:32].tolist()
        batch = torch.utils.data.default_collate([ds.train[i] for i in idx])
        opt.zero_grad()
        plugin.loss(model, batch, ds).backward()
        opt.step()
    return model.eval()


def test_registered_and_complete():
    spec = resolve("model", "planet-mass")
    plugin = spec.factory({})
    assert check_plugin(plugin) == []
    assert plugin.data_kind == "exoplanet-table" and spec.data_kinds == ("exoplanet-table",)
    assert plugin.primary_metric == ("nll", "lower")


def test_bundled_extract_is_the_documented_one():
    from astrobio_cli.data.tables import measured_mass_radius, read_exoplanet_table

    path = pm.DEFAULT_TABLE
    assert path.stat().st_size < 500_000
    df = read_exoplanet_table(path)
    assert measured_mass_radius(df).shape[0] == len(df)  # every row is measured already
    assert df["pl_name"].is_unique and set(df["catalogue"]) == {"tepcat", "exoplanet.eu"}
    assert "planets_measured.csv" in (path.parent / "README.md").read_text()


def test_split_by_host_and_missing_context_kept(extract):
    plugin = pm.factory({})
    ds = plugin.make_datasets(extract, seed=3)
    ctx = ds.context
    n = len(ctx["names"])
    assert len(ds.train) + len(ds.val) == n and ds.seed == 3
    train_hosts = {host_key(ctx["hosts"][i]) for i in ds.train.idx}
    val_hosts = {host_key(ctx["hosts"][i]) for i in ds.val.idx}
    assert train_hosts and val_hosts and not train_hosts & val_hosts
    assert ds.provenance["split"] == "by host system" and ds.provenance["split_seed"] == 3
    # Kepler-079 b has neither Teq nor [Fe/H] (TEPCat's -1): kept, imputed, flagged
    k = ctx["names"].index("Kepler-079 b")
    raw = ctx["raw"][k]
    assert np.isnan(raw[pm.FEATURES.index("log10_eqt")]) and np.isnan(raw[-1])
    x = ctx["x"][k].numpy()
    flags = x[len(pm.FEATURES) : 2 * len(pm.FEATURES) - 1]  # missing indicators, context order
    assert flags[pm.CONTEXT.index("log10_eqt")] == 1 and flags[pm.CONTEXT.index("st_met")] == 1
    assert np.isfinite(x).all()
    assert np.isnan(ctx["raw"]).any(axis=1).sum() > 5  # many planets lack some context
    # the same seed gives the same split; another seed another one
    again = plugin.make_datasets(extract, seed=3)
    assert again.val.idx == ds.val.idx
    assert pm.factory({}).make_datasets(extract, seed=4).val.idx != ds.val.idx


def test_short_training_beats_the_trivial_predictor(extract):
    plugin = pm.factory({})
    ds = plugin.make_datasets(extract, seed=0)
    model = short_training(plugin, ds)
    with torch.no_grad():
        got = plugin.evaluate(model, ds)
    ctx = ds.context
    y_tr = ctx["log10_mass"][ds.train.idx]
    va = ds.val.idx
    trivial = pm.Mixture(
        np.ones((len(va), 1)), np.full((len(va), 1), y_tr.mean()), np.full((len(va), 1), y_tr.std())
    )
    base = pm.score(trivial, ctx["log10_mass"][va], ctx["radius"][va])
    assert got["rmse_log10"] < 0.6 * base["rmse_log10"]
    assert got["nll"] < base["nll"] - 0.5 and got["crps"] < 0.7 * base["crps"]
    for key in ("cover68", "cover95", "rmse_log10_giant", "n_rocky", "crps_neptunian"):
        assert key in got
    # every baseline reports the same keys, scored on the same planets
    baselines = plugin.baseline(ds)
    assert set(baselines) == {"forecaster", "power-law-refit", "boosted-trees"}
    for vals in baselines.values():
        assert {k for k in got if not k.startswith("n_")} <= set(vals)
        assert vals["n_giant"] == got["n_giant"]


def test_weights_round_trip_and_figure(extract, tmp_path):
    plugin = pm.factory(dict(pm.factory({}).smoke_config))
    ds = plugin.make_datasets(extract, seed=0)
    model = short_training(plugin, ds, steps=20).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.st"))
    twin = plugin.build(ds)
    twin.load_state_dict(load_file(str(tmp_path / "m.st")))
    with torch.no_grad():
        assert plugin.evaluate(model, ds) == plugin.evaluate(twin.eval(), ds)
        plugin.plot(model, ds, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- Forecaster as published ---------------------------------------------------------------------


def chen_kipping_radius(m_earth: float) -> float:
    """R(M) of Chen & Kipping (2017) Table 1, written out independently (float64)."""
    t1, t2, t3 = 2.04, 0.414 * 317.83, 0.0800 * 332946.0
    r = 10**0.00346 * min(m_earth, t1) ** 0.2790
    if m_earth > t1:
        r *= (min(m_earth, t2) / t1) ** 0.589
    if m_earth > t2:
        r *= (min(m_earth, t3) / t2) ** -0.044
    if m_earth > t3:
        r *= (m_earth / t3) ** 0.881
    return r


@pytest.mark.parametrize("mass", [0.01, 1.0, 2.0, 10.0, 100.0, 317.83, 3000.0, 1e5])
def test_forecaster_relation_matches_table_1(mass):
    mu, sig = pm.forecaster_log_radius(np.array([math.log10(mass)]))
    assert 10 ** mu[0] == pytest.approx(chen_kipping_radius(mass), rel=1e-12)
    want = 0.0403 if mass < 2.04 else 0.146 if mass < 131.58 else 0.0736 if mass < 26636 else 0.044
    assert sig[0] == want


def test_forecaster_at_known_points():
    # R(M = 1 M_earth) = 10**0.00346 = 1.0080 R_earth
    assert chen_kipping_radius(1.0) == pytest.approx(1.00800, abs=1e-5)
    # the inversion, as Forecaster's Rpost2M: a flat prior in log10 M on [-3.522, 5.477], the
    # likelihood N(log R; mu(M), sigma(M)); the reference posterior on a 20x finer grid
    m = np.linspace(-3.522, 5.477, 40_001)
    mu = np.log10([chen_kipping_radius(10**v) for v in m])
    sig = np.select([m < math.log10(2.04), m < math.log10(131.58), m < math.log10(26636)],
                    [0.0403, 0.146, 0.0736], 0.044)  # fmt: skip
    for r in (0.8, 3.0, 12.0):
        like = np.exp(-0.5 * ((math.log10(r) - mu) / sig) ** 2) / sig
        cdf = np.cumsum(like) / like.sum()
        pred = pm.forecaster_predict(np.array([math.log10(r)]), np.array([0.0]))
        for q in (0.1586553, 0.5, 0.8413447):
            assert pred.quantile(q)[0] == pytest.approx(np.interp(q, cdf, m), abs=3e-3)
        dens = like / (like.sum() * (m[1] - m[0]))
        k = int(np.argmax(dens))
        assert pred.logpdf(np.array([m[k]]))[0] == pytest.approx(math.log(dens[k]), abs=0.01)
    # for 0.8 R_earth the bulk is the Terran Gaussian, mean (log R - C0) / S1, sd sigma1 / S1,
    # plus a tail of Neptunian masses from that class's wider scatter
    pred = pm.forecaster_predict(np.array([math.log10(0.8)]), np.array([0.0]))
    center = (math.log10(0.8) - 0.00346) / 0.2790
    assert pred.quantile(0.3)[0] == pytest.approx(center - 0.5244 * 0.0403 / 0.2790, abs=0.01)
    # a radius uncertainty widens the posterior (convolved into the scatter)
    wide = pm.forecaster_predict(np.array([math.log10(0.8)]), np.array([0.05]))
    assert (
        wide.quantile(0.84)[0] - wide.quantile(0.16)[0]
        > pred.quantile(0.84)[0] - pred.quantile(0.16)[0]
    )


# -- scores against float64 references -----------------------------------------------------------


def crps_numeric(cdf, y, lo, hi, n=400_001):
    """int_lo^y F^2 + int_y^hi (1 - F)^2 by the trapezoid rule on each side of y (float64)."""
    total = 0.0
    if y > lo:
        x = np.linspace(lo, min(y, hi), n)
        total += float(np.trapezoid(cdf(x) ** 2, x))
    if y < hi:
        x = np.linspace(max(y, lo), hi, n)
        total += float(np.trapezoid((1 - cdf(x)) ** 2, x))
    return total + max(lo - y, 0.0) + max(y - hi, 0.0)


def test_mixture_crps_against_integration_and_monte_carlo():
    from scipy.stats import norm

    w, mu, sd = np.array([0.2, 0.5, 0.3]), np.array([-1.0, 0.3, 2.0]), np.array([0.3, 0.8, 0.5])
    mix = pm.Mixture(w[None, :], mu[None, :], sd[None, :])
    for y in (-1.2, 0.0, 0.7, 3.5):
        got = mix.crps(np.array([y]))[0]
        ref = crps_numeric(lambda x: (w * norm.cdf((x[:, None] - mu) / sd)).sum(1), y, -10, 12)
        assert got == pytest.approx(ref, abs=1e-7)
        # E|X - y| - E|X - X'| / 2 by Monte Carlo
        rng = np.random.default_rng(0)
        k = rng.choice(3, size=(2, 400_000), p=w)
        xs = rng.normal(mu[k], sd[k])
        mc = np.abs(xs[0] - y).mean() - 0.5 * np.abs(xs[0] - xs[1]).mean()
        assert got == pytest.approx(mc, abs=5e-3)
    # one Gaussian: the textbook closed form (Gneiting & Raftery 2007)
    z = 0.7
    one = pm.Mixture(np.ones((1, 1)), np.zeros((1, 1)), np.ones((1, 1))).crps(np.array([z]))[0]
    assert one == pytest.approx(
        z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi)
    )
    # cdf, logpdf and quantiles agree
    assert mix.cdf(mix.quantile(0.3))[0] == pytest.approx(0.3, abs=1e-9)
    dens = (w * norm.pdf(0.4, mu, sd)).sum()
    assert mix.logpdf(np.array([0.4]))[0] == pytest.approx(math.log(dens), rel=1e-12)


def test_grid_crps_is_exact_for_its_piecewise_linear_cdf():
    from scipy.stats import norm

    grid = np.linspace(-3.0, 3.0, 301)
    p = norm.pdf(grid, 0.2, 0.7)[None, :]
    dist = pm.GridDist(grid, p)
    dx = grid[1] - grid[0]
    edges = np.append(grid - dx / 2, grid[-1] + dx / 2)
    cum = np.append(0.0, np.cumsum(p[0] / p.sum()))

    def cdf(x):  # the piecewise-linear CDF, written out independently
        return np.interp(x, edges, cum)

    for y in (-4.0, -0.5, 0.2, 0.33, 2.9, 5.0):
        got = dist.crps(np.array([y]))[0]
        assert got == pytest.approx(crps_numeric(cdf, y, -6, 8), abs=1e-8)
        # and close to the continuous Gaussian it discretises
        g = pm.Mixture(np.ones((1, 1)), np.full((1, 1), 0.2), np.full((1, 1), 0.7))
        assert got == pytest.approx(g.crps(np.array([y]))[0], abs=2e-3)
    assert dist.quantile(0.5)[0] == pytest.approx(0.2, abs=1e-3)
    assert dist.cdf(np.array([0.2]))[0] == pytest.approx(0.5, abs=1e-3)


def test_coverage_of_a_calibrated_forecast():
    rng = np.random.default_rng(1)
    n = 20_000
    mu = rng.normal(size=n)
    y = mu + 0.5 * rng.normal(size=n)
    radius = np.full(n, 3.0)  # all "neptunian"
    got = pm.score(pm.Mixture(np.ones((n, 1)), mu[:, None], np.full((n, 1), 0.5)), y, radius)
    assert got["cover68"] == pytest.approx(0.6827, abs=0.01)
    assert got["cover95"] == pytest.approx(0.95, abs=0.005)
    assert got["rmse_log10"] == pytest.approx(0.5, abs=0.01)
    assert got["nll"] == pytest.approx(math.log(0.5 * math.sqrt(2 * math.pi)) + 0.5, abs=0.02)
    assert got["n_neptunian"] == n and got["n_rocky"] == 0 and "rmse_log10_rocky" not in got


def test_broken_power_law_fit_recovers_a_known_relation():
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.2, 1.4, 3000)
    truth = np.array([0.1, 3.0, 1.2, -0.5, 0.25, 1.0])
    sd = np.array([0.15, 0.25, 0.4])
    y = pm.broken_line(x, truth) + sd[np.digitize(x, truth[4:6])] * rng.normal(size=x.size)
    fit = pm.fit_broken_power_law(x, y)
    np.testing.assert_allclose(fit["params"][4:6], truth[4:6], atol=0.05)
    np.testing.assert_allclose(fit["params"][1:4], truth[1:4], atol=0.3)
    np.testing.assert_allclose(fit["sd"], sd, rtol=0.1)
