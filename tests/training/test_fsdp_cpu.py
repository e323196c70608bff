"""`--cpu --procs 2 --strategy fsdp`: FSDP2 (`fully_shard`) over a CPU device mesh with gloo,
in two real processes through torchrun.

Two ranks that see the same data order compute the same averaged gradient under FSDP (reduce-
scatter) as under DDP (all-reduce), so the two strategies reach the same weights; a run
SIGKILLed at a checkpoint and resumed with `--resume auto` repeats the uninterrupted run's
losses and final weights bit for bit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch

from astrobio_cli.training.checkpoint import latest_checkpoint, load_train_state, load_weights
from tests.training.conftest import TINY_UNET, astrobio, losses

STEPS, EVERY = 12, 3


def _args(config: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "cube-unet", "--cpu", "--procs", "2", "--config", str(config),
        "--steps", str(STEPS), "--checkpoint-every", str(EVERY), "--log-every", "1",
        "--seed", "5", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def fsdp_setup(data_dir, tmp_path_factory, pycache):
    """(env, tiny config, an uninterrupted 2-process FSDP run), shared by the tests below."""
    d = tmp_path_factory.mktemp("fsdp")
    config = d / "tiny.yaml"
    config.write_text(TINY_UNET, encoding="utf-8")
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "ASTROBIO_DATA_DIR": str(data_dir),
            "ASTROBIO_RUNS_DIR": str(d / "runs"),
            "ASTROBIO_THREADS": "1",
            "PYTHONPYCACHEPREFIX": str(pycache),
        }
    )
    ref = d / "ref"
    r = astrobio(*_args(config, ref, "--strategy", "fsdp"), env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "processes 2" in r.stdout
    return env, config, ref


def _final(run: Path) -> dict[str, torch.Tensor]:
    last = latest_checkpoint(run / "checkpoints")
    assert last is not None and last.name == f"step-{STEPS:06d}"
    return load_weights(last)


def test_fsdp_on_two_cpu_processes_matches_ddp(fsdp_setup, tmp_path):
    """Same seed, same data order: FSDP's reduce-scatter and DDP's all-reduce average the same
    two gradients, so the runs are bit-identical. Gradient clipping is off here: with it, the
    total norm is summed shard by shard under FSDP and tensor by tensor under DDP, its last
    bits differ, and parameters whose true gradient is zero (a bias ahead of a normalisation)
    random-walk under Adam on rounding noise; the losses then still agree to ~1e-6 but such
    parameters differ by up to ~lr (measured: 2e-3 after 12 steps)."""
    env, _, _ = fsdp_setup
    noclip = tmp_path / "noclip.yaml"
    noclip.write_text(TINY_UNET + "max_grad_norm: 1.0e9\n", encoding="utf-8")
    fsdp, ddp = tmp_path / "fsdp", tmp_path / "ddp"
    r = astrobio(*_args(noclip, fsdp, "--strategy", "fsdp"), env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    r = astrobio(*_args(noclip, ddp), env=env)
    assert r.returncode == 0, r.stderr[-4000:]

    assert losses(fsdp) == losses(ddp)
    assert [s for s, _ in losses(fsdp)] == list(range(1, STEPS + 1))
    a, b = _final(fsdp), _final(ddp)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the checkpoint holds full (gathered) weights and the full optimizer state by name
    state = load_train_state(latest_checkpoint(fsdp / "checkpoints"))
    assert state["strategy"] == "fsdp"
    assert set(state["optimizer"]["state"]) == set(a)
    assert all(state["optimizer"]["state"][k]["exp_avg"].shape == a[k].shape for k in a)


def test_fsdp_sigkill_then_resume_is_bit_identical(fsdp_setup, tmp_path):
    env, config, ref = fsdp_setup
    killed = tmp_path / "killed"
    exe = str(Path(sys.executable).with_name("astrobio"))
    proc = subprocess.Popen(
        [exe, *_args(config, killed, "--strategy", "fsdp")], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    launcher = psutil.Process(proc.pid)
    deadline = time.monotonic() + 240
    while latest_checkpoint(killed / "checkpoints") is None and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    # SIGKILL the whole tree: torchrun starts the ranks in sessions of their own, so a kill of
    # the launcher's process group would leave them training.
    tree = launcher.children(recursive=True)
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    psutil.wait_procs(tree, timeout=30)
    last = latest_checkpoint(killed / "checkpoints")
    assert last is not None and last.name != f"step-{STEPS:06d}", "the run finished before the kill"

    r = astrobio(*_args(config, killed, "--strategy", "fsdp", "--resume", "auto"), env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "resumed from" in r.stdout

    assert losses(killed) == losses(ref)  # exact floats, every step
    a, b = _final(ref), _final(killed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    # a checkpoint of one strategy is not resumed under the other (optimizer state layouts)
    r = astrobio(*_args(config, killed, "--resume", "auto", "--steps", str(STEPS + 1)), env=env)
    assert r.returncode != 0
    assert "--strategy fsdp" in r.stderr


def test_fsdp_shards_parameters_over_the_cpu_mesh(tmp_path, pycache):
    """The loop's sharding helper, in two gloo processes: every parameter of cube-unet is a
    DTensor sharded along dim 0 and each rank holds its half."""
    script = tmp_path / "shard.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch, torch.distributed as dist
            from torch.distributed.tensor import DTensor, Shard
            from astrobio_cli.training.loop import _fully_shard_cpu
            from astrobio_models.cube_unet import CubeUNet
            dist.init_process_group("gloo")
            torch.manual_seed(0)
            m = CubeUNet(3, 2, (6, 16, 32), width=4, depth=1, heads=1, use_attention=True,
                         attention_backend="eager", grad_checkpointing=False)
            m = _fully_shard_cpu(m, 2)
            for name, p in m.named_parameters():
                assert isinstance(p, DTensor) and p.placements == (Shard(0),), name
                assert p.to_local().shape[0] == -(-p.shape[0] // 2) or dist.get_rank() == 1
            print("sharded", sum(1 for _ in m.parameters()))
            dist.destroy_process_group()
            """
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(pycache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.count("sharded") == 2


def test_fsdp_on_cpu_needs_two_processes(run_astrobio, train_env, tiny_config, tmp_path):
    r = run_astrobio("train", "cube-unet", "--cpu", "--strategy", "fsdp", "--steps", "1",
                     "--config", str(tiny_config), "--out", str(tmp_path / "r"), env=train_env)  # fmt: skip
    assert r.returncode != 0
    assert "--procs N" in r.stderr and "Traceback" not in r.stderr
