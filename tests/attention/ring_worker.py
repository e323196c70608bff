"""Worker for test_ring.py: N real processes over gloo run `attention(..., backend="ring")`.

    python tests/attention/ring_worker.py --procs N --out DIR

With N = 4 every case runs on a ring of 4 (the default group) and, in the same launch, on two
rings of 2 (groups [0, 1] and [2, 3]): one launch, one torch import per process, both sizes.
Every rank builds the same full problem from a seed, keeps its shard (shard_sequence), runs the
ring forward and backward, and the shards of out, dq, dk, dv are gathered back into full
sequences; the group's rank 0 saves inputs and results to DIR/<case>.pt. The float64 reference
is computed by the test, in its own process. Routing checks go to DIR/checks-rank<r>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import sys
from pathlib import Path

# (name, B, Hq, Hkv, T, D, causal, mask, layout, dtype, scale)
CASES = [
    ("full", 2, 2, 2, 32, 8, False, "none", "zigzag", "fp32", None),
    ("causal", 2, 2, 2, 32, 8, True, "none", "zigzag", "fp32", None),
    ("causal-gqa-padding", 1, 4, 2, 32, 16, True, "padding", "zigzag", "fp32", None),
    ("full-mqa-additive", 2, 4, 1, 32, 8, False, "additive", "zigzag", "fp32", 0.3),
    ("causal-contiguous", 1, 2, 2, 32, 8, True, "padding", "contiguous", "fp32", None),
    ("causal-empty-rows", 2, 2, 1, 32, 8, True, "leading-pad", "zigzag", "fp32", None),
    ("causal-gqa-fp64", 1, 4, 2, 64, 8, True, "padding", "zigzag", "fp64", None),
]


def make_problem(case, seed: int = 0):
    import torch

    name, B, Hq, Hkv, T, D, _, kind, _, dtype, _ = case
    dt = {"fp32": torch.float32, "fp64": torch.float64}[dtype]
    g = torch.Generator().manual_seed(seed + sum(map(ord, name)))
    q = torch.randn(B, Hq, T, D, generator=g).to(dt)
    k = torch.randn(B, Hkv, T, D, generator=g).to(dt)
    v = torch.randn(B, Hkv, T, D, generator=g).to(dt)
    do = torch.randn(B, Hq, T, D, generator=g).to(dt)
    mask = None
    if kind in ("padding", "additive"):
        keep = torch.rand(B, T, generator=g) > 0.3
        keep[:, 0] = True  # causal row 0 keeps its one key
        if kind == "additive":
            bias = torch.randn(B, T, generator=g)
            mask = bias.masked_fill(~keep, float("-inf"))
        else:
            mask = keep
    elif kind == "leading-pad":  # the first 5 keys are padding: causal rows 0-4 see nothing
        mask = torch.ones(B, T, dtype=torch.bool)
        mask[:, :5] = False
    return q, k, v, do, mask


def _gather(x, group, layout, world):
    import torch
    import torch.distributed as dist

    from astrobio_cli.attention.core import unshard_sequence

    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return unshard_sequence(parts, dim=2, layout=layout)


def run_case(case, group, out_dir: Path, tag: str = "") -> None:
    import torch
    import torch.distributed as dist

    from astrobio_cli.attention import attention
    from astrobio_cli.attention.core import context_parallel, shard_sequence

    name, *_, causal, _, layout, _, scale = case
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    q, k, v, do, mask = make_problem(case)
    ql, kl, vl, dol = (shard_sequence(t, rank, world, dim=2, layout=layout) for t in (q, k, v, do))
    ml = None
    if mask is not None:
        ml = shard_sequence(mask, rank, world, dim=1, layout=layout)
        ml = ml[:, None, None, :]  # (B, 1, 1, T/N): key padding, unambiguous
    for t in (ql, kl, vl):
        t.requires_grad_(True)
    with context_parallel(group, layout):
        out = attention(ql, kl, vl, mask=ml, causal=causal, scale=scale, backend="ring")
    out.backward(dol)
    full = {
        key: _gather(t.detach(), group, layout, world)
        for key, t in (("out", out), ("dq", ql.grad), ("dk", kl.grad), ("dv", vl.grad))
    }
    if rank == 0:
        torch.save(
            {"case": case, "world": world, **full},
            out_dir / f"{name}{tag}-n{world}.pt",
        )


def routing_checks(out_dir: Path) -> None:
    import torch
    import torch.distributed as dist

    from astrobio_cli.attention import attention, explain
    from astrobio_cli.attention.routing import BackendUnsupportedError

    rank = dist.get_rank()
    q = torch.randn(1, 2, 8, 8)
    checks = {"forced": explain(q, q, q, causal=True, backend="ring").chosen}
    checks["auto"] = explain(q, q, q).chosen  # ring is never auto's pick
    try:
        attention(q, q, q, mask=torch.ones(8, 8, dtype=torch.bool), backend="ring")
        checks["general_mask"] = "ran"
    except BackendUnsupportedError as exc:
        checks["general_mask"] = str(exc)
    try:
        attention(q[:, :, :7], q[:, :, :7], q[:, :, :7], causal=True, backend="ring")
        checks["odd_zigzag"] = "ran"
    except BackendUnsupportedError as exc:
        checks["odd_zigzag"] = str(exc)
    # gather_sequence: the full sequence on every rank; its gradient is summed over the ranks
    world = dist.get_world_size()
    x = torch.arange(16.0).view(1, 1, 16, 1)
    w = torch.linspace(-1, 1, 16).view(1, 1, 16, 1)
    from astrobio_cli.attention.core import gather_sequence, shard_sequence

    xl = shard_sequence(x, rank, world).requires_grad_(True)
    full = gather_sequence(xl)
    (full * w).sum().backward()
    checks["gather_equal"] = bool(torch.equal(full.detach(), x))
    checks["gather_grad_err"] = (
        (xl.grad - world * shard_sequence(w, rank, world)).abs().max().item()
    )
    (out_dir / f"checks-rank{rank}.json").write_text(json.dumps(checks), encoding="utf-8")


TRAIN = {"bins": 30, "patch": 2, "dim": 16, "heads": 2, "layers": 1, "batch": 3, "steps": 3}


def tiny_transformer(context_parallel: int):
    """A tiny spectral-transformer (15 tokens: padded to 16 when sharded), seeded weights."""
    import torch

    from astrobio_models.spectral_transformer import SpectralTransformer

    torch.manual_seed(0)
    c = TRAIN
    return SpectralTransformer(
        c["bins"], c["dim"], c["heads"], c["layers"], 5, 0.0, "eager",
        context_parallel > 1, torch.linspace(-1, 1, c["bins"]), c["patch"], "mean", 1, 0,
        context_parallel=context_parallel,
    )  # fmt: skip


def train_data(world: int):
    """Every step's global batch (world * batch spectra): rank r trains on rows r*b:(r+1)*b."""
    import torch

    g = torch.Generator().manual_seed(7)
    n = world * TRAIN["batch"]
    return [
        (torch.randn(n, TRAIN["bins"], generator=g), torch.randn(n, 5, generator=g))
        for _ in range(TRAIN["steps"])
    ]


def train_check(out_dir: Path) -> None:
    """Context-parallel training (ring attention inside DDP, gradient checkpointing on)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world = dist.get_rank(), dist.get_world_size()
    model = DistributedDataParallel(tiny_transformer(world))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    b, losses = TRAIN["batch"], []
    for x, y in train_data(world):
        mine = slice(rank * b, (rank + 1) * b)
        loss = torch.mean((model(x[mine]) - y[mine]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
    if rank == 0:
        params = torch.cat([p.detach().flatten() for p in model.module.parameters()])
        torch.save({"losses": losses, "params": params}, out_dir / f"train-n{world}.pt")


def bench_ranks(rank: int, port: int, out_dir: Path) -> None:
    """Ranks 0 and 1 run the benchmark's per-rank code (`astrobio bench attention --procs 2`),
    in a fresh group of 2, on a tiny causal GQA problem, fwd+bwd; results to bench/rank<r>.json."""
    from astrobio_cli.attention.bench import BenchConfig, _ring_rank

    cfg = BenchConfig(seqs=[64], heads=2, kv_heads=1, head_dim=8, causal=True, repeats=1,
                      mode="fwd+bwd", backends=["ring"], procs=2, device="cpu")  # fmt: skip
    cfg_dict = {k: v for k, v in cfg.__dict__.items() if k != "extra"}
    (out_dir / "bench").mkdir(exist_ok=True)
    _ring_rank(rank, cfg_dict, "cpu", 64, port, str(out_dir / "bench"))


def worker(rank: int, world: int, port: int, out_dir: str, bench_port: int = 0) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank))
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    out = Path(out_dir)
    try:
        for case in CASES:
            run_case(case, None, out)  # the default group: a ring of `world` processes
        if world == 4:
            # Two rings of two processes at once, in groups [0, 1] and [2, 3]: the ring's
            # neighbours are the group's ranks mapped to global ranks (2 <-> 3 here).
            groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]
            for case in CASES:
                run_case(case, groups[rank // 2], out, tag=f"-group{rank // 2}")
        routing_checks(out)
        train_check(out)
    finally:
        dist.destroy_process_group()
    if bench_port and rank < 2:
        bench_ranks(rank, bench_port, out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    # Imported once, before the fork, so the children share them: torch, the model, the
    # plugin host (no availability check runs here: that is per process, after WORLD_SIZE).
    import torch.multiprocessing as mp
    import torch.nn.parallel  # noqa: F401

    import astrobio_attention.ring  # noqa: F401
    import astrobio_models.spectral_transformer  # noqa: F401
    from astrobio_cli.attention import core, reference, routing  # noqa: F401
    from astrobio_cli.plugins import get_host

    get_host()

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    # fork, not spawn: no torch import per child (the parent has run no torch op, so no
    # thread pool is forked); a failing rank raises here with its traceback.
    run_args = (args.procs, ports[0], args.out, ports[1])
    mp.start_processes(worker, args=run_args, nprocs=args.procs, start_method="fork")
    return 0


if __name__ == "__main__":
    sys.exit(main())
