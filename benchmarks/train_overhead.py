"""Training-loop overhead: samples/s of `astrobio train` vs a minimal hand-written PyTorch loop.

The two loops live in `astrobio_cli/training/bench.py` (`minimal_loop` is the hand-written
one: draw a batch, forward, backward, clip, step); this script and `astrobio bench train` run
them alternately in one process on the same model, data, batch and optimizer.

    ASTROBIO_THREADS=1 python benchmarks/train_overhead.py cube-unet --steps 60 --batch-size 8
"""

from __future__ import annotations

import argparse
import json

from astrobio_cli.training.bench import compare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    result = compare(
        args.model,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        repeats=args.repeats,
        data=args.data,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
