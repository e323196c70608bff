"""The resolved configuration of one run: defaults < model defaults < YAML file < flags.

The YAML file holds the same keys as the flags (underscores), plus a `model:` mapping of model
options::

    steps: 300
    batch_size: 8
    lr: 0.002
    optimizer: lion
    model:
      width: 16
      depth: 3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from astrobio_cli.errors import UsageError


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    data: str | None = None
    gpus: int | None = Field(None, ge=1)
    cpu: bool = False
    procs: int = Field(1, ge=1)
    steps: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    grad_checkpointing: bool = False
    compile: bool = False
    seed: int = 0
    resume: str | None = None
    out: str | None = None
    optimizer: Literal["adamw", "lion", "sgd"] = "adamw"
    scheduler: Literal["cosine", "onecycle", "cosine-restarts", "constant"] = "cosine"
    warmup: int = Field(0, ge=0)
    restarts: int = Field(2, ge=1, description="cycles for cosine-restarts")
    strategy: Literal["ddp", "fsdp"] = "ddp"
    quick_smoke: bool = False
    auto_batch: bool = False
    log_every: int = Field(10, ge=1)
    eval_every: int | None = Field(None, ge=1)
    checkpoint_every: int | None = Field(None, ge=1)
    keep_last: int = Field(3, ge=1)
    workers: int | None = Field(
        None, ge=0, description="DataLoader worker processes (None: the model's default)"
    )
    model_path: str | None = None
    model_options: dict[str, Any] = Field(default_factory=dict)


SMOKE_STEPS = 10


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise UsageError(f"config file {path} does not exist; pass an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(
            f"config file {path} must hold a mapping of options, got {type(data).__name__}"
        )
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    if "model" in data:
        if not isinstance(data["model"], dict):
            raise UsageError(f"config file {path}: 'model' must be a mapping of model options")
        data["model_options"] = data.pop("model")
    return data


def resolve_config(
    model: str,
    flags: dict[str, Any],
    *,
    model_defaults: dict[str, Any] | None = None,
    config_file: Path | None = None,
) -> TrainConfig:
    """Merge the layers and validate; a bad value is one UsageError naming the key."""
    layers: dict[str, Any] = {"model": model}
    layers.update(model_defaults or {})
    if config_file is not None:
        file_layer = load_yaml(config_file)
        opts = {**layers.get("model_options", {}), **file_layer.pop("model_options", {})}
        layers.update(file_layer)
        layers["model_options"] = opts
    layers.update({k: v for k, v in flags.items() if v is not None})
    try:
        cfg = TrainConfig.model_validate(layers)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                parts.append(f"unknown option '{key}' (from {config_file or 'the command line'})")
            else:
                parts.append(f"option '{key}' = {err.get('input')!r} is invalid: {err['msg']}")
        raise UsageError("; ".join(parts)) from None
    if cfg.steps is not None and cfg.epochs is not None and "steps" in flags and "epochs" in flags:
        raise UsageError("give --steps or --epochs, not both")
    if cfg.cpu and cfg.gpus:
        raise UsageError("give --cpu (with --procs N) or --gpus N, not both")
    if cfg.procs > 1 and not cfg.cpu:
        raise UsageError("--procs N runs N CPU processes: add --cpu (or use --gpus N on GPUs)")
    return cfg
