"""Exact resume: a run SIGKILLed and resumed with `--resume auto` reproduces an uninterrupted
run's loss curve and final weights bit for bit (CPU, fixed seed, real subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from astrobio_cli.training.checkpoint import latest_checkpoint, load_weights

STEPS, EVERY = 40, 5


def _args(tiny_config, out):
    return [
        "train", "cube-unet", "--cpu", "--config", str(tiny_config), "--steps", str(STEPS),
        "--checkpoint-every", str(EVERY), "--log-every", "1", "--seed", "3", "--keep-last", "2",
        "--out", str(out),
    ]  # fmt: skip


def test_sigkill_then_resume_is_bit_identical(
    tmp_path, tiny_config, train_env, run_astrobio, read_losses
):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    r = run_astrobio(*_args(tiny_config, ref), env=train_env)
    assert r.returncode == 0, r.stderr

    exe = str(Path(sys.executable).with_name("astrobio"))
    proc = subprocess.Popen(
        [exe, *_args(tiny_config, killed)], env=train_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while latest_checkpoint(killed / "checkpoints") is None and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    last = latest_checkpoint(killed / "checkpoints")
    assert last is not None and last.name != f"step-{STEPS:06d}", "the run finished before the kill"

    r = run_astrobio(*_args(tiny_config, killed), "--resume", "auto", env=train_env)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout

    assert read_losses(killed) == read_losses(ref)  # exact floats, every step
    assert len(read_losses(ref)) == STEPS
    a = load_weights(latest_checkpoint(ref / "checkpoints"))
    b = load_weights(latest_checkpoint(killed / "checkpoints"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_finished_run_says_there_is_nothing_left(
    run_astrobio, train_env, tmp_path, tiny_config
):
    run = tmp_path / "run"
    args = ["train", "cube-unet", "--cpu", "--steps", "2", "--batch-size", "4",
            "--config", str(tiny_config), "--out", str(run)]  # fmt: skip
    r = run_astrobio(*args, env=train_env)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_astrobio(*args, "--resume", "auto", env=train_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "nothing left to train" in r.stdout and "--steps" in r.stdout
