"""`astrobio eval`: a checkpoint's held-out metrics beside simple baselines on the same split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from astrobio_cli.errors import UsageError
from astrobio_cli.training import checkpoint as ckpt


def evaluate_checkpoint(
    spec: Any, checkpoint: Path, *, data: str | None = None, plot: Path | None = None
) -> dict[str, Any]:
    """Rebuild the model from the checkpoint's options, load its weights (safetensors only) and
    score it and the plugin's baselines on the held-out split. Returns plain data."""
    path = ckpt.resolve_checkpoint(Path(checkpoint))
    meta = ckpt.load_meta(path)
    if meta.get("model") != spec.name:
        raise UsageError(
            f"checkpoint {path} holds a '{meta.get('model')}' model, not '{spec.name}'; "
            f"run `astrobio eval {meta.get('model')} --checkpoint {checkpoint}`"
        )
    plugin = spec.factory(meta.get("model_options") or {})
    data = data if data is not None else meta.get("data")
    datasets = plugin.make_datasets(Path(data) if data else None, seed=meta.get("seed", 0))
    model = plugin.build(datasets)
    missing, unexpected = model.load_state_dict(ckpt.load_weights(path), strict=False)
    if missing or unexpected:
        raise UsageError(
            f"checkpoint {path} does not fit the model built from its options "
            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        )
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # evaluation randomness (e.g. negative edges) is fixed
        metrics = {k: float(v) for k, v in plugin.evaluate(model, datasets).items()}
        baselines = {
            name: {k: float(v) for k, v in vals.items()}
            for name, vals in plugin.baseline(datasets).items()
        }
    key, better = plugin.primary_metric
    vs: dict[str, float] = {}
    for name, vals in baselines.items():
        if vals.get(key):
            rel = (vals[key] - metrics[key]) / abs(vals[key])
            vs[name] = rel if better == "lower" else -rel
    if plot is not None:
        if not hasattr(plugin, "plot"):
            raise UsageError(f"model '{spec.name}' draws no figure; leave out --plot")
        plot.parent.mkdir(parents=True, exist_ok=True)
        plugin.plot(model, datasets, plot)
    return {
        "model_name": spec.name,
        "checkpoint": str(path),
        "step": meta.get("step"),
        "split": "held-out split",
        "samples": len(datasets.val),
        "primary_metric": [key, better],
        "model": metrics,
        "baselines": baselines,
        "vs_baseline": vs,
        "data": datasets.provenance,
    }
