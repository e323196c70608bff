"""Corrupt checkpoints (issue 13, items 9 and 10).

A checkpoint's `meta.json` holds the sha256 and size of every file beside it. `--resume auto`
skips a newest checkpoint that is truncated or fails its checksum and resumes from the newest
intact one, saying which one it skipped and why; a corrupt checkpoint named explicitly (`train
--resume PATH`, `eval`/`serve`/`predict --checkpoint`) is one clear error naming the file.
Checkpoints written before the checksums load unverified.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from astrobio_cli.errors import UsageError
from astrobio_cli.training import checkpoint as ckpt
from tests.training.conftest import TINY_UNET, astrobio, losses

STEPS = ("--steps", "4", "--checkpoint-every", "2", "--log-every", "1", "--seed", "3")


def _train_args(tiny_config: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "cube-unet", "--cpu", "--config", str(tiny_config), *STEPS,
            "--out", str(out), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """One finished 4-step run with checkpoints at steps 2 and 4 (shared; tests copy it), and
    the environment of its subprocesses: isolated settings, the default synthetic-climate
    ensemble, one thread."""
    import os

    from astrobio_data_sources.synthetic_climate import ensure_default

    root = tmp_path_factory.mktemp("ckpt-integrity")
    data_dir = root / "data"
    ensure_default(data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTROBIO_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        (root / var).mkdir()
        env[var] = str(root / var)
    env.update(
        ASTROBIO_DATA_DIR=str(data_dir),
        ASTROBIO_RUNS_DIR=str(root / "runs"),
        ASTROBIO_THREADS="1",
        PYTHONPYCACHEPREFIX=str(root / "pycache"),
    )
    config = root / "tiny.yaml"
    config.write_text(TINY_UNET, encoding="utf-8")
    run = root / "run"
    r = astrobio(*_train_args(config, run), env=env)
    assert r.returncode == 0, r.stderr
    names = [p.name for p in ckpt.list_checkpoints(run / "checkpoints")]
    assert names == ["step-000002", "step-000004"]
    return run, config, env


def _copy(trained, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    return run


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero_tail(path: Path, n: int = 400) -> None:
    data = bytearray(path.read_bytes())
    data[-n:] = bytes(n)
    path.write_bytes(bytes(data))


def _strip_checksums(ckpt_dir: Path) -> None:
    """Make a checkpoint look like one written before checksums existed."""
    meta_path = ckpt_dir / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("files", None)
    meta_path.write_text(json.dumps(meta))


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    return " ".join(lines)


def test_save_records_checksums(trained):
    import hashlib

    last = ckpt.latest_checkpoint(trained[0] / "checkpoints")
    files = ckpt.load_meta(last)["files"]
    assert set(files) == {"model.safetensors", "state.pt"}
    for name, rec in files.items():
        data = (last / name).read_bytes()
        assert rec == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


@pytest.mark.parametrize(
    ("name", "damage", "why"),
    [
        ("model.safetensors", _truncate, "truncated"),
        ("state.pt", _truncate, "truncated"),
        ("model.safetensors", _zero_tail, "sha256 mismatch"),
    ],
    ids=["truncated-weights", "truncated-state", "zeroed-tail"],
)
def test_resume_auto_falls_back_to_newest_intact(trained, tmp_path, name, damage, why):
    run = _copy(trained, tmp_path)
    ref_losses = losses(run)
    damage(run / "checkpoints" / "step-000004" / name)
    r = astrobio(*_train_args(trained[1], run, "--resume", "auto"), env=trained[2])
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    err = " ".join(r.stderr.split())
    assert "skipped checkpoint" in err and "step-000004" in err, r.stderr
    assert name in err and why in err, r.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert Path(summary["resumed_from"]).name == "step-000002"
    # steps 3 and 4 redone from step 2: the same curve as the original run
    assert losses(run) == ref_losses
    ckpt.load_weights(ckpt.latest_checkpoint(run / "checkpoints"))  # rewritten, verifies


def test_resume_auto_with_every_checkpoint_corrupt_is_one_error(trained, tmp_path):
    run = _copy(trained, tmp_path)
    for d in ckpt.list_checkpoints(run / "checkpoints"):
        _zero_tail(d / "model.safetensors")
    r = astrobio(*_train_args(trained[1], run, "--resume", "auto"), env=trained[2])
    assert r.returncode != 0
    msg = _one_line(r.stderr)
    assert "no intact checkpoint" in msg and "step-000002" in msg and "step-000004" in msg


def test_explicit_corrupt_checkpoint_is_one_usage_error(trained, tmp_path):
    run = _copy(trained, tmp_path)
    bad = run / "checkpoints" / "step-000004"
    _zero_tail(bad / "model.safetensors")
    r = astrobio(*_train_args(trained[1], run, "--resume", str(bad)), env=trained[2])
    assert r.returncode == 2
    msg = _one_line(r.stderr)
    assert "step-000004" in msg and "model.safetensors" in msg and "sha256 mismatch" in msg
    r = astrobio("eval", "cube-unet", "--checkpoint", str(run), env=trained[2])
    assert r.returncode == 2
    msg = _one_line(r.stderr)
    assert "model.safetensors" in msg and "sha256 mismatch" in msg


def test_eval_serve_predict_loaders_verify(trained, tmp_path, monkeypatch):
    from astrobio_cli.plugins import get_host
    from astrobio_cli.serve import load_served
    from astrobio_cli.training.evaluate import load_model

    monkeypatch.setenv("ASTROBIO_DATA_DIR", trained[2]["ASTROBIO_DATA_DIR"])
    monkeypatch.setenv("ASTROBIO_THREADS", "1")
    spec = get_host().get("model", "cube-unet")
    run = _copy(trained, tmp_path)
    last = run / "checkpoints" / "step-000004"
    _truncate(last / "model.safetensors")
    for load in (load_model, load_served):
        with pytest.raises(UsageError, match=r"model\.safetensors.*truncated"):
            load(spec, run)
    # the same checkpoint from before checksums: no verification, but the unreadable file
    # is still one clear error, not a traceback
    _strip_checksums(last)
    with pytest.raises(UsageError, match=r"model\.safetensors.*cannot be read"):
        load_model(spec, last)


def test_checkpoints_without_checksums_still_load(trained, tmp_path):
    run = _copy(trained, tmp_path)
    ref_losses = losses(run)
    for d in ckpt.list_checkpoints(run / "checkpoints"):
        _strip_checksums(d)
        ckpt.load_weights(d)
        ckpt.load_train_state(d)
    shutil.rmtree(run / "checkpoints" / "step-000004")
    r = astrobio(*_train_args(trained[1], run, "--resume", "auto"), env=trained[2])
    assert r.returncode == 0, r.stderr
    assert "skipped" not in r.stderr
    assert losses(run) == ref_losses
    r = astrobio("eval", "cube-unet", "--checkpoint", str(run), "--json", env=trained[2])
    assert r.returncode == 0, r.stderr


def test_unit_verify_and_fallback(tmp_path, capsys):
    """In-process: verification names the file and the mismatch; the fallback picks the
    newest intact checkpoint and reports what it skipped."""
    model = torch.nn.Linear(3, 2)
    for step in (1, 2, 3):
        ckpt.save_checkpoint(
            tmp_path,
            step,
            model_state=model.state_dict(),
            train_state={"step": step, "rng": [ckpt.rng_state()], "position": step},
            meta={"model": "toy"},
            keep_last=5,
        )
    _zero_tail(tmp_path / "step-000003" / "model.safetensors", 8)
    _truncate(tmp_path / "step-000002" / "state.pt")
    with pytest.raises(UsageError, match=r"step-000003.model\.safetensors.*sha256 mismatch"):
        ckpt.load_weights(tmp_path / "step-000003")
    with pytest.raises(UsageError, match=r"step-000002.state\.pt.*truncated"):
        ckpt.load_train_state(tmp_path / "step-000002")
    skipped: list[str] = []
    found = ckpt.load_latest_intact(tmp_path, on_skip=skipped.append)
    assert found is not None
    path, state, weights = found
    assert path.name == "step-000001" and state["step"] == 1
    assert torch.equal(weights["weight"], model.weight)
    assert len(skipped) == 2
    assert "step-000003" in skipped[0] and "sha256 mismatch" in skipped[0]
    assert "step-000002" in skipped[1] and "truncated" in skipped[1]
    assert ckpt.load_latest_intact(tmp_path / "empty", on_skip=skipped.append) is None
