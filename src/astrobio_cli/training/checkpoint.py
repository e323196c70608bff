"""Checkpoints: a directory `step-000050/` with

- `model.safetensors`  the weights (safetensors: loading runs no code);
- `state.pt`           optimizer, scheduler, every rank's RNG states and the data position,
                       loaded with ``torch.load(weights_only=True)`` (tensors and plain values only);
- `meta.json`          step, model name, metrics, for humans and `astrobio eval`.

It is written under a temporary name in the same directory and renamed into place, so a
directory named `step-*` is always complete: a run killed mid-write leaves only a `.tmp-*`
directory, which the next save removes. Only the main process writes.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from astrobio_cli.errors import UserError

STEP_RE = re.compile(r"^step-(\d{6,})$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := STEP_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    """This process's RNG states, as tensors and plain values (weights_only-loadable)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["key"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    random.setstate(_plain_to_py_state(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(st: tuple) -> list:
    version, internal, gauss = st
    return [version, list(internal), gauss]


def _plain_to_py_state(st: list) -> tuple:
    return (st[0], tuple(st[1]), st[2])


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    train_state: dict[str, Any],
    meta: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write one checkpoint atomically and prune to the newest `keep_last`. Returns its path."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for stale in ckpt_dir.glob(".tmp-*"):  # left by a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    final = ckpt_dir / checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=ckpt_dir))
    # safetensors refuses shared or non-contiguous storage: save plain contiguous copies.
    weights = {k: v.detach().to("cpu").contiguous().clone() for k, v in model_state.items()}
    save_file(weights, str(tmp / "model.safetensors"), metadata={"step": str(step)})
    torch.save(train_state, tmp / "state.pt")
    (tmp / "meta.json").write_text(
        json.dumps({"step": step, **meta}, indent=2, default=str), encoding="utf-8"
    )
    if final.exists():  # the same step saved again (e.g. final == periodic): replace it
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(ckpt_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory from a checkpoint path, a `checkpoints/` dir or a run dir."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    for candidate in (path / "checkpoints", path):
        found = latest_checkpoint(candidate)
        if found is not None:
            return found
    raise UserError(
        f"no checkpoint found at {path}; pass a run directory, its checkpoints/ directory or "
        "a step-NNNNNN checkpoint directory"
    )


def load_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / "model.safetensors"))


def load_train_state(ckpt: Path) -> dict[str, Any]:
    # weights_only=True: tensors, dicts, lists and numbers only; a tampered file cannot run code.
    return torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)


def load_meta(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / "meta.json").read_text(encoding="utf-8"))
