"""The selective SSM mixer (astrobio_cli.attention.ssm) against a float64 NumPy twin.

The twin below is written from the recurrence alone (explicit loops over batch and time):
    h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,   y_t = C_t . h_t + D x_t,   h_0 = 0.
The PyTorch scans (sequential reference, log-depth parallel) are checked against it (values;
gradients by gradcheck in float64 against finite differences), the
Triton kernel under TRITON_INTERPRET=1 in a subprocess (the flag must precede the kernel's
definition), then the layer (causality) and the spectral-transformer's `mixer: ssm`, and
`astrobio bench attention --mixer ssm` through the installed CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from astrobio_cli.attention.ssm import (
    SelectiveSSM,
    selective_scan,
    selective_scan_parallel,
    selective_scan_reference,
    triton_usable,
)
from astrobio_cli.hardware import need_module


def twin(x, dt, A, B, C, D) -> np.ndarray:
    x, dt, A, B, C, D = (np.asarray(t.detach(), dtype=np.float64) for t in (x, dt, A, B, C, D))
    nb, L, Dm = x.shape
    y = np.zeros((nb, L, Dm))
    for b in range(nb):
        h = np.zeros((Dm, A.shape[1]))
        for t in range(L):
            h = np.exp(dt[b, t][:, None] * A) * h + (dt[b, t] * x[b, t])[:, None] * B[b, t][None]
            y[b, t] = h @ C[b, t] + D * x[b, t]
    return y


def problem(nb=2, L=13, Dm=5, N=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(nb, L, Dm, generator=g)
    dt = torch.rand(nb, L, Dm, generator=g) * 0.5 + 0.01
    A = -(torch.rand(Dm, N, generator=g) * 2 + 0.1)
    B = torch.randn(nb, L, N, generator=g)
    C = torch.randn(nb, L, N, generator=g)
    D = torch.randn(Dm, generator=g)
    return [t.to(dtype) for t in (x, dt, A, B, C, D)]


SCANS = [selective_scan_reference, selective_scan_parallel]


@pytest.mark.parametrize("scan", SCANS, ids=["reference", "parallel"])
@pytest.mark.parametrize("shape", [(2, 13, 5, 3), (1, 1, 4, 16), (3, 40, 2, 1), (1, 64, 3, 2)])
def test_pytorch_scans_match_the_numpy_twin(scan, shape):
    args = problem(*shape)
    y = scan(*args)
    assert y.dtype == torch.float32 and y.shape == args[0].shape
    ref = twin(*args)
    assert np.abs(ref).max() > 0.5  # a real signal, not a vanishing one
    assert np.abs(y.double().numpy() - ref).max() < 2e-5 * max(1.0, np.abs(ref).max())
    # and in float64 to near machine precision
    y64 = scan(*[a.double() for a in args])
    assert np.abs(y64.numpy() - ref).max() < 1e-12


@pytest.mark.parametrize("scan", SCANS, ids=["reference", "parallel"])
def test_gradients_by_gradcheck_in_float64(scan):
    args = [a.double().requires_grad_(True) for a in problem(nb=2, L=5, Dm=2, N=2, seed=1)]
    assert torch.autograd.gradcheck(scan, args, eps=1e-6, atol=1e-7)


def test_auto_backend_and_bad_inputs():
    args = problem()
    assert torch.equal(selective_scan(*args), selective_scan_reference(*args))  # CPU: reference
    assert torch.equal(selective_scan(*args, backend="parallel"), selective_scan_parallel(*args))
    x, dt, A, B, C, D = args
    with pytest.raises(ValueError, match=r"B must have shape \(2, 13, 3\)"):
        selective_scan(x, dt, A, B[:, :5], C, D)
    with pytest.raises(ValueError, match=r"A must be \(Dm, N\) = \(5, N\)"):
        selective_scan(x, dt, A.T, B, C, D)
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(*args, backend="cuda-magic")
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
            selective_scan(*args, backend="triton")
        assert not triton_usable(torch.device("cpu"))[0]


TRITON_SCRIPT = """
import json, os, sys
os.environ["TRITON_INTERPRET"] = "1"
import torch
from astrobio_cli.attention.ssm import selective_scan, selective_scan_parallel
out = []
for case in json.loads(sys.argv[1]):
    g = torch.Generator().manual_seed(case["seed"])
    nb, L, Dm, N = case["shape"]
    dtype = getattr(torch, case["dtype"])
    x = torch.randn(nb, L, Dm, generator=g)
    dt = torch.rand(nb, L, Dm, generator=g) * 0.5 + 0.01
    A = -(torch.rand(Dm, N, generator=g) * 2 + 0.1)
    B = torch.randn(nb, L, N, generator=g)
    C = torch.randn(nb, L, N, generator=g)
    D = torch.randn(Dm, generator=g)
    args = [t.to(dtype).requires_grad_(True) for t in (x, dt, A, B, C, D)]
    y = selective_scan(*args, backend="triton")
    dy = torch.randn(y.shape, generator=g).to(dtype)
    grads = torch.autograd.grad(y, args, dy)
    ref = [t.detach().requires_grad_(True) for t in args]
    ref_grads = torch.autograd.grad(selective_scan_parallel(*ref), ref, dy)
    out.append({
        "inputs": [t.detach().double().tolist() for t in args],
        "y": y.detach().double().tolist(), "dtype": str(y.dtype),
        "grad_err": max((a - b).abs().max().item() for a, b in zip(grads, ref_grads)),
    })
print(json.dumps(out))
"""
TRITON_CASES = [
    dict(shape=[2, 37, 5, 3], dtype="float32", seed=0),  # L, Dm, N tails of every tile
    dict(shape=[1, 16, 40, 16], dtype="float32", seed=1),  # exactly one time chunk, 2 Dm blocks
    dict(shape=[1, 21, 3, 4], dtype="float16", seed=2),
]


@pytest.mark.skipif(not need_module("triton")[0], reason="triton is not installed")
def test_triton_scan_under_the_interpreter_matches_the_twin():
    proc = subprocess.run(
        [sys.executable, "-c", TRITON_SCRIPT, json.dumps(TRITON_CASES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for case, r in zip(TRITON_CASES, results, strict=True):
        ref = twin(*(torch.tensor(v) for v in r["inputs"]))
        y = np.asarray(r["y"])
        assert y.shape == tuple(case["shape"][:3])
        scale = max(1.0, np.abs(ref).max())
        tol = 2e-5 if case["dtype"] == "float32" else 2e-3  # fp16: the output is rounded
        assert np.abs(y - ref).max() < tol * scale, case
        assert r["dtype"] == f"torch.{case['dtype']}"
        # backward recomputes the parallel scan (gradchecked above): the same gradients
        assert r["grad_err"] < 1e-6 * scale, case


def test_layer_is_causal_and_differentiable():
    torch.manual_seed(0)
    layer = SelectiveSSM(8, d_state=4, d_conv=3)
    u = torch.randn(2, 11, 8, requires_grad=True)
    y = layer(u)
    assert y.shape == (2, 11, 8)
    u2 = u.detach().clone()
    u2[:, 6] += 1.0  # change token 6: outputs 0..5 stay, 6.. change
    y2 = layer(u2)
    assert torch.equal(y[:, :6].detach(), y2[:, :6].detach())
    assert (y[:, 6:] - y2[:, 6:]).abs().amax(-1).min() > 0
    y[:, -1].sum().backward()
    assert u.grad.abs().sum(-1).min() > 0  # the last token sees every earlier one
    # dt starts log-uniform in [1e-3, 0.1]; A = -1..-N per channel
    dt = torch.nn.functional.softplus(layer.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.99 and dt.max() <= 0.1 * 1.01
    assert torch.allclose(-torch.exp(layer.A_log[0]), -torch.arange(1.0, 5.0))
    with pytest.raises(ValueError, match=r"input must be \(B, L, 8\)"):
        layer(torch.randn(2, 11, 7))


def test_spectral_transformer_mixer_ssm():
    from astrobio_cli.errors import UsageError
    from astrobio_models import spectral_transformer as st

    plugin = st.factory({"mixer": "ssm", "dim": 16, "heads": 2, "layers": 1, "samples": 64,
                         "bins": 16})  # fmt: skip
    data = plugin.make_datasets(None, seed=0)
    model = plugin.build(data)
    assert isinstance(model.blocks[0], st.SSMBlock)
    assert not any(isinstance(m, st.Block) for m in model.modules())
    batch = {"x": data.context["x"][:4], "y": data.context["y"][:4]}
    loss = plugin.loss(model, batch, data)
    loss.backward()
    assert torch.isfinite(loss) and model.blocks[0].mixer.A_log.grad.abs().sum() > 0
    assert isinstance(st.factory({}).build(data).blocks[0], st.Block)  # default: attention
    with pytest.raises(ValueError, match="mixer 'mamba' is not 'attention' or 'ssm'"):
        st.factory({"mixer": "mamba"}).build(data)
    with pytest.raises(UsageError, match="option 'mixer'"):
        st.factory({"mixer": 3})


def test_bench_attention_mixer_ssm_cli(run_cli, tmp_path):
    out = tmp_path / "ssm.json"
    res = run_cli("bench", "attention", "--mixer", "ssm", "--device", "cpu", "--seq", "16,24",
                  "--heads", "2", "--head-dim", "8", "--repeats", "2", "--json", str(out),
                  env={"COLUMNS": "200"})  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["config"]["mixer"] == "ssm" and doc["config"]["inner"] == 32
    rows = {(r["seq"], r["backend"]): r for r in doc["results"]}
    for seq in (16, 24):
        for name in ("ssm-reference", "ssm-parallel"):
            r = rows[(seq, name)]
            assert r["status"] == "ran" and r["max_abs_err"] < 1e-5
            assert r["tokens_per_s"] == pytest.approx(seq / (r["ms_median"] / 1e3))
        assert rows[(seq, "ssm-triton")]["status"] == "skipped"
        assert rows[(seq, "attention")]["status"] == "ran"
    assert "ssm-reference" in res.stdout and "tokens/s" in res.stdout
    bad = run_cli("bench", "attention", "--mixer", "rnn")
    assert bad.returncode == 2 and "--mixer must be attention or ssm" in bad.stderr
