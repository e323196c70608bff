"""Training-loop overhead: samples/s of `astrobio train` vs a minimal hand-written PyTorch loop.

Both run in this process on the same model (built by the same plugin from the same seed), the
same data, batch size, optimizer (AdamW) and thread count. The minimal loop is what a user would
write by hand: draw a batch, forward, backward, clip, step (timed after 3 warmup steps). The astrobio loop adds Accelerate,
the deterministic batch order, the per-step loss check (one host sync), logging and the
learning-rate schedule; its samples/s excludes the final evaluation and checkpoint (it reports
training time only), and so does the minimal loop's (it has none).

    astrobio bench train cube-unet --steps 60 --batch-size 8 --repeats 2
    python benchmarks/train_overhead.py cube-unet --steps 60 --batch-size 8 --repeats 2

Returns best-of-`repeats` samples/s of each and their ratio (astrobio / minimal). The runs
alternate (minimal, astrobio, minimal, ...) so that a change in the machine's load hits both.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch


def minimal_loop(plugin, datasets, *, steps: int, batch: int, lr: float, seed: int) -> float:
    torch.manual_seed(seed)
    model = plugin.build(datasets)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    collate = datasets.collate or torch.utils.data.default_collate
    n = len(datasets.train)
    g = torch.Generator().manual_seed(seed)
    # Untimed warmup steps (first-call allocations and lazy initialisation): this favours the
    # minimal loop, whose timing then starts warm, so the ratio is conservative.
    t0 = 0.0
    for step in range(steps + 3):
        if step == 3:
            t0 = time.perf_counter()
        idx = torch.randint(0, n, (batch,), generator=g).tolist()
        b = collate([datasets.train[i] for i in idx])
        loss = plugin.loss(model, b, datasets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch / (time.perf_counter() - t0)


def astrobio_loop(spec, *, model: str, steps: int, batch: int, lr: float, seed: int, data) -> float:
    from astrobio_cli.training.config import resolve_config
    from astrobio_cli.training.loop import make_plugin, train

    flags = {
        "cpu": True,
        "steps": steps,
        "batch_size": batch,
        "lr": lr,
        "seed": seed,
        "warmup": 0,
        "checkpoint_every": steps,
        "eval_every": steps,
        "log_every": 10,
        "data": data,
    }
    cfg = resolve_config(model, flags)
    plugin = make_plugin(spec, cfg)
    with tempfile.TemporaryDirectory() as d:
        return train(cfg, plugin, Path(d) / "run").samples_per_s


def compare(
    model: str,
    *,
    steps: int = 60,
    batch_size: int = 8,
    lr: float = 1e-3,
    repeats: int = 2,
    data: str | None = None,
) -> dict:
    from astrobio_cli.plugins import resolve
    from astrobio_cli.settings import get_settings

    torch.set_num_threads(get_settings().threads or torch.get_num_threads())
    spec = resolve("model", model)
    plugin = spec.factory({})
    datasets = plugin.make_datasets(Path(data) if data else None, seed=0)
    minimal, ours = [], []
    for _ in range(repeats):
        minimal.append(minimal_loop(plugin, datasets, steps=steps, batch=batch_size, lr=lr, seed=0))
        ours.append(
            astrobio_loop(
                spec, model=model, steps=steps, batch=batch_size, lr=lr, seed=0, data=data
            )
        )
    return {
        "model": model,
        "steps": steps,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "minimal_samples_per_s": max(minimal),
        "astrobio_samples_per_s": max(ours),
        "ratio": max(ours) / max(minimal),
        "all_minimal": minimal,
        "all_astrobio": ours,
    }
