"""The tabular baselines of spectral-transformer and datacube-cnn and cube-unet's per-grid-point
quadratic ridge, against independent float64 references; fitted on the training split only;
deterministic for a seed; and the predicted-vs-true figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astrobio_models import tabular_baselines as tb


def _problem(n=60, p=5, targets=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * rng.uniform(0.1, 10, size=p) + rng.normal(size=p)
    x[:, 1] = x[:, 0] * 0.9 + 0.1 * x[:, 1]  # collinear, so alpha matters
    y = x @ rng.normal(size=(p, targets)) + rng.normal(size=(n, targets)) * 3 + 5
    return x, y


def _standardise(x_fit, *xs):
    mean, std = x_fit.mean(0), x_fit.std(0)
    return [(v - mean) / std for v in (x_fit, *xs)]


def test_ridge_matches_the_closed_form_solve():
    x, y = _problem()
    tr, va = slice(0, 45), slice(45, None)
    model = tb.ridge().fit(x[tr], y[tr])
    alphas = model[-1].alpha_
    assert alphas.shape == (2,)
    xs_tr, xs_va = _standardise(x[tr], x[va])
    for j, alpha in enumerate(alphas):
        yc = y[tr, j] - y[tr, j].mean()
        coef = np.linalg.solve(xs_tr.T @ xs_tr + alpha * np.eye(x.shape[1]), xs_tr.T @ yc)
        want = xs_va @ coef + y[tr, j].mean()
        np.testing.assert_allclose(model.predict(x[va])[:, j], want, rtol=1e-9, atol=1e-9)


def test_ridge_alpha_is_the_brute_force_leave_one_out_argmin():
    x, y = _problem(n=30)
    alphas = np.array([1e-3, 0.3, 3.0, 30.0, 300.0])
    model = tb.ridge(alphas).fit(x, y)
    (xs,) = _standardise(x)  # the scaler sees every training row, then LOO inside
    n = len(x)
    err = np.zeros((len(alphas), y.shape[1]))
    for a, alpha in enumerate(alphas):
        for i in range(n):
            keep = np.arange(n) != i
            xm, ym = xs[keep].mean(0), y[keep].mean(0)
            xc = xs[keep] - xm
            coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y[keep] - ym))
            err[a] += ((xs[i] - xm) @ coef + ym - y[i]) ** 2
    np.testing.assert_array_equal(model[-1].alpha_, alphas[err.argmin(0)])


def test_quadratic_features_are_the_inputs_then_their_degree_two_monomials():
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    got = tb.QuadraticFeatures().fit_transform(x)
    a, b, c = x.T
    want = np.column_stack([a, b, c, a * a, a * b, a * c, b * b, b * c, c * c])
    np.testing.assert_allclose(got, want)
    pca = tb.QuadraticFeatures(2).fit(np.random.default_rng(0).normal(size=(20, 3)))
    assert pca.transform(x).shape == (2, 3 + 3)  # x, then z1^2, z1 z2, z2^2


def test_quadratic_ridge_recovers_a_quadratic_that_ridge_cannot():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 4))
    y = x[:, 0] * x[:, 1] + x[:, 2] ** 2 - x[:, 3]
    tr, va = slice(0, 300), slice(300, None)
    quad = tb.QuadraticRidge().fit(x[tr], y[tr])
    assert quad.components is None  # 4 inputs: the full expansion wins the LOO choice
    assert np.sqrt(np.mean((quad.predict(x[va]) - y[va]) ** 2)) < 0.02
    lin = tb.ridge().fit(x[tr], y[tr])
    assert np.sqrt(np.mean((lin.predict(x[va]) - y[va]) ** 2)) > 0.5 * y[va].std()


def test_boosted_trees_are_deterministic_for_a_seed():
    x, y = _problem(n=300)
    a = tb.BoostedTrees(3).fit(x, y).predict(x[:50])
    b = tb.BoostedTrees(3).fit(x, y).predict(x[:50])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50, 2)
    c = tb.BoostedTrees(4).fit(x, y).predict(x[:50])  # another early-stopping split
    assert not np.array_equal(a, c)


def test_fit_predict_drops_constant_and_repeated_columns():
    x, y = _problem(n=80)
    padded = np.column_stack([x, np.ones(len(x)), x[:, 2]])
    a = tb.fit_predict(x[:60], y[:60], x[60:], seed=0)
    b = tb.fit_predict(padded[:60], y[:60], padded[60:], seed=0)
    assert set(a) == set(tb.NAMES)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-12)


# -- the plugins ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spectral():
    from astrobio_models.spectral_transformer import factory

    plugin = factory({"dim": 8, "heads": 2, "layers": 1, "samples": 300, "bins": 16})
    return plugin, plugin.make_datasets(None, seed=0)


@pytest.fixture(scope="module")
def cube(climate_nc):
    from astrobio_models.datacube_cnn import factory

    plugin = factory({"width": 4, "blocks": 1})
    return plugin, plugin.make_datasets(climate_nc, seed=0)


def _target_key(plugin):
    return "t" if plugin.name == "datacube-cnn" else "y"


@pytest.mark.parametrize("which", ["spectral", "cube"])
def test_baselines_are_fitted_on_the_training_split_only(which, request):
    plugin, ds = request.getfixturevalue(which)
    key = _target_key(plugin)
    before = plugin.baseline_predictions(ds)
    assert set(before) == {"mean", *tb.NAMES}
    y = ds.context[key]
    saved = y.clone()
    try:
        y[ds.val.idx] = torch.randn_like(y[ds.val.idx]) * 10  # new held-out targets
        after = plugin.baseline_predictions(ds)
        for k in before:
            np.testing.assert_array_equal(before[k], after[k], err_msg=k)
        y[ds.train.idx[:20]] += 5.0  # new training targets: the fits move
        moved = plugin.baseline_predictions(ds)
        assert all(not np.allclose(before[k], moved[k]) for k in before)
    finally:
        y.copy_(saved)


@pytest.mark.parametrize("which", ["spectral", "cube"])
def test_baseline_metrics_are_the_models_metrics_of_the_predictions(which, request):
    plugin, ds = request.getfixturevalue(which)
    key = _target_key(plugin)
    scores = plugin.baseline(ds)
    true = ds.context[key][ds.val.idx].double().numpy()
    preds = plugin.baseline_predictions(ds)
    for name, pred in preds.items():
        assert scores[name]["rmse"] == pytest.approx(np.sqrt(np.mean((pred - true) ** 2)))
    # the boosted trees draw from the run seed
    ds.seed = 7
    try:
        other = plugin.baseline_predictions(ds)
    finally:
        ds.seed = 0
    assert not np.array_equal(other["boosted-trees"], preds["boosted-trees"])
    np.testing.assert_array_equal(other["ridge"], preds["ridge"])


def test_spectral_amplitude_inputs_carry_the_temperature():
    """Doubling T doubles the scale height: the standardised spectrum barely moves, the spread
    (an amplitude input) doubles."""
    from astrobio_models import spectral_transformer as st

    lam = st.wavelengths(32)
    cool = np.array([[800.0, -3.0, -4.0, -5.0, 0.0]])
    hot = cool.copy()
    hot[0, 0] = 1600.0
    d = np.vstack([st.transit_depth(cool, lam), st.transit_depth(hot, lam)])
    shape = (d - d.mean(1, keepdims=True)) / d.std(1, keepdims=True)
    assert np.abs(shape[0] - shape[1]).max() < 0.05
    assert d[1].std() / d[0].std() == pytest.approx(2.0, rel=0.05)
    a = st.simulate(400, 32, seed=1)
    g = st.amplitude_features(a["spectra"], list(range(300)))
    np.testing.assert_allclose(g[:300].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(g[:300].std(0), 1, atol=1e-12)
    raw = np.log(a["spectra"].std(1))
    np.testing.assert_allclose(g[:, 1], (raw - raw[:300].mean()) / raw[:300].std(), rtol=1e-9)


def test_datacube_pooled_inputs_match_the_file(cube, climate_nc):
    import xarray as xr

    from astrobio_models.datacube_cnn import pooled_inputs

    _, ds = cube
    x = pooled_inputs(ds.context)
    with xr.open_dataset(climate_nc) as f:
        land, lat = f["land_mask"].values.astype(np.float64), f["lat"].values
        flux = f["stellar_flux"].values.astype(np.float64)
    w = np.diff(np.sin(np.deg2rad(np.linspace(-90, 90, len(lat) + 1))))
    frac = (land.mean(2) * w).sum(1) / w.sum()
    tr = ds.train.idx
    # the land channel is the land mask normalised by the data layer (train split's stats)
    m_mean, m_std = land[tr].mean(), land[tr].std()
    np.testing.assert_allclose(x[:, 5], (frac - m_mean) / m_std, atol=1e-5)
    np.testing.assert_allclose(x[:, 0], (flux - flux[tr].mean()) / flux[tr].std(), atol=1e-5)


def test_cube_quadratic_ridge_matches_sklearn_at_a_grid_point(climate_nc):
    from sklearn.linear_model import Ridge

    from astrobio_models.cube_unet import factory, quadratic_baseline

    ds = factory({"width": 4, "depth": 1, "heads": 1}).make_datasets(climate_nc, seed=0)
    ctx, tr, va = ds.context, ds.train.idx, ds.val.idx
    pred, alpha = quadratic_baseline(ctx, tr, va)
    assert pred.shape == (len(va), 2, 6, 16, 32)

    def feats(idx, j, i):
        s = ctx["scalars"][idx].double().numpy()
        quad = [s[:, a] * s[:, b] for a in range(5) for b in range(a, 5)]
        return np.column_stack([s, *quad, ctx["land"][idx, j, i].double().numpy()])

    for j, i in ((5, 7), (12, 30)):
        y = ctx["y"][tr][:, :, :, j, i].double().numpy().reshape(len(tr), -1)
        ref = Ridge(alpha=alpha).fit(feats(tr, j, i), y)
        want = ref.predict(feats(va, j, i)).reshape(len(va), 2, 6)
        np.testing.assert_allclose(pred[:, :, :, j, i].numpy(), want, atol=2e-4)

    # fitted on the training split only
    y = ctx["y"]
    saved = y.clone()
    try:
        y[va] = torch.randn_like(y[va])
        again, alpha2 = quadratic_baseline(ctx, tr, va)
    finally:
        y.copy_(saved)
    assert alpha2 == alpha
    torch.testing.assert_close(again, pred, rtol=0, atol=0)


def test_cube_quadratic_ridge_beats_the_linear_baseline(climate_nc):
    from astrobio_models.cube_unet import factory

    plugin = factory({"width": 4, "depth": 1, "heads": 1})
    scores = plugin.baseline(plugin.make_datasets(climate_nc, seed=0))
    assert set(scores) == {"climatology", "linear", "ridge-quadratic"}
    assert scores["ridge-quadratic"]["rmse"] < scores["linear"]["rmse"]


@pytest.mark.parametrize("which", ["spectral", "cube"])
def test_plot_writes_a_png(which, request, tmp_path):
    plugin, ds = request.getfixturevalue(which)
    torch.manual_seed(0)
    model = plugin.build(ds).eval()
    path = tmp_path / "fig.png"
    plugin.plot(model, ds, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
