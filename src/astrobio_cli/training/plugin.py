"""The model plugin interface: what `ModelSpec.factory(config)` returns.

A model plugin registers a :class:`astrobio_cli.specs.ModelSpec` whose ``factory(config)`` takes
a plain dict of model options (from ``--config FILE.yaml``'s ``model:`` section; unknown keys are
an error) and returns an object with the attributes below. The training loop, `astrobio eval`
and the tests use nothing else, so a third-party model only has to provide these.

This module imports no torch: it only documents the contract (and checks it in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass
class Datasets:
    """What `make_datasets` returns.

    train, val: map-style datasets (``len`` and ``ds[i]``); items are whatever `loss` and
        `collate` expect. The loop shards `train` by rank and shuffles it with the run's seed.
    provenance: plain data for the run card (source path, generator and seed, sizes, ...).
    collate: turns a list of items into a batch (default: ``torch.utils.data.default_collate``).
    context: anything the model needs besides batches (e.g. the full training graph).
    seed: the run seed `make_datasets` was called with; stochastic baselines (boosted trees,
        random negatives, spectral embeddings) draw from it, so `astrobio eval` over runs of
        several seeds reports their spread too.
    """

    train: Any
    val: Any
    provenance: dict[str, Any] = field(default_factory=dict)
    collate: Any = None
    context: Any = None
    seed: int = 0


@runtime_checkable
class ModelPlugin(Protocol):
    """The object `ModelSpec.factory(config)` returns.

    name: the registered name.
    data_kind: the kind of data it trains on (one of the spec's ``data_kinds``).
    config: the resolved model options (a dict of plain values; saved in the run's config YAML).
    train_defaults: defaults for the run (``lr``, ``batch_size``, ``steps``, ``warmup``,
        ``workers``: DataLoader worker processes that read and transform ``train`` items, for
        data read from files; 0 or absent: read in the training process) that the model knows
        best; YAML and flags override them.
    smoke_config: model options for `--quick-smoke` (tiny sizes: 10 steps in seconds on a CPU).
    primary_metric: the key of `evaluate`'s result that `astrobio eval` compares with the
        baselines, and whether lower is better (e.g. ``("rmse", "lower")``).

    Options every built-in model accepts: ``grad_checkpointing`` (bool; the loop sets it for
    ``--grad-checkpointing``). Randomness: use torch's global RNG (the loop seeds it per rank
    and saves it in checkpoints), never an unsaved generator.
    """

    name: str
    data_kind: str
    config: dict[str, Any]
    train_defaults: dict[str, Any]
    smoke_config: dict[str, Any]
    primary_metric: tuple[str, str]

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False) -> Datasets:
        """Load (or generate, when `data` is None) the data; split train/val deterministically.

        A plugin may also take a keyword ``provenance``: `eval`, `serve` and `predict` then pass
        the `Datasets.provenance` the checkpoint carries, and the plugin reuses its
        normalisation statistics and split instead of recomputing them from the data."""
        ...

    def build(self, datasets: Datasets) -> Any:
        """A fresh ``torch.nn.Module`` (shapes may depend on the data, e.g. channel counts)."""
        ...

    def loss(self, model: Any, batch: Any, datasets: Datasets) -> Any:
        """The scalar training loss for one batch (a 0-d tensor; the loop calls backward on it)."""
        ...

    def evaluate(self, model: Any, datasets: Datasets) -> dict[str, float]:
        """Held-out metrics on `datasets.val` (model in eval mode, no grad)."""
        ...

    def baseline(self, datasets: Datasets) -> dict[str, dict[str, float]]:
        """The strongest cheap baselines, fitted on `datasets.train` only and scored like
        `evaluate` on `datasets.val`: ``{"climatology": {"rmse": ...}, "ridge": {...}}``.
        Randomised ones (boosted trees, ...) draw from ``datasets.seed``."""
        ...


class OptionalModelPlugin(Protocol):
    """Optional parts of a model plugin: the core calls each only when the plugin has it, and
    says plainly when a command needs one the plugin lacks.

    plot(model, datasets, path): draw the held-out evaluation as a PNG at `path` (predicted vs
        true, calibration, ROC, ... as fits the model); `astrobio eval MODEL --plot PNG` calls
        it (for the first run when several are given).
    serve_adapter(model, datasets) -> adapter: what `astrobio serve` answers requests with; the
        adapter contract (``input_model``, ``predict(items)``, ``describe()``, optional
        ``generate(prompt, max_new_tokens, temperature)``) is in `astrobio_cli.serve`, whose
        `CausalLMAdapter` serves any Hugging Face style causal language model.
    tokenizer: a text model's tokenizer (``encode``, ``decode``), for serving and generation.
    predict_file(model, datasets, path) -> dict: the model on one input file (`astrobio
        predict`), e.g. spectral-transformer on a spectrum `astrobio fetch mast-jwst-spectrum`
        wrote, with the uncertainty the file's own errors carry.
    held_out_predictions(model, datasets, limit) -> list of dict: the model's predictions for
        the first `limit` held-out samples, computed the way `evaluate` computes them, each as
        ``{"sample": id, "input": ..., "prediction": ...}`` where ``input`` is a request body
        instance that `astrobio serve` accepts for that sample and ``prediction`` has the shape
        of the served answer (`astrobio eval --predictions FILE` writes them as JSON lines; a
        served prediction can be checked against them).
    export(model, datasets, out_dir): write the trained model in its own ecosystem's format
        into the (empty, temporary) directory `out_dir`; training calls it once at the end and
        renames the directory to `<run>/export` (llm-lora: a PEFT adapter directory that
        `peft.PeftModel.from_pretrained` / `AutoPeftModelForCausalLM` load).

    Attention backends have their own optional attribute, ``supports_dropout`` (hookspecs.py);
    any spec may carry ``extras["smoke_checks"]`` (`astrobio_cli.smoke`).
    """

    def plot(self, model: Any, datasets: Datasets, path: Path) -> None: ...

    def serve_adapter(self, model: Any, datasets: Datasets) -> Any: ...


REQUIRED = ("name", "data_kind", "config", "train_defaults", "smoke_config", "primary_metric")
METHODS = ("make_datasets", "build", "loss", "evaluate", "baseline")
OPTIONAL = (
    "plot",
    "serve_adapter",
    "tokenizer",
    "predict_file",
    "held_out_predictions",
    "export",
)


def check_plugin(obj: Any) -> list[str]:
    """What `obj` lacks of the interface (empty when complete)."""
    missing = [a for a in REQUIRED if not hasattr(obj, a)]
    missing += [m for m in METHODS if not callable(getattr(obj, m, None))]
    return missing
