"""`--nnodes 2 --node-rank R --master-addr HOST --master-port P`: two "nodes" on this machine,
each a real `astrobio train --cpu --procs 1` subprocess whose torchrun joins one c10d
rendezvous (gloo), against `--cpu --procs 2` on one node.

Which rank wrote what comes from the test-side hooks in fault_hooks/ (`fault_env(trace=DIR)`):
each global rank appends its micro-batch indices and, at each save, whether it wrote."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch

from astrobio_cli.errors import UsageError
from astrobio_cli.training.checkpoint import latest_checkpoint, load_weights
from astrobio_cli.training.launch import Nodes, check_nodes, free_port

STEPS, EVERY = 6, 3


def _args(config: Path, out: Path, procs: int, *extra: str) -> list[str]:
    return [
        "train", "cube-unet", "--cpu", "--procs", str(procs), "--config", str(config),
        "--steps", str(STEPS), "--checkpoint-every", str(EVERY), "--log-every", "1",
        "--seed", "1", "--out", str(out), *extra,
    ]  # fmt: skip


def _node_args(args: list[str], port: str, rank: int) -> list[str]:
    return [*args, "--nnodes", "2", "--node-rank", str(rank),
            "--master-addr", "127.0.0.1", "--master-port", port]  # fmt: skip


def _run_together(
    commands: list[tuple[list[str], dict[str, str]]], logs: Path
) -> list[subprocess.CompletedProcess]:
    """`astrobio ARGS` for each (ARGS, env), all started at once (output to files, so that no
    full pipe can stall one); all must end, or every process they started is killed."""
    exe = str(Path(sys.executable).with_name("astrobio"))
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, (args, env) in enumerate(commands):
        with open(logs / f"{i}.out", "w") as out, open(logs / f"{i}.err", "w") as err:
            procs.append(subprocess.Popen([exe, *args], env=env, stdout=out, stderr=err))
    try:
        for p in procs:
            p.wait(timeout=240)
    finally:  # on a failure, no torchrun or worker of any of them is left running
        for p in procs:
            if p.poll() is None:
                tree = psutil.Process(p.pid).children(recursive=True)
                for c in tree:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        c.kill()
                p.kill()
                p.wait()
                psutil.wait_procs(tree, timeout=30)
    return [
        subprocess.CompletedProcess(
            p.args, p.returncode, (logs / f"{i}.out").read_text(), (logs / f"{i}.err").read_text()
        )
        for i, p in enumerate(procs)
    ]


def _trace(d: Path) -> dict[int, list[dict]]:
    return {
        r: [json.loads(x) for x in (d / f"trace-rank{r}.jsonl").read_text().splitlines()]
        for r in (0, 1)
    }


def _final(run: Path) -> dict[str, torch.Tensor]:
    last = latest_checkpoint(run / "checkpoints")
    assert last is not None and last.name == f"step-{STEPS:06d}"
    return load_weights(last)


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_nodes_equal_one_node_checkpoint_once_and_resume(
    tmp_path, tiny_config, train_env, fault_env, read_losses
):
    # one node x two processes (the reference) and two nodes x one process, side by side
    ref, run_a, trace_a = tmp_path / "ref", tmp_path / "a", tmp_path / "trace-a"
    port, node_env = str(free_port()), fault_env(trace=str(trace_a))
    r, *nodes = _run_together(
        [
            (_args(tiny_config, ref, 2), train_env),
            (_node_args(_args(tiny_config, run_a, 1), port, 0), node_env),
            (_node_args(_args(tiny_config, run_a, 1), port, 1), node_env),
        ],
        tmp_path / "logs-a",
    )
    assert r.returncode == 0, r.stderr[-4000:]
    for n in nodes:
        assert n.returncode == 0, n.stderr[-4000:]
    # the same world of 2: the same losses and the same weights, bit for bit
    assert "processes 2" in nodes[0].stdout
    assert read_losses(run_a) == read_losses(ref)
    assert [s for s, _ in read_losses(run_a)] == list(range(1, STEPS + 1))
    assert _equal(_final(run_a), _final(ref))

    # one checkpoint set, written by global rank 0 alone; both ranks took part in each save
    t = _trace(trace_a)
    assert [x["save"] for x in t[0] if "save" in x] == [3, 6]
    assert [x["save"] for x in t[1] if "save" in x] == [3, 6]
    assert [x["save"] for x in t[0] if x.get("wrote")] == [3, 6]
    assert not [x for x in t[1] if x.get("wrote")]
    assert sorted(os.listdir(run_a / "checkpoints")) == ["step-000003", "step-000006"]
    card = json.loads((run_a / "run_card.json").read_text())
    assert card["world_size"] == 2
    assert "--nnodes 2" in card["command_line"]

    # a second two-node invocation resumes from step 3 and ends where the uninterrupted run did
    run_b, trace_b = tmp_path / "b", tmp_path / "trace-b"
    shutil.copytree(run_a, run_b)
    shutil.rmtree(run_b / "checkpoints" / "step-000006")
    port, node_env = str(free_port()), fault_env(trace=str(trace_b))
    args = _args(tiny_config, run_b, 1, "--resume", "auto")
    nodes = _run_together(
        [(_node_args(args, port, 0), node_env), (_node_args(args, port, 1), node_env)],
        tmp_path / "logs-b",
    )
    for n in nodes:
        assert n.returncode == 0, n.stderr[-4000:]
    assert "resumed from" in nodes[0].stdout
    tb = _trace(trace_b)
    assert sorted({x["position"] + 1 for x in tb[0] if "indices" in x}) == [4, 5, 6]
    assert read_losses(run_b) == read_losses(run_a)
    assert _equal(_final(run_b), _final(run_a))


@pytest.mark.parametrize(
    ("nnodes", "node_rank", "addr", "port", "out", "message"),
    [
        (2, 2, "10.0.0.1", None, "/r", "--node-rank 2 is outside [0, 2)"),
        (2, -1, "10.0.0.1", None, "/r", "--node-rank -1 is outside [0, 2)"),
        (2, 0, None, None, "/r", "--nnodes 2 needs --master-addr HOST"),
        (2, None, "10.0.0.1", None, "/r", "--nnodes 2 needs --node-rank R"),
        (2, 1, "10.0.0.1", None, None, "--nnodes 2 needs --out DIR"),
        (2, 1, "10.0.0.1", 70000, "/r", "--master-port 70000 is not a TCP port"),
        (0, 0, "10.0.0.1", None, "/r", "--nnodes 0 is invalid"),
        (None, 1, None, None, "/r", "--node-rank is only for a multi-node run: add --nnodes"),
        (None, None, "h", 29500, "/r", "--master-addr, --master-port are only for a multi-node"),
    ],
)
def test_bad_node_options_are_one_clear_message(nnodes, node_rank, addr, port, out, message):
    with pytest.raises(UsageError) as exc:
        check_nodes(nnodes, node_rank, addr, port, out)
    assert message in str(exc.value)


def test_node_options_accepted():
    assert check_nodes(2, 1, "10.0.0.1", None, "/run") == Nodes(2, 1, "10.0.0.1", 29500)
    assert check_nodes(None, None, None, None, None) is None


def test_bad_node_rank_on_the_command_line(run_astrobio, train_env, tiny_config, tmp_path):
    r = run_astrobio(*_args(tiny_config, tmp_path / "r", 1), "--nnodes", "2", "--node-rank",
                     "2", "--master-addr", "127.0.0.1", env=train_env)  # fmt: skip
    assert r.returncode == 2
    assert "--node-rank 2 is outside [0, 2)" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()
