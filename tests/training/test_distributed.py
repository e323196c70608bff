"""`--cpu --procs 2`: two real processes with gloo through torchrun and Accelerate.

Each rank's trace (the indices of every micro-batch it trained on; at each checkpoint save,
whether it wrote and a hash of its parameters) comes from the test-side hooks in fault_hooks/
(`fault_env(trace=DIR)`), not from the training loop."""

from __future__ import annotations

import json
import shutil

from astrobio_cli.training.checkpoint import list_checkpoints


def _trace(d):
    recs = {}
    for r in (0, 1):
        recs[r] = [
            json.loads(line) for line in (d / f"trace-rank{r}.jsonl").read_text().splitlines()
        ]
    return recs


def _steps(trace):
    """{step: set of indices} (one micro-batch per step here)."""
    return {x["position"] + 1: set(x["indices"]) for x in trace if "indices" in x}


def _final_hash(trace):
    return [x for x in trace if "save" in x][-1]["param_sha256"]


def test_two_processes_then_resume_in_two_processes(
    tmp_path, tiny_config, fault_env, run_astrobio, read_losses
):
    run_a, trace_a = tmp_path / "a", tmp_path / "trace-a"
    args = ["train", "cube-unet", "--cpu", "--procs", "2", "--config", str(tiny_config),
            "--steps", "6", "--checkpoint-every", "3", "--log-every", "1", "--seed", "1"]  # fmt: skip
    r = run_astrobio(*args, "--out", str(run_a), env=fault_env(trace=str(trace_a)))
    assert r.returncode == 0, r.stderr
    assert "processes 2" in r.stdout
    t = _trace(trace_a)
    # each rank saw distinct samples at every step
    steps0, steps1 = _steps(t[0]), _steps(t[1])
    assert sorted(steps0) == sorted(steps1) == list(range(1, 7))
    assert all(steps0[s] and not steps0[s] & steps1[s] for s in steps0)
    # the replicas hold identical parameters after training
    hashes = [_final_hash(t[r]) for r in (0, 1)]
    assert hashes[0] == hashes[1]
    # every rank took part in each save; only rank 0 wrote checkpoints
    assert [x["save"] for x in t[0] if "save" in x] == [3, 6]
    assert [x["save"] for x in t[0] if x.get("wrote")] == [3, 6]
    assert not [x for x in t[1] if x.get("wrote")]
    assert [p.name for p in list_checkpoints(run_a / "checkpoints")] == [
        "step-000003",
        "step-000006",
    ]

    # resume in 2-process mode from step 3: same curve and same final weights
    run_b, trace_b = tmp_path / "b", tmp_path / "trace-b"
    shutil.copytree(run_a, run_b)
    shutil.rmtree(run_b / "checkpoints" / "step-000006")
    r = run_astrobio(*args, "--out", str(run_b), "--resume", "auto",
                     env=fault_env(trace=str(trace_b)))  # fmt: skip
    assert r.returncode == 0, r.stderr
    tb = _trace(trace_b)
    assert sorted(_steps(tb[0])) == [4, 5, 6]
    assert _final_hash(tb[0]) == _final_hash(tb[1]) == hashes[0]
    assert read_losses(run_b) == read_losses(run_a)
