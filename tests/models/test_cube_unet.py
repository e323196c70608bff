"""cube-unet: shapes, physics terms against the generator, baselines against NumPy, gradient
checkpointing and bf16 autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from astrobio_models.cube_unet import energy_imbalance, factory, loss_terms


@pytest.fixture(scope="module")
def setup(climate_nc):
    plugin = factory({"width": 4, "depth": 1, "heads": 1})
    datasets = plugin.make_datasets(climate_nc, seed=0)
    return plugin, datasets


def test_forward_shape(setup):
    plugin, datasets = setup
    torch.manual_seed(0)
    model = plugin.build(datasets)
    x = datasets.context["x"][:3]
    assert x.shape == (3, 9, 6, 16, 32)
    assert model(x).shape == (3, 2, 6, 16, 32)


def test_energy_balance_holds_for_the_true_fields(setup, climate_nc):
    """The generator's planets are in equilibrium: the penalty's physics, evaluated on the true
    surface temperature in float64, gives (near) zero imbalance, and a 5 K error does not."""
    _plugin, datasets = setup
    ctx = datasets.context
    with xr.open_dataset(climate_nc) as ds:
        ts = torch.tensor(ds["ts"].values[:20], dtype=torch.float64)
    args = [ctx[k][:20].double() for k in ("rsdt", "land", "albedo", "greenhouse")]
    imb = energy_imbalance(ts, *args, ctx["area"].double())
    assert imb.abs().max() < 0.5  # W m-2, of ~240 absorbed
    assert energy_imbalance(ts + 5, *args, ctx["area"].double()).abs().min() > 3


def test_physics_terms_are_zero_on_truth_and_penalise_negative_humidity(setup):
    plugin, datasets = setup
    batch = torch.utils.data.default_collate([datasets.train[i] for i in range(4)])
    terms = loss_terms(batch["y"].clone(), batch, datasets.context, plugin.config)
    assert terms["mse"] == 0 and terms["hneg"] == 0 and terms["ebal"] < 1e-5
    bad = batch["y"].clone()
    bad[:, 1] = -10.0  # far below zero humidity in physical units
    assert loss_terms(bad, batch, datasets.context, plugin.config)["hneg"] > 0


def test_linear_baseline_matches_numpy_lstsq(setup):
    from astrobio_models.cube_unet import baselines

    _, datasets = setup
    ctx, tr, va = datasets.context, datasets.train.idx, datasets.val.idx
    _, lin = baselines(ctx, tr, va)
    j, i = 5, 7  # one grid point
    feats = lambda idx: np.column_stack(  # noqa: E731
        [
            ctx["scalars"][idx].double().numpy(),
            ctx["land"][idx, j, i].double().numpy(),
            np.ones(len(idx)),
        ]
    )
    y = ctx["y"][tr][:, :, :, j, i].double().numpy().reshape(len(tr), -1)
    coef, *_ = np.linalg.lstsq(feats(tr), y, rcond=None)
    want = (feats(va) @ coef).reshape(len(va), 2, 6)
    np.testing.assert_allclose(lin[:, :, :, j, i].numpy(), want, atol=2e-3)


def test_gradient_checkpointing_gives_the_same_gradients(climate_nc, setup):
    _, datasets = setup
    batch = torch.utils.data.default_collate([datasets.train[i] for i in range(3)])
    grads = []
    for gc in (False, True):
        plugin = factory({"width": 4, "depth": 1, "heads": 1, "grad_checkpointing": gc})
        torch.manual_seed(0)
        model = plugin.build(datasets)
        plugin.loss(model, batch, datasets).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-7)


def test_bf16_autocast_forward_is_close(setup):
    plugin, datasets = setup
    torch.manual_seed(0)
    model = plugin.build(datasets)
    x = datasets.context["x"][:2]
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, rtol=0.05, atol=0.05)


def test_bad_options_and_bad_data(tmp_path):
    from astrobio_cli.errors import UsageError, UserError

    with pytest.raises(UsageError, match="has no option 'widht'"):
        factory({"widht": 3})
    nc = tmp_path / "other.nc"
    xr.Dataset({"T": ("x", np.zeros(3))}).to_netcdf(nc)
    with pytest.raises(UserError, match="is not a synthetic-climate ensemble"):
        factory({}).make_datasets(nc, seed=0)
