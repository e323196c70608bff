"""datacube-cnn targets and the spectral forward model, checked by hand in float64."""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr

from astrobio_models import spectral_transformer as st


def test_datacube_targets_match_numpy(climate_nc):
    from astrobio_models.datacube_cnn import factory

    ds_ = factory({"width": 4, "blocks": 1}).make_datasets(climate_nc, seed=0)
    ctx = ds_.context
    raw = ctx["t"].double() * ctx["t_std"] + ctx["t_mean"]
    with xr.open_dataset(climate_nc) as ds:
        ts, lat = ds["ts"].values.astype(np.float64), ds["lat"].values
    edges = np.deg2rad(np.linspace(-90, 90, len(lat) + 1))
    w = np.diff(np.sin(edges))[:, None] * np.ones(ts.shape[-1])
    w /= w.sum()
    gmst = (ts * w).sum((1, 2))
    hab = (((ts >= 273.15) & (ts <= 373.15)) * w).sum((1, 2))
    np.testing.assert_allclose(raw[:, 0].numpy(), gmst, atol=1e-3)
    np.testing.assert_allclose(raw[:, 1].numpy(), hab, atol=1e-5)


def test_spectral_forward_model_by_hand():
    lam = st.wavelengths(64)
    # a high cloud deck (1e-5 bar) hides every band: a flat spectrum at the cloud-top radius
    flat = np.array([[1000.0, -8.0, -8.0, -8.0, -5.0]])
    h = st.K_B * 1000.0 / (st.MU * st.M_H * st.GRAVITY)
    assert 3.5e5 < h < 3.7e5  # ~360 km for a 1000 K hydrogen atmosphere at g = 10
    want = (st.R_P + h * math.log(1e5)) ** 2 / st.R_S**2
    np.testing.assert_allclose(st.transit_depth(flat, lam)[0], want, rtol=1e-12)
    # clear and water-rich: the 2.7 um water band stands above the 2.2 um window by ~H ln(ratio)
    wet = np.array([[1000.0, -2.0, -8.0, -8.0, 1.0]])
    d = st.transit_depth(wet, lam)[0]
    i27, i22 = np.argmin(abs(lam - 2.7)), np.argmin(abs(lam - 2.2))
    assert d[i27] > d[i22]
    # doubling the temperature doubles the scale height: band contrast roughly doubles
    hot = wet.copy()
    hot[0, 0] = 2000.0
    d_hot = st.transit_depth(hot, lam)[0]
    ratio = (d_hot[i27] - d_hot[i22]) / (d[i27] - d[i22])
    assert 1.9 < ratio < 2.1


def test_spectral_transformer_gradient_checkpointing_same_grads():
    p = st.factory({"dim": 16, "heads": 2, "layers": 2, "samples": 64, "bins": 16})
    ds = p.make_datasets(None, seed=0)
    batch = torch.utils.data.default_collate([ds.train[i] for i in range(8)])
    grads = []
    for gc in (False, True):
        p.config["grad_checkpointing"] = gc
        torch.manual_seed(0)
        m = p.build(ds)
        p.loss(m, batch, ds).backward()
        grads.append([q.grad.clone() for q in m.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
