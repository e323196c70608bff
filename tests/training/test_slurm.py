"""`astrobio train ... --print-slurm`: the sbatch script's text, and what it runs on each node.

The script is executed by bash with stand-ins for Slurm's `scontrol` and `srun` (srun runs its
command once per node with that node's SLURM_NODEID) and for `astrobio` (which records its
arguments), so the test reads the exact command line each node would run."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from astrobio_cli.errors import UsageError
from astrobio_cli.training.slurm import check_options, sbatch_script

FAKE_SCONTROL = """#!/bin/bash
[ "$1 $2" = "show hostnames" ] && [ "$3" = "$SLURM_JOB_NODELIST" ] || exit 9
printf 'gpu-07\\ngpu-08\\n'
"""
FAKE_SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$FAKE_LOG/srun.args"
while [[ "$1" == --* ]]; do shift; done
for ((i = 0; i < SLURM_NNODES; i++)); do SLURM_NODEID=$i "$@" || exit $?; done
"""
FAKE_ASTROBIO = """#!/bin/bash
printf '%s\\n' "$@" > "$FAKE_LOG/node-$SLURM_NODEID.args"
"""


def _run_script(script: str, tmp_path: Path) -> dict[str, list[str]]:
    """Run the sbatch script as Slurm would on a 2-node job 4242; {file: lines} of the logs."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name, text in (
        ("scontrol", FAKE_SCONTROL),
        ("srun", FAKE_SRUN),
        ("astrobio", FAKE_ASTROBIO),
    ):
        p = bin_dir / name
        p.write_text(text, encoding="utf-8")
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    job = tmp_path / "job.sh"
    job.write_text(script, encoding="utf-8")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "gpu-[07-08]",
        "SLURM_JOB_ID": "4242",
        "SLURM_CPUS_PER_TASK": "4",
    }
    r = subprocess.run(["bash", str(job)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {p.name: p.read_text().splitlines() for p in log.iterdir()}


def _node_tail(rank: int, port: str, run_dir: str) -> list[str]:
    return ["--out", run_dir, "--nnodes", "2", "--node-rank", str(rank),
            "--master-addr", "gpu-07", "--master-port", port]  # fmt: skip


def test_print_slurm_gpu_job(run_astrobio, train_env, tiny_config, tmp_path):
    out = tmp_path / "shared" / "run"
    r = run_astrobio(
        "train", "cube-unet", "--print-slurm", "--nodes", "2", "--gpus-per-node", "8",
        "--partition", "gpu", "--time", "04:00:00", "--steps", "400", "--resume", "auto",
        "--config", str(tiny_config), "--out", str(out), env=train_env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    script = r.stdout
    assert script.startswith("#!/bin/bash\n")
    assert [x for x in script.splitlines() if x.startswith("#SBATCH")] == [
        "#SBATCH --job-name=astrobio-cube-unet",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=04:00:00",
        "#SBATCH --output=astrobio-cube-unet-%j.out",
    ]
    assert 'MASTER_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)' in script
    srun = [x for x in script.splitlines() if x.startswith("srun ")]
    assert srun == ['srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \\']
    assert '--node-rank "$SLURM_NODEID"' in script
    assert not out.exists()  # printed, not trained

    logs = _run_script(script, tmp_path)
    assert logs["srun.args"][:3] == ["--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    head = ["train", "cube-unet", "--steps", "400", "--resume", "auto",
            "--config", str(tiny_config), "--gpus", "8"]  # fmt: skip
    for rank in (0, 1):
        assert logs[f"node-{rank}.args"] == head + _node_tail(rank, "24242", str(out))


def test_print_slurm_cpu_job_default_run_dir(run_astrobio, train_env, tmp_path):
    r = run_astrobio(
        "train", "cube-unet", "--print-slurm", "--cpu", "--procs", "4", "--master-port",
        "29555", "--steps", "10", env=train_env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    sbatch = [x for x in r.stdout.splitlines() if x.startswith("#SBATCH")]
    assert "#SBATCH --nodes=2" in sbatch and "#SBATCH --cpus-per-task=4" in sbatch
    assert not [x for x in sbatch if "gpu" in x]
    assert f"export ASTROBIO_DATA_DIR={train_env['ASTROBIO_DATA_DIR']}" in r.stdout
    logs = _run_script(r.stdout, tmp_path)
    run_dir = str(Path(train_env["ASTROBIO_RUNS_DIR"]).resolve() / "cube-unet-slurm-4242")
    head = ["train", "cube-unet", "--cpu", "--procs", "4", "--steps", "10"]
    assert logs["node-1.args"] == head + _node_tail(1, "29555", run_dir)


def test_arguments_survive_the_shell_quoting(tmp_path):
    odd = '/data/it\'s a "run" $HOME `x`'
    script = sbatch_script(
        model="cube-unet", argv=["train", "cube-unet", "--data", odd], out=Path("/s p/run"),
        runs_dir=Path("/runs"), nodes=2, gpus_per_node=None, partition=None, time=None,
        master_port=None, exports={"ASTROBIO_CACHE_DIR": "/c d"},
    )  # fmt: skip
    logs = _run_script(script, tmp_path)
    tail = _node_tail(0, "24242", "/s p/run")
    assert logs["node-0.args"] == ["train", "cube-unet", "--data", odd, *tail]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"nodes": 2}, "--nodes describes a Slurm job: add --print-slurm"),
        ({"partition": "gpu", "time": "01:00:00"}, "--partition, --time describe a Slurm job"),
        ({"print_slurm": True, "time": "4h"}, "--time '4h' is not a Slurm time limit"),
        ({"print_slurm": True, "nodes": 0}, "--nodes 0 is invalid"),
        ({"print_slurm": True, "cpu": True, "gpus_per_node": 2}, "--gpus-per-node asks for GPUs"),
        ({"print_slurm": True, "multi_node_flags": ["--nnodes"]}, "leave --nnodes out"),
        ({"print_slurm": True, "partition": "a;rm"}, "is not a Slurm partition name"),
    ],
)
def test_bad_slurm_options_are_one_clear_message(kw, message):
    base = {"print_slurm": False, "nodes": None, "gpus_per_node": None, "partition": None,
            "time": None, "cpu": False, "master_port": None, "multi_node_flags": []}  # fmt: skip
    with pytest.raises(UsageError) as exc:
        check_options(**{**base, **kw})
    assert message in str(exc.value)
