"""Training-loop overhead: samples/s of `astrobio train` vs a minimal hand-written PyTorch loop.

Both run in this process on the same model (built by the same plugin from the same seed), the
same data, batch size, optimizer (AdamW) and thread count. The minimal loop is what a user would
write by hand: draw a batch, forward, backward, clip, step. The astrobio loop adds Accelerate,
the deterministic batch order, the per-step loss check (one host sync), logging and the
learning-rate schedule; its samples/s excludes the final evaluation and checkpoint (it reports
training time only), and so does the minimal loop's (it has none).

    python benchmarks/train_overhead.py cube-unet --steps 60 --batch-size 8 --repeats 2

Prints one JSON object: best-of-`repeats` samples/s of each and their ratio (astrobio / minimal).
The runs alternate (minimal, astrobio, minimal, ...) so that a change in the machine's load hits
both.
"""

from __future__ import annotations

import argparse
import json
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
    t0 = time.perf_counter()
    for _ in range(steps):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    from astrobio_cli.plugins import resolve
    from astrobio_cli.settings import get_settings

    torch.set_num_threads(args.threads or get_settings().threads or torch.get_num_threads())
    spec = resolve("model", args.model)
    plugin = spec.factory({})
    datasets = plugin.make_datasets(Path(args.data) if args.data else None, seed=0)
    minimal, ours = [], []
    for _ in range(args.repeats):
        minimal.append(
            minimal_loop(plugin, datasets, steps=args.steps, batch=args.batch_size, lr=args.lr, seed=0)
        )
        ours.append(
            astrobio_loop(
                spec, model=args.model, steps=args.steps, batch=args.batch_size, lr=args.lr,
                seed=0, data=args.data,
            )
        )  # fmt: skip
    result = {
        "model": args.model,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "minimal_samples_per_s": max(minimal),
        "astrobio_samples_per_s": max(ours),
        "ratio": max(ours) / max(minimal),
        "all_minimal": minimal,
        "all_astrobio": ours,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
