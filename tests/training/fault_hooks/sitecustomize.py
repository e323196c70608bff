"""Fault injection and tracing for `astrobio train` subprocesses, from the tests' side.

A test puts this directory first on PYTHONPATH and sets ASTROBIO_FAULT_HOOKS to a JSON object;
Python imports this module at start-up in every process of the run (torchrun's workers too),
and it wraps functions of `astrobio_cli.training.loop` as soon as that module is imported. The
training loop itself carries no test code. Keys:

- ``nan_at_micro_batch`` N: the N-th micro-batch's loss becomes NaN (step N with --grad-accum 1);
- ``oom_above`` K: a micro-batch piece of more than K samples raises torch.OutOfMemoryError
  before its forward pass (as a real OOM would), so --auto-batch has to split it;
- ``trace`` DIR: each rank appends JSON lines to DIR/trace-rank{RANK}.jsonl: the indices of each
  micro-batch it trained on (``position``, ``indices``), and at each checkpoint save the step,
  whether this rank wrote it, and a sha256 of its parameters (``save``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys

TARGET = "astrobio_cli.training.loop"


def _install(loop) -> None:
    spec = json.loads(os.environ["ASTROBIO_FAULT_HOOKS"])
    nan_at = spec.get("nan_at_micro_batch")
    oom_above = spec.get("oom_above")
    trace = spec.get("trace")
    micro_step, feed_items, save = loop._micro_step, loop._Feed.items, loop._save
    calls = {"micro": 0}

    def _micro_step(acc, plugin, model, datasets, items, per_step, chunks):
        import torch

        if oom_above is not None and -(-len(items) // chunks) > int(oom_above):
            raise torch.OutOfMemoryError("injected by the test (oom_above)")
        out = micro_step(acc, plugin, model, datasets, items, per_step, chunks)
        calls["micro"] += 1
        if nan_at is not None and calls["micro"] == int(nan_at):
            out = out * float("nan")
        return out

    loop._micro_step = _micro_step
    if not trace:
        return
    path = os.path.join(trace, f"trace-rank{os.environ.get('RANK', '0')}.jsonl")
    os.makedirs(trace, exist_ok=True)

    def write(record) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def items(self, position):
        write({"position": position, "indices": self.order.indices(position)})
        return feed_items(self, position)

    def _save(acc, model, optimizer, scheduler, ckpt_dir, step, *rest):
        import hashlib

        wrote = save(acc, model, optimizer, scheduler, ckpt_dir, step, *rest)
        h = hashlib.sha256()
        for name, p in sorted(acc.unwrap_model(model).state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        write({"save": step, "wrote": bool(wrote), "param_sha256": h.hexdigest()})
        return wrote

    loop._Feed.items = items
    loop._save = _save


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of TARGET so the hooks go in after it runs."""

    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_hook(module):
            exec_module(module)
            _install(module)

        spec.loader.exec_module = exec_and_hook
        return spec


if os.environ.get("ASTROBIO_FAULT_HOOKS"):
    sys.meta_path.insert(0, _Finder())
