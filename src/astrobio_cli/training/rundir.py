"""The run directory: everything needed to understand and reproduce a run.

    runs/cube-unet-20261122-105600/
      config.yaml       the resolved configuration (re-run with `--config config.yaml`)
      run_card.json     data provenance, `astrobio env`, git revision, seed, command line
      metrics.jsonl     one JSON object per logged step / evaluation
      tb/               TensorBoard events
      checkpoints/      step-NNNNNN/ (see checkpoint.py)
      summary.json      final metrics, written at the end

Only the main process writes here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def new_run_dir(runs_dir: Path, model: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = runs_dir / f"{model}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = runs_dir / f"{model}-{stamp}-{n}"
    return path


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    import yaml

    write_atomic(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))


def git_revision() -> str | None:
    root = Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def write_run_card(
    run_dir: Path,
    *,
    config: dict[str, Any],
    provenance: dict[str, Any],
    world_size: int,
    inputs: list[dict[str, Any]] | None = None,
) -> None:
    from astrobio_cli import envinfo

    try:
        env = envinfo.collect()
    except Exception as exc:  # the card must not stop a run
        env = {"error": str(exc)}
    card = {
        "model": config["model"],
        "seed": config["seed"],
        "command_line": os.environ.get("ASTROBIO_COMMAND_LINE") or " ".join(sys.argv),
        "git_revision": git_revision(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "world_size": world_size,
        "data": provenance,
        "inputs": inputs or [],
        "env": env,
    }
    write_atomic(run_dir / "run_card.json", json.dumps(card, indent=2, default=str))


class MetricsLog:
    """metrics.jsonl + TensorBoard. On resume, records after the resumed step are dropped so the
    file reads as one uninterrupted run."""

    def __init__(self, run_dir: Path, *, resume_step: int | None = None) -> None:
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            write_atomic(self.path, "".join(k + "\n" for k in kept))
        self._fh = self.path.open("a", encoding="utf-8")
        self._tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)
        except Exception:  # tensorboard missing or broken: JSONL still has everything
            self._tb = None

    def log(self, step: int, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps({"step": step, **record}) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
