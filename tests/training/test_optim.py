"""Lion against a float64 NumPy twin of the paper's update; schedules against their formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from astrobio_cli.training.optim import Lion, build_scheduler, lr_factor


def lion_numpy(p, grads, lr, b1, b2, wd):
    """Chen et al. 2023, Algorithm 2, in float64."""
    p = p.astype(np.float64).copy()
    m = np.zeros_like(p)
    for g in grads:
        c = b1 * m + (1 - b1) * g
        p = p - lr * (np.sign(c) + wd * p)
        m = b2 * m + (1 - b2) * g
    return p


def test_lion_matches_numpy_twin():
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(5, 3))
    grads = [rng.normal(size=(5, 3)) for _ in range(6)]
    param = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = Lion([param], lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
    for g in grads:
        param.grad = torch.tensor(g)
        opt.step()
    # torch applies decay as p*(1 - lr*wd) before the sign step: the same algebra as the twin.
    np.testing.assert_allclose(
        param.detach().numpy(), lion_numpy(p0, grads, 0.01, 0.9, 0.99, 0.1), rtol=1e-12
    )


def test_lion_rejects_bad_hyperparameters():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="lr"):
        Lion([p], lr=0)
    with pytest.raises(ValueError, match="betas"):
        Lion([p], betas=(1.0, 0.9))


def test_cosine_warmup_formula():
    total, warm = 100, 10
    assert lr_factor("cosine", 0, total, warm) == pytest.approx(0.1)
    assert lr_factor("cosine", 9, total, warm) == pytest.approx(1.0)
    mid = 10 + 45
    assert lr_factor("cosine", mid, total, warm) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))
    )
    assert lr_factor("cosine", 100, total, warm) == pytest.approx(0.1)


def test_restarts_and_onecycle_shapes():
    f = [lr_factor("cosine-restarts", s, 100, 0, restarts=2) for s in range(100)]
    assert f[0] == pytest.approx(1.0) and f[50] == pytest.approx(1.0)  # restart at half way
    assert f[49] < 0.2
    o = [lr_factor("onecycle", s, 100, 0) for s in range(101)]
    assert o[0] == pytest.approx(0.04) and max(o) == pytest.approx(1.0, abs=1e-3)
    assert o[-1] < 1e-3
    assert lr_factor("constant", 50, 100, 10) == 1.0


def test_scheduler_state_round_trip():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    s = build_scheduler("cosine", opt, total=20, warmup=3)
    for _ in range(7):
        opt.step()
        s.step()
    state = s.state_dict()
    opt2 = torch.optim.SGD([p], lr=1.0)
    s2 = build_scheduler("cosine", opt2, total=20, warmup=3)
    s2.load_state_dict(state)
    assert s2.get_last_lr() == s.get_last_lr()
    assert s.get_last_lr()[0] == pytest.approx(lr_factor("cosine", 7, 20, 3))
