"""Launching N training processes: `--cpu --procs N` (gloo) and `--gpus N` (NCCL), on one node
or on several (`--nnodes M --node-rank R --master-addr HOST --master-port P`).

The parent process does not train: it starts `python -m torch.distributed.run` (torchrun) with
N workers that each run the same `astrobio train` command; inside each, Accelerate reads the
environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and wraps the model
in DDP (or FSDP). torchrun stops every worker when one fails.

Several nodes: the same command runs on every node with its own --node-rank; each node's
torchrun joins a c10d rendezvous at HOST:PORT, whose store node 0 hosts (`is_host`), so the
global world is M*N processes. Global ranks are assigned by the rendezvous, so rank 0 (the one
process that writes checkpoints, metrics and the run card) may live on any node: the run
directory must be the same path on a file system every node shares. `astrobio train` never
relaunches inside a launched process (torchrun's or `accelerate launch`'s variables are set).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from astrobio_cli.errors import UsageError, UserError
from astrobio_cli.hardware import cuda_device_count

RUN_DIR_ENV = "ASTROBIO_RUN_DIR"
COMMAND_LINE_ENV = "ASTROBIO_COMMAND_LINE"
CHILD_ENV = "ASTROBIO_LAUNCH_CHILD"
DEFAULT_PORT = 29500
JOIN_TIMEOUT_S = 600  # torchrun's c10d join timeout (its default)


@dataclass(frozen=True)
class Nodes:
    """This node's part of a multi-node run."""

    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int

    def flags(self) -> list[str]:
        return [
            "--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank),
            "--master-addr", self.master_addr, "--master-port", str(self.master_port),
        ]  # fmt: skip


def local_world_size(default: int) -> int:
    """The training processes on this node: torchrun's LOCAL_WORLD_SIZE (set on every node of
    a multi-node run), else `default` (one node: all of them)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", default))


def check_nodes(
    nnodes: int | None,
    node_rank: int | None,
    master_addr: str | None,
    master_port: int | None,
    out: str | None,
) -> Nodes | None:
    """The validated multi-node options (None: this node only); one UsageError naming the fix."""
    if nnodes is None:
        given = [
            name
            for name, value in (
                ("--node-rank", node_rank),
                ("--master-addr", master_addr),
                ("--master-port", master_port),
            )
            if value is not None
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} only for a multi-node "
                "run: add --nnodes N (the number of nodes), or leave "
                f"{'it' if len(given) == 1 else 'them'} out to train on this node only"
            )
        return None
    if nnodes < 1:
        raise UsageError(f"--nnodes {nnodes} is invalid: give the number of nodes, 1 or more")
    if not master_addr:
        raise UsageError(
            f"--nnodes {nnodes} needs --master-addr HOST: the address of node 0 (the node run "
            "with --node-rank 0), reachable from every node, the same on all of them"
        )
    if node_rank is None:
        raise UsageError(
            f"--nnodes {nnodes} needs --node-rank R on each node: 0 on the node at "
            f"--master-addr {master_addr}, 1 .. {nnodes - 1} on the others"
        )
    if not 0 <= node_rank < nnodes:
        raise UsageError(
            f"--node-rank {node_rank} is outside [0, {nnodes}) for --nnodes {nnodes}: give each "
            f"node a distinct rank from 0 to {nnodes - 1} (0 on --master-addr {master_addr})"
        )
    port = DEFAULT_PORT if master_port is None else master_port
    if not 1 <= port <= 65535:
        raise UsageError(f"--master-port {port} is not a TCP port: give one in 1..65535")
    if not out:
        raise UsageError(
            f"--nnodes {nnodes} needs --out DIR: the same run directory on every node, on a "
            "file system all nodes share (global rank 0 writes checkpoints there and "
            "--resume auto reads them)"
        )
    return Nodes(nnodes, node_rank, master_addr, port)


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


def torchrun_args(nprocs: int, run_dir: Path, nodes: Nodes | None) -> list[str]:
    """torchrun's options: one node on a free loopback port, or this node of a c10d
    rendezvous at --master-addr:--master-port whose store node 0 hosts."""
    if nodes is None:
        return [
            "--nnodes=1",
            f"--nproc_per_node={nprocs}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
        ]
    # The rendezvous is named after the run directory, which must be the same path on every
    # node: nodes given different --out paths never meet (torchrun gives up after its join
    # timeout, 10 minutes) instead of training into different directories.
    path = os.path.abspath(run_dir)
    run_id = "astrobio-" + hashlib.sha256(path.encode()).hexdigest()[:16]
    host = f"[{nodes.master_addr}]" if ":" in nodes.master_addr else nodes.master_addr
    return [
        f"--nnodes={nodes.nnodes}",
        f"--nproc_per_node={nprocs}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={host}:{nodes.master_port}",
        f"--rdzv-id={run_id}",
        # read_timeout: how long a node waits for node 0's store to come up (torch: 60 s);
        # as long as the join timeout, so nodes started by hand minutes apart still meet.
        f"--rdzv-conf=is_host={int(nodes.node_rank == 0)},read_timeout={JOIN_TIMEOUT_S}",
    ]


def _threads_unset() -> bool:
    from astrobio_cli.settings import get_settings

    return get_settings().threads is None


def launch(
    nprocs: int, argv: list[str], run_dir: Path, *, cpu: bool, nodes: Nodes | None = None
) -> int:
    """Run `astrobio <argv>` in `nprocs` workers on this node (of `nodes`, if given); returns
    the exit code (0: every worker ok)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *torchrun_args(nprocs, run_dir, nodes),
        "-m",
        "astrobio_cli",
        *argv,
    ]
    env = dict(os.environ)
    env[RUN_DIR_ENV] = str(run_dir)
    env[CHILD_ENV] = "1"  # the parent prints the summary
    shown = [*argv, "--out", str(run_dir), *nodes.flags()] if nodes else argv
    env.setdefault(COMMAND_LINE_ENV, shlex.join(["astrobio", *shown]))
    if nodes is not None and _threads_unset():
        # The loop shares the cores by the world size, which spans every node here: give each
        # of this node's processes its share of this node's cores instead.
        env["ASTROBIO_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // nprocs))
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
        # torchrun sets OMP_NUM_THREADS=1 for N > 1; the loop sets torch's threads from the
        # cores per process, which is what we want on a shared CPU.
    proc = subprocess.Popen(cmd, env=env)
    # SIGTERM (kill, a batch system's cancel) reaches torchrun, which stops its workers, instead
    # of leaving them training without this parent. Ctrl-C reaches them through the terminal.
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
