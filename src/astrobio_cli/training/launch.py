"""Launching N training processes: `--cpu --procs N` (gloo) and `--gpus N` (NCCL).

The parent process does not train: it starts `python -m torch.distributed.run` (torchrun) with
N workers that each run the same `astrobio train` command; inside each, Accelerate reads the
environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and wraps the model
in DDP (or FSDP). torchrun stops every worker when one fails. Multi-node runs use Accelerate's
own launcher instead (`accelerate launch --num_machines ... -m astrobio_cli train ...`): the
workers see the same variables, so `astrobio train` never relaunches inside a launched process.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from astrobio_cli.errors import UserError
from astrobio_cli.hardware import cuda_device_count

RUN_DIR_ENV = "ASTROBIO_RUN_DIR"
COMMAND_LINE_ENV = "ASTROBIO_COMMAND_LINE"
CHILD_ENV = "ASTROBIO_LAUNCH_CHILD"


def inside_launch() -> bool:
    """True in a worker started by torchrun / accelerate launch / mpirun."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def check_gpus(gpus: int | None) -> None:
    if not gpus:
        return
    found = cuda_device_count()
    if found < gpus:
        raise UserError(
            f"--gpus {gpus} asked for {gpus} CUDA device(s) but this machine has {found}; "
            f"use --gpus {found} or fewer, or run the same distributed path on the CPU with "
            f"--cpu --procs {gpus}"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nprocs: int, argv: list[str], run_dir: Path, *, cpu: bool) -> int:
    """Run `astrobio <argv>` in `nprocs` workers; returns the exit code (0: every worker ok)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={nprocs}",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m",
        "astrobio_cli",
        *argv,
    ]
    env = dict(os.environ)
    env[RUN_DIR_ENV] = str(run_dir)
    env[CHILD_ENV] = "1"  # the parent prints the summary
    env.setdefault(COMMAND_LINE_ENV, shlex.join(["astrobio", *argv]))
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
        # torchrun sets OMP_NUM_THREADS=1 for N > 1; the loop sets torch's threads from the
        # cores per process, which is what we want on a shared CPU.
    try:
        return subprocess.run(cmd, env=env).returncode
    except KeyboardInterrupt:
        return 130
