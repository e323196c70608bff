"""`--cpu --procs 2`: two real processes with gloo through torchrun and Accelerate."""

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


def test_two_processes_then_resume_in_two_processes(
    tmp_path, tiny_config, train_env, run_astrobio, read_losses
):
    run_a, trace_a = tmp_path / "a", tmp_path / "trace-a"
    args = ["train", "cube-unet", "--cpu", "--procs", "2", "--config", str(tiny_config),
            "--steps", "6", "--checkpoint-every", "3", "--log-every", "1", "--seed", "1"]  # fmt: skip
    r = run_astrobio(
        *args, "--out", str(run_a), env={**train_env, "ASTROBIO_TRAIN_TRACE": str(trace_a)}
    )
    assert r.returncode == 0, r.stderr
    assert "processes 2" in r.stdout
    t = _trace(trace_a)
    # each rank saw distinct samples at every step
    steps0 = {x["step"]: set(x["indices"]) for x in t[0] if "indices" in x}
    steps1 = {x["step"]: set(x["indices"]) for x in t[1] if "indices" in x}
    assert sorted(steps0) == list(range(1, 7))
    assert all(steps0[s] and not steps0[s] & steps1[s] for s in steps0)
    # the replicas hold identical parameters after training
    hashes = [next(x["param_sha256"] for x in t[r] if "param_sha256" in x) for r in (0, 1)]
    assert hashes[0] == hashes[1]
    # only rank 0 wrote checkpoints
    assert [x["step"] for x in t[0] if x.get("event") == "checkpoint"] == [3, 6]
    assert not [x for x in t[1] if x.get("event") == "checkpoint"]
    assert [p.name for p in list_checkpoints(run_a / "checkpoints")] == [
        "step-000003",
        "step-000006",
    ]

    # resume in 2-process mode from step 3: same curve and same final weights
    run_b, trace_b = tmp_path / "b", tmp_path / "trace-b"
    shutil.copytree(run_a, run_b)
    shutil.rmtree(run_b / "checkpoints" / "step-000006")
    r = run_astrobio(*args, "--out", str(run_b), "--resume", "auto",
                 env={**train_env, "ASTROBIO_TRAIN_TRACE": str(trace_b)})  # fmt: skip
    assert r.returncode == 0, r.stderr
    tb = _trace(trace_b)
    assert min(x["step"] for x in tb[0] if "indices" in x) == 4
    assert next(x["param_sha256"] for x in tb[0] if "param_sha256" in x) == hashes[0]
    assert read_losses(run_b) == read_losses(run_a)
