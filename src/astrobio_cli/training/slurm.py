"""`astrobio train ... --print-slurm`: an sbatch script that runs the same training on N nodes.

The script asks Slurm for N nodes with one task each; `srun` starts one `astrobio train` per
node with `--nnodes $SLURM_NNODES --node-rank $SLURM_NODEID --master-addr <first host of the
job> --master-port <port>`, and each of those starts its node's processes through torchrun's
c10d rendezvous (launch.py). Nothing is trained when the script is printed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from astrobio_cli.errors import UsageError

_TIME = re.compile(r"^(\d+-)?\d{1,3}:[0-5]\d:[0-5]\d$")


def check_options(
    *,
    print_slurm: bool,
    nodes: int | None,
    gpus_per_node: int | None,
    partition: str | None,
    time: str | None,
    cpu: bool,
    master_port: int | None,
    multi_node_flags: list[str],
) -> None:
    """One UsageError for Slurm options that do not fit together."""
    if not print_slurm:
        given = [
            name
            for name, value in (
                ("--nodes", nodes),
                ("--gpus-per-node", gpus_per_node),
                ("--partition", partition),
                ("--time", time),
            )
            if value is not None
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)} {'describes' if len(given) == 1 else 'describe'} a Slurm job: add --print-slurm to print its sbatch "
                "script (to train on several nodes yourself, use --nnodes N --node-rank R "
                "--master-addr HOST)"
            )
        return
    if multi_node_flags:
        raise UsageError(
            f"leave {', '.join(multi_node_flags)} out with --print-slurm: the script sets "
            "--nnodes, --node-rank and --master-addr on each node from Slurm's variables; give "
            "the number of nodes with --nodes N"
        )
    if nodes is not None and nodes < 1:
        raise UsageError(f"--nodes {nodes} is invalid: give the number of nodes, 1 or more")
    if gpus_per_node is not None and gpus_per_node < 1:
        raise UsageError(f"--gpus-per-node {gpus_per_node} is invalid: give 1 or more")
    if cpu and gpus_per_node is not None:
        raise UsageError(
            "--gpus-per-node asks for GPUs but --cpu trains on the CPU: give one of them "
            "(--cpu --procs K runs K CPU processes per node)"
        )
    if time is not None and not _TIME.match(time):
        raise UsageError(
            f"--time {time!r} is not a Slurm time limit: give HH:MM:SS (or D-HH:MM:SS), "
            "e.g. --time 04:00:00"
        )
    if master_port is not None and not 1 <= master_port <= 65535:
        raise UsageError(f"--master-port {master_port} is not a TCP port: give one in 1..65535")
    if partition is not None and not re.fullmatch(r"[A-Za-z0-9_.,-]+", partition):
        raise UsageError(f"--partition {partition!r} is not a Slurm partition name")


def sbatch_script(
    *,
    model: str,
    argv: list[str],
    out: Path | None,
    runs_dir: Path,
    nodes: int,
    gpus_per_node: int | None,
    partition: str | None,
    time: str | None,
    master_port: int | None,
    exports: dict[str, str],
    cpus_per_task: int | None = None,
) -> str:
    """The sbatch script. `argv` is `train MODEL ...` without --out, --gpus and the node options;
    `gpus_per_node` None: a CPU job (argv then holds --cpu [--procs K]; `cpus_per_task` K)."""
    sbatch = [
        f"--job-name=astrobio-{model}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
    ]
    per_node = list(argv)
    if gpus_per_node is not None:
        sbatch.append(f"--gpus-per-node={gpus_per_node}")
        per_node += ["--gpus", str(gpus_per_node)]
    if cpus_per_task:
        sbatch.append(f"--cpus-per-task={cpus_per_task}")
    if partition:
        sbatch.append(f"--partition={partition}")
    if time:
        sbatch.append(f"--time={time}")
    sbatch.append(f"--output=astrobio-{model}-%j.out")

    run_dir = (
        shlex.quote(str(out.resolve()))
        if out is not None
        else shlex.quote(str(runs_dir.resolve() / f"{model}-slurm-")) + '"$SLURM_JOB_ID"'
    )
    port = str(master_port) if master_port else "$((20000 + SLURM_JOB_ID % 20000))"
    # Expanded on each node by the shell srun starts there ($SLURM_NODEID differs per node).
    node_cmd = (
        "exec "
        + shlex.join(["astrobio", *per_node])
        + ' --out "$RUN_DIR" --nnodes "$SLURM_NNODES" --node-rank "$SLURM_NODEID"'
        + ' --master-addr "$MASTER_HOST" --master-port "$MASTER_PORT_NUM"'
    )
    lines = [
        "#!/bin/bash",
        f"# astrobio train {model} on {nodes} node(s), one task per node; written by",
        "# `astrobio train ... --print-slurm`. Submit it with `sbatch FILE` from a shell where",
        "# `astrobio` is on PATH (e.g. after `source .venv/bin/activate`): sbatch passes that",
        "# environment on. RUN_DIR must be on a file system every node shares: global rank 0",
        "# writes the checkpoints there and --resume auto reads them.",
        *(f"#SBATCH {opt}" for opt in sbatch),
        "",
        "set -euo pipefail",
        # Slurm >= 22.05: srun no longer inherits sbatch's --cpus-per-task by itself.
        *(['export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"'] if cpus_per_task else []),
        *(f"export {k}={shlex.quote(v)}" for k, v in sorted(exports.items())),
        f"RUN_DIR={run_dir}",
        "# the first host of the job (sed reads to the end: no SIGPIPE to fail the pipefail)",
        'MASTER_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)',
        f"MASTER_PORT_NUM={port}",
        "export RUN_DIR MASTER_HOST MASTER_PORT_NUM",
        "",
        'srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \\',
        f"    bash -c {shlex.quote(node_cmd)}",
        "",
    ]
    return "\n".join(lines)
