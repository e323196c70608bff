"""Stops a user can act on: non-finite loss, out of memory (--auto-batch), bf16 on CPU, and the
errors raised before any training starts. The faults are injected from the test side
(`fault_env`: fault_hooks/sitecustomize.py wraps the loop's functions in the subprocess); the
training loop has no test hooks of its own."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astrobio_cli.cli import build_app
from astrobio_cli.training.checkpoint import list_checkpoints


def _train(tiny_config, out, *extra):
    return ["train", "cube-unet", "--cpu", "--config", str(tiny_config), "--log-every", "1",
            "--out", str(out), *extra]  # fmt: skip


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path, tiny_config, fault_env, run_astrobio
):
    out = tmp_path / "run"
    env = fault_env(nan_at_micro_batch=5)
    r = run_astrobio(*_train(tiny_config, out, "--steps", "8", "--checkpoint-every", "2"), env=env)
    assert r.returncode == 1
    assert "loss became nan at step 5" in r.stderr and "last good checkpoint" in r.stderr
    assert "Traceback" not in r.stderr
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-000002", "step-000004"]


def test_out_of_memory_message_then_auto_batch(
    tmp_path, tiny_config, train_env, fault_env, run_astrobio, read_losses
):
    env = fault_env(oom_above=2)
    args = ("--steps", "3", "--batch-size", "8")
    r = run_astrobio(*_train(tiny_config, tmp_path / "oom", *args), env=env)
    assert r.returncode == 1
    for part in ("out of memory", "batch size 8", "precision fp32", "--auto-batch"):
        assert part in r.stderr
    assert "Traceback" not in r.stderr
    r = run_astrobio(*_train(tiny_config, tmp_path / "auto", *args, "--auto-batch"), env=env)
    assert r.returncode == 0, r.stderr
    r = run_astrobio(*_train(tiny_config, tmp_path / "plain", *args), env=train_env)
    assert r.returncode == 0, r.stderr
    # the same samples in smaller pieces: the same losses up to float rounding
    auto, plain = read_losses(tmp_path / "auto"), read_losses(tmp_path / "plain")
    assert [s for s, _ in auto] == [1, 2, 3]
    assert [a for _, a in auto] == pytest.approx([p for _, p in plain], rel=1e-5)


def test_training_loop_carries_no_test_hooks():
    """Fault injection and tracing live in the tests (fault_hooks/), not in the product."""
    import astrobio_cli
    from astrobio_cli.training import loop

    assert not hasattr(loop, "_fault") and not hasattr(loop, "_Trace")
    src = inspect.getsource(loop)
    assert "os.environ" not in src
    for path in Path(astrobio_cli.__file__).parent.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "ASTROBIO_TEST_" not in text and "ASTROBIO_TRAIN_TRACE" not in text, path


def test_bf16_autocast_on_cpu(tmp_path, tiny_config, train_env, run_astrobio, read_losses):
    r = run_astrobio(
        *_train(tiny_config, tmp_path / "bf16", "--steps", "3", "--precision", "bf16"),
        env=train_env,
    )
    assert r.returncode == 0, r.stderr
    r = run_astrobio(*_train(tiny_config, tmp_path / "fp32", "--steps", "3"), env=train_env)
    assert r.returncode == 0, r.stderr
    bf, fp = read_losses(tmp_path / "bf16"), read_losses(tmp_path / "fp32")
    assert all(math.isfinite(x) for _, x in bf)
    # autocast really ran in bf16 (the losses differ) and stayed close to fp32
    assert [x for _, x in bf] != [x for _, x in fp]
    assert [x for _, x in bf] == pytest.approx([x for _, x in fp], rel=0.05)


def test_eval_json_and_plot(tmp_path, tiny_config, train_env, run_astrobio):
    import json

    out = tmp_path / "run"
    r = run_astrobio(*_train(tiny_config, out, "--steps", "2"), env=train_env)
    assert r.returncode == 0, r.stderr
    png = tmp_path / "fig.png"
    r = run_astrobio(
        "eval", "cube-unet", "--checkpoint", str(out), "--json", "--plot", str(png), env=train_env
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["step"] == 2 and report["primary_metric"] == ["rmse", "lower"]
    assert set(report["baselines"]) == {"climatology", "linear", "ridge-quadratic"}
    assert report["samples"] == 64
    # the climatology baseline predicts the training mean: its R^2 on held-out data is ~0
    assert abs(report["baselines"]["climatology"]["r2"]) < 0.05
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run_astrobio("eval", "graph-vae", "--checkpoint", str(out), env=train_env)
    assert r.returncode == 2 and "holds a 'cube-unet' model" in r.stderr


@pytest.fixture
def cli():
    runner = CliRunner()
    app = build_app()
    return lambda *args: runner.invoke(app, list(args))


def test_unknown_model_suggests(cli):
    r = cli("train", "cube-unt")
    assert r.exit_code == 2
    assert "did you mean 'cube-unet'" in r.output


def test_model_data_mismatch_before_training(cli, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello")
    r = cli("train", "cube-unet", "--data", str(corpus))
    assert r.exit_code == 2
    assert "cannot train on text-corpus data" in r.output
    # it names the command that writes the right kind, from the installed sources
    assert "`astrobio fetch synthetic-climate` writes climate-cube" in " ".join(r.output.split())
    assert not (tmp_path / "runs").exists()


def test_too_many_gpus_and_fp16_on_cpu(cli):
    r = cli("train", "cube-unet", "--gpus", "64")
    assert r.exit_code == 1
    assert "--gpus 64" in r.output and "--cpu --procs 64" in r.output
    r = cli("train", "cube-unet", "--cpu", "--precision", "fp16")
    assert r.exit_code == 2
    assert "fp16 needs a CUDA device" in r.output
    r = cli("train", "cube-unet", "--cpu", "--strategy", "fsdp")
    assert r.exit_code == 2
    assert "use it with --gpus N" in r.output


def test_grad_accumulation_equals_the_big_batch(
    tmp_path, tiny_config, train_env, run_astrobio, read_losses
):
    """batch 4 x 2 micro-batches reads the same 8 samples per step as batch 8 (one process), so
    the loss curves agree up to float rounding (the accumulated mean vs. one mean)."""
    big = run_astrobio(
        *_train(tiny_config, tmp_path / "big", "--steps", "4", "--batch-size", "8"), env=train_env
    )
    assert big.returncode == 0, big.stderr
    acc = run_astrobio(
        *_train(
            tiny_config, tmp_path / "acc", "--steps", "4", "--batch-size", "4", "--grad-accum", "2"
        ),
        env=train_env,
    )
    assert acc.returncode == 0, acc.stderr
    a, b = read_losses(tmp_path / "big"), read_losses(tmp_path / "acc")
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3, 4]
    assert [x for _, x in b] == pytest.approx([x for _, x in a], rel=1e-4)
