"""`astrobio eval`: checkpoints' held-out metrics beside the strongest cheap baselines on the
same split, as mean ± std over runs of several seeds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from astrobio_cli.errors import UsageError
from astrobio_cli.training import checkpoint as ckpt


def load_model(spec: Any, checkpoint: Path, *, data: str | None = None, verb: str = "eval"):
    """(checkpoint path, meta, plugin, datasets, model in eval mode) rebuilt from the
    checkpoint's own options and weights (safetensors only)."""
    path = ckpt.resolve_checkpoint(Path(checkpoint))
    meta = ckpt.load_meta(path)
    ckpt.verify_checkpoint(path, (ckpt.WEIGHTS,))  # sha256 from meta.json, before any work
    if meta.get("model") != spec.name:
        raise UsageError(
            f"checkpoint {path} holds a '{meta.get('model')}' model, not '{spec.name}'; "
            f"run `astrobio {verb} {meta.get('model')} --checkpoint {checkpoint}`"
        )
    plugin = spec.factory(meta.get("model_options") or {})
    datasets = rebuild_datasets(plugin, meta, data)
    model = plugin.build(datasets)
    weights = ckpt.load_weights(path, verify=False)  # verified above
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise UsageError(
            f"checkpoint {path} does not fit the model built from its options "
            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        )
    model.eval()
    return path, meta, plugin, datasets, model


def rebuild_datasets(plugin: Any, meta: dict[str, Any], data: str | None = None) -> Any:
    """The run's datasets for a checkpoint: its data (or `data`), its seed, and - to a plugin
    whose `make_datasets` takes `provenance` - the data provenance the checkpoint carries, so
    the normalisation statistics and the split are the run's own, not recomputed from the
    training data."""
    import inspect

    data = data if data is not None else meta.get("data")
    seed = int(meta.get("seed", 0) or 0)
    kwargs: dict[str, Any] = {}
    prov = meta.get("data_provenance")
    if prov and "provenance" in inspect.signature(plugin.make_datasets).parameters:
        kwargs["provenance"] = prov
    datasets = plugin.make_datasets(Path(data) if data else None, seed=seed, **kwargs)
    datasets.seed = seed  # randomised baselines draw from the run's seed
    return datasets


def evaluate_checkpoint(
    spec: Any,
    checkpoint: Path,
    *,
    data: str | None = None,
    plot: Path | None = None,
    predictions: Path | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Rebuild the model from the checkpoint's options, load its weights (safetensors only) and
    score it and the plugin's baselines on the held-out split. Returns plain data. With
    `predictions`, the plugin's per-sample held-out predictions (the first `limit`) are written
    there as JSON lines."""
    path, meta, plugin, datasets, model = load_model(spec, checkpoint, data=data)
    if predictions is not None:
        write_predictions(spec.name, plugin, model, datasets, predictions, limit)
    seed = datasets.seed
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # evaluation randomness (e.g. negative edges) is fixed
        metrics = {k: float(v) for k, v in plugin.evaluate(model, datasets).items()}
        baselines = {
            name: {k: float(v) for k, v in vals.items()}
            for name, vals in plugin.baseline(datasets).items()
        }
    key, better = plugin.primary_metric
    if plot is not None:
        if not callable(getattr(plugin, "plot", None)):
            raise UsageError(f"model '{spec.name}' draws no figure; leave out --plot")
        plot.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            plugin.plot(model, datasets, plot)
    return {
        "model_name": spec.name,
        "checkpoint": str(path),
        "seed": seed,
        "step": meta.get("step"),
        "split": "held-out split",
        "samples": len(datasets.val),
        "primary_metric": [key, better],
        "model": metrics,
        "baselines": baselines,
        "vs_baseline": relative_gains(metrics, baselines, key, better),
        "data": datasets.provenance,
    }


def write_predictions(name, plugin, model, datasets, path: Path, limit: int | None) -> int:
    """`held_out_predictions` as JSON lines at `path` (a temporary name, renamed into place)."""
    import json
    import os

    fn = getattr(plugin, "held_out_predictions", None)
    if not callable(fn):
        raise UsageError(
            f"model '{name}' writes no per-sample predictions; leave out --predictions"
        )
    with torch.no_grad():
        records = fn(model, datasets, limit)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(records)


def relative_gains(
    model: dict[str, float], baselines: dict[str, dict[str, float]], key: str, better: str
) -> dict[str, float]:
    """Per baseline, how much better the model's `key` is, as a fraction of the baseline's value
    (positive: the model wins; negative: it loses)."""
    out: dict[str, float] = {}
    for name, vals in baselines.items():
        b, m = vals.get(key), model.get(key)
        if b is None or m is None or not b or not math.isfinite(b) or not math.isfinite(m):
            continue
        rel = (b - m) / abs(b)
        out[name] = rel if better == "lower" else -rel
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value) in float64."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2 or min(values) == max(values):
        return (values[0] if n else mean), 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def _aggregate(dicts: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    keys = [k for k in dicts[0] if all(k in d for d in dicts)]
    mean, std = {}, {}
    for k in keys:
        mean[k], std[k] = mean_std([d[k] for d in dicts])
    return mean, std


def evaluate_checkpoints(
    spec: Any,
    checkpoints: list[Path],
    *,
    data: str | None = None,
    plot: Path | None = None,
    predictions: Path | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """`evaluate_checkpoint` for each run (typically the same model trained with different
    seeds), then every metric of the model and of each baseline as mean ± std over the runs.
    `vs_baseline` compares the means. The figure (`plot`) and the per-sample `predictions` are
    those of the first run."""
    if not checkpoints:
        raise UsageError("give at least one --checkpoint")
    runs = [
        evaluate_checkpoint(
            spec,
            c,
            data=data,
            plot=plot if i == 0 else None,
            predictions=predictions if i == 0 else None,
            limit=limit,
        )
        for i, c in enumerate(checkpoints)
    ]
    seeds = [r["seed"] for r in runs]
    if len(runs) > 1 and len(set(seeds)) < len(seeds):
        raise UsageError(
            f"the checkpoints were trained with the same seed ({', '.join(map(str, seeds))}); "
            "mean ± std over seeds needs runs of different --seed"
        )
    key, better = runs[0]["primary_metric"]
    model_mean, model_std = _aggregate([r["model"] for r in runs])
    names = [n for n in runs[0]["baselines"] if all(n in r["baselines"] for r in runs)]
    base_mean: dict[str, dict[str, float]] = {}
    base_std: dict[str, dict[str, float]] = {}
    for n in names:
        base_mean[n], base_std[n] = _aggregate([r["baselines"][n] for r in runs])
    losses = [n for n, rel in relative_gains(model_mean, base_mean, key, better).items() if rel < 0]
    return {
        "model_name": spec.name,
        "checkpoint": runs[0]["checkpoint"] if len(runs) == 1 else [r["checkpoint"] for r in runs],
        "runs": len(runs),
        "seeds": seeds,
        "step": runs[0]["step"],
        "split": runs[0]["split"],
        "samples": runs[0]["samples"],
        "primary_metric": [key, better],
        "model": model_mean,
        "model_std": model_std,
        "baselines": base_mean,
        "baselines_std": base_std,
        "vs_baseline": relative_gains(model_mean, base_mean, key, better),
        "loses_to": losses,
        "data": runs[0]["data"],
        "per_run": [
            {k: r[k] for k in ("checkpoint", "seed", "step", "model", "baselines")} for r in runs
        ],
    }
