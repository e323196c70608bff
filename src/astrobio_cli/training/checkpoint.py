"""Checkpoints: a directory `step-000050/` with

- `model.safetensors`  the weights (safetensors: loading runs no code);
- `state.pt`           optimizer, scheduler, every rank's RNG states and the data position,
                       loaded with ``torch.load(weights_only=True)`` (tensors and plain values only);
- `meta.json`          step, model name, metrics, for humans and `astrobio eval`, and under
                       `files` the sha256 and size of the two files above.

It is written under a temporary name in the same directory and renamed into place, so a
directory named `step-*` is always complete: a run killed mid-write leaves only a `.tmp-*`
directory, which the next save removes. Only the main process writes.

Every load verifies the files it reads against `meta.json` (`CheckpointCorrupt`, a UsageError
naming the file and the mismatch); a checkpoint written before the checksums loads unverified.
`load_latest_intact` is what `--resume auto` uses: the newest checkpoint that verifies and
loads, reporting each newer one it skips.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from astrobio_cli.errors import UsageError, UserError

STEP_RE = re.compile(r"^step-(\d{6,})$")
WEIGHTS, STATE, META = "model.safetensors", "state.pt", "meta.json"


class CheckpointCorrupt(UsageError):
    """A checkpoint file is missing, truncated, fails its checksum or cannot be read."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(
            f"checkpoint file {path} {problem}; use another checkpoint (an older step-* "
            "directory) or retrain"
        )


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
    save_file(weights, str(tmp / WEIGHTS), metadata={"step": str(step)})
    torch.save(train_state, tmp / STATE)
    files = {name: _digest(tmp / name) for name in (WEIGHTS, STATE)}
    (tmp / META).write_text(
        json.dumps({"step": step, **meta, "files": files}, indent=2, default=str),
        encoding="utf-8",
    )
    if final.exists():  # the same step saved again (e.g. final == periodic): replace it
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(ckpt_dir)[:-keep_last]:
        if old != final:  # never the one just written (a newer, corrupt one may be skipped)
            shutil.rmtree(old, ignore_errors=True)
    return final


def _digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"sha256": h.hexdigest(), "bytes": size}


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


def load_meta(ckpt: Path) -> dict[str, Any]:
    path = Path(ckpt) / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointCorrupt(path, "is missing") from None
    except (OSError, ValueError) as exc:
        raise CheckpointCorrupt(path, f"cannot be read ({_reason(exc)})") from None
    if not isinstance(meta, dict):
        raise CheckpointCorrupt(path, "does not hold a JSON object")
    return meta


def verify_checkpoint(ckpt: Path, names: tuple[str, ...] = (WEIGHTS, STATE)) -> None:
    """Check `names` against the sizes and sha256 digests in the checkpoint's meta.json.

    Raises CheckpointCorrupt naming the file and the mismatch. A checkpoint written before
    checksums existed (no `files` in meta.json) passes unverified.
    """
    ckpt = Path(ckpt)
    files = load_meta(ckpt).get("files")
    if not isinstance(files, dict):
        return  # written before checksums: nothing to verify against
    for name in names:
        path = ckpt / name
        want = files.get(name)
        if not isinstance(want, dict):
            raise CheckpointCorrupt(path, f"has no checksum in {META}")
        if not path.is_file():
            raise CheckpointCorrupt(path, "is missing")
        size = path.stat().st_size
        if want.get("bytes") is not None and size != want["bytes"]:
            word = "truncated" if size < want["bytes"] else "longer than written"
            raise CheckpointCorrupt(
                path, f"is {word}: {size} bytes, {META} records {want['bytes']}"
            )
        got = _digest(path)["sha256"]
        if got != want.get("sha256"):
            raise CheckpointCorrupt(
                path,
                f"is corrupt: sha256 mismatch (the file hashes to {got[:16]}..., {META} "
                f"records {str(want.get('sha256'))[:16]}...)",
            )


def load_weights(ckpt: Path, *, verify: bool = True) -> dict[str, torch.Tensor]:
    """The weights (safetensors: loading runs no code), verified against meta.json."""
    if verify:
        verify_checkpoint(ckpt, (WEIGHTS,))
    path = Path(ckpt) / WEIGHTS
    try:
        return load_file(str(path))
    except Exception as exc:  # truncated or garbled (a checkpoint without checksums)
        raise CheckpointCorrupt(
            path, f"cannot be read, it may be truncated ({_reason(exc)})"
        ) from None


def load_train_state(ckpt: Path, *, verify: bool = True) -> dict[str, Any]:
    """Optimizer, scheduler, RNG states and data position, verified against meta.json."""
    import pickle

    if verify:
        verify_checkpoint(ckpt, (STATE,))
    path = Path(ckpt) / STATE
    try:
        # weights_only=True: tensors, dicts, lists and numbers only; a tampered file cannot
        # run code.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointCorrupt(
            path,
            "holds objects other than tensors and plain values; refused, as loading it could "
            f"run code ({_reason(exc)})",
        ) from None
    except Exception as exc:  # truncated or garbled (a checkpoint without checksums)
        raise CheckpointCorrupt(
            path, f"cannot be read, it may be truncated ({_reason(exc)})"
        ) from None


def load_latest_intact(
    ckpt_dir: Path, *, on_skip: Callable[[str], None]
) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]] | None:
    """(checkpoint, training state, weights) of the newest checkpoint in `ckpt_dir` that
    verifies and loads; None when there is none at all. Each newer one that fails is reported
    through `on_skip` (one line: which and why). Raises UsageError when checkpoints exist but
    none is intact."""
    found = list_checkpoints(ckpt_dir)
    reasons = []
    for path in reversed(found):
        try:
            verify_checkpoint(path)
            state = load_train_state(path, verify=False)
            weights = load_weights(path, verify=False)
        except CheckpointCorrupt as exc:
            why = f"{exc.path.name} {exc.problem}"
            reasons.append(f"{path.name}: {why}")
            on_skip(f"skipped checkpoint {path}: {why}")
            continue
        return path, state, weights
    if found:
        raise UsageError(
            f"no intact checkpoint in {ckpt_dir} to resume from ({'; '.join(reasons)}); "
            "remove the damaged step-* directories to start afresh, or resume another run's "
            "checkpoint with --resume PATH"
        )
    return None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
