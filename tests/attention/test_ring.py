"""The `ring` backend (context parallelism) in real multi-process gloo runs, against float64.

One launch of tests/attention/ring_worker.py (4 forked processes over gloo on 127.0.0.1) runs
every case on a ring of 4 (the default group) and on two rings of 2 (groups [0, 1] and [2, 3]);
the gathered outputs and gradients dQ, dK, dV are compared here with `reference_attention` on
the full sequence, in float64, in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from astrobio_cli.attention import attention, explain, reference_attention
from astrobio_cli.attention.core import (
    context_parallel,
    shard_sequence,
    unshard_sequence,
)
from astrobio_cli.attention.routing import BackendUnsupportedError

from .conftest import max_err
from .ring_worker import CASES, TRAIN, make_problem, tiny_transformer, train_data

WORKER = Path(__file__).with_name("ring_worker.py")
# The budgets test_backends.py gives every backend: outputs, and 4x that for gradients.
TOL = {"fp32": 5e-5, "fp64": 1e-10}
RUNS = ["n4", "n2-group0", "n2-group1"]


@pytest.fixture(scope="module")
def ring_results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ring")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, str(WORKER), "--procs", "4", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert res.returncode == 0, f"ring worker failed:\n{res.stdout}\n{res.stderr[-4000:]}"
    return out


def _file(out: Path, name: str, run: str) -> Path:
    if run == "n4":
        return out / f"{name}-n4.pt"
    return out / f"{name}-{run.split('-')[1]}-n2.pt"


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_ring_matches_float64_reference(ring_results, case, run):
    got = torch.load(_file(ring_results, case[0], run), weights_only=False)
    assert got["world"] == (4 if run == "n4" else 2)
    _, B, Hq, Hkv, T, D, causal, _, _, dtype, scale = case
    q, k, v, do, mask = make_problem(case)
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    m = None if mask is None else mask[:, None, None, :]
    ref = reference_attention(q64, k64, v64, mask=m, causal=causal, scale=scale)
    ref.backward(do.double())
    assert got["out"].shape == (B, Hq, T, D) and got["out"].dtype == q.dtype
    assert got["dk"].shape == (B, Hkv, T, D)
    tol = TOL[dtype]
    assert max_err(got["out"], ref) < tol, "output"
    for name, want in (("dq", q64.grad), ("dk", k64.grad), ("dv", v64.grad)):
        assert torch.isfinite(got[name]).all(), f"{name} has NaN/inf"
        assert max_err(got[name], want) < 4 * tol, name
    if case[0] == "causal-empty-rows":  # keys 0-4 are padding: causal rows 0-4 see nothing
        assert torch.equal(got["out"][:, :, :5], torch.zeros(B, Hq, 5, D))
        assert torch.equal(got["dq"][:, :, :5], torch.zeros(B, Hq, 5, D))


def test_routing_inside_the_process_group(ring_results):
    for rank in range(4):
        checks = json.loads((ring_results / f"checks-rank{rank}.json").read_text())
        assert checks["forced"] == "ring"
        assert checks["auto"] != "ring"  # never auto's pick: name it
        assert "key-padding masks only" in checks["general_mask"]
        assert "shard length 7 must be even" in checks["odd_zigzag"]
        assert checks["gather_equal"] and checks["gather_grad_err"] < 1e-6


def test_single_process_declines_with_the_reason():
    q = torch.randn(1, 2, 8, 8)
    exp = explain(q, q, q, backend="ring")
    ring = next(c for c in exp.candidates if c.name == "ring")
    assert exp.chosen is None and not ring.available
    assert "single process" in ring.reason
    with pytest.raises(BackendUnsupportedError, match="single process"):
        attention(q, q, q, backend="ring")


def test_shard_and_unshard_in_zigzag_order():
    x = torch.arange(16).view(1, 1, 16, 1)
    shards = [shard_sequence(x, r, 4, dim=2) for r in range(4)]
    assert shards[0].flatten().tolist() == [0, 1, 14, 15]  # chunks 0 and 7 of 8
    assert shards[3].flatten().tolist() == [6, 7, 8, 9]  # chunks 3 and 4
    assert torch.equal(unshard_sequence(shards, dim=2), x)
    pieces = [shard_sequence(x, r, 4, dim=2, layout="contiguous") for r in range(4)]
    assert pieces[1].flatten().tolist() == [4, 5, 6, 7]
    assert torch.equal(unshard_sequence(pieces, dim=2, layout="contiguous"), x)
    with pytest.raises(ValueError, match="cannot be cut into 8 equal chunks"):
        shard_sequence(torch.zeros(1, 1, 12, 1), 0, 4)
    with pytest.raises(ValueError, match="layout must be one of"), context_parallel(layout="x"):
        pass


def test_zigzag_balances_causal_work_and_contiguous_does_not():
    from astrobio_attention.ring import _pairs

    def work(rank, world, layout):  # score elements one rank computes over the whole ring
        T = 8
        total = 0
        for src in range(world):
            for qs, ks, diag in _pairs(rank, src, world, T, layout, True):
                n = (qs.stop - qs.start) * (ks.stop - ks.start)
                total += (n + (qs.stop - qs.start)) // 2 if diag else n
        return total

    zig = [work(r, 4, "zigzag") for r in range(4)]
    cont = [work(r, 4, "contiguous") for r in range(4)]
    assert len(set(zig)) == 1
    assert cont[0] < cont[-1] and sum(cont) == sum(zig)


def test_context_parallel_training_equals_one_process(ring_results):
    # 4 ranks, each on its own 3 spectra, tokens split 4 ways with ring attention, gradients
    # averaged by DDP: the same losses and weights as one process on all 12 spectra, unsharded.
    got = torch.load(ring_results / "train-n4.pt", weights_only=False)
    model = tiny_transformer(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for x, y in train_data(4):
        loss = torch.mean((model(x) - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert len(got["losses"]) == TRAIN["steps"]
    assert max(abs(a - b) for a, b in zip(got["losses"], losses, strict=True)) < 1e-5
    assert losses[-1] != losses[0]  # it trained
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert max_err(got["params"], params) < 1e-5


def test_context_parallel_needs_the_process_count():
    from astrobio_cli.errors import UsageError

    model = tiny_transformer(2)
    with pytest.raises(UsageError, match="--procs 2"):
        model(torch.zeros(2, TRAIN["bins"]))
    model.eval()  # evaluation runs unsharded on one process
    with torch.no_grad():
        assert model(torch.zeros(2, TRAIN["bins"])).shape == (2, 5)


def test_bench_ring_ranks_and_row(ring_results):
    # The per-rank code of `astrobio bench attention --backends ring --procs 2` ran in the
    # worker (ranks 0 and 1, fwd+bwd): timings, this process's peak, the gathered output's error.
    ranks = [json.loads((ring_results / "bench" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["max_abs_err"] < 5e-5 and ranks[1]["max_abs_err"] is None
    for r in ranks:
        assert r["ms_min"] <= r["ms_median"] and r["peak_mem_mb"] >= 0
    from astrobio_cli.attention.bench import BenchConfig, _ring_row

    cfg = BenchConfig(seqs=[64], backends=["ring"], device="cpu")  # no --procs: skipped, why
    row = _ring_row(cfg, "cpu", 64, lambda msg: None)
    assert row["status"] == "skipped" and "--procs N" in row["reason"]
