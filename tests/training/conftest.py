"""Shared fixtures for training tests: the default climate ensemble, generated once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY_UNET = "model:\n  width: 4\n  depth: 1\n  heads: 1\n"
FAULT_HOOKS = Path(__file__).resolve().parent / "fault_hooks"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data dir holding the default synthetic-climate ensemble (generated once per session)."""
    from astrobio_data_sources.synthetic_climate import ensure_default

    d = tmp_path_factory.mktemp("astrobio-data")
    ensure_default(d)
    return d


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_UNET, encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def pycache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture
def train_env(data_dir, tmp_path, pycache) -> dict[str, str]:
    """Environment for `astrobio train` subprocesses: shared data, one thread each (the CI
    machine is shared), and a bytecode cache outside the tree so that each subprocess does not
    recompile torch's sources when PYTHONDONTWRITEBYTECODE is set."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "ASTROBIO_DATA_DIR": str(data_dir),
            "ASTROBIO_RUNS_DIR": str(tmp_path / "runs"),
            "ASTROBIO_THREADS": "1",
            "PYTHONPYCACHEPREFIX": str(pycache),
        }
    )
    return env


@pytest.fixture
def fault_env(train_env):
    """fault_env(**hooks) -> train_env plus the test-side fault hooks (fault_hooks/
    sitecustomize.py: nan_at_micro_batch, oom_above, trace) in every process of the run."""

    def make(**hooks) -> dict[str, str]:
        env = dict(train_env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULT_HOOKS), env.get("PYTHONPATH")]))
        env["ASTROBIO_FAULT_HOOKS"] = json.dumps(hooks)
        return env

    return make


def astrobio(*args: str, env: dict[str, str], timeout: float = 300, **kw):
    exe = str(Path(sys.executable).with_name("astrobio"))
    return subprocess.run(
        [exe, *args], env=env, capture_output=True, text=True, timeout=timeout, **kw
    )


def losses(run_dir: Path) -> list[tuple[int, float]]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out.append((rec["step"], rec["loss"]))
    return out


@pytest.fixture
def run_astrobio():
    """astrobio(*args, env=...) -> CompletedProcess, a real subprocess of the installed script."""
    return astrobio


@pytest.fixture
def read_losses():
    """read_losses(run_dir) -> [(step, loss), ...] from metrics.jsonl."""
    return losses
