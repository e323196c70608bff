"""`astrobio train MODEL --quick-smoke` works for every model the plugin host lists, as a real
subprocess of the installed script (issue 13, item 18). The list comes from the installed
plugins at collection time, so a new model is covered without editing this file."""

from __future__ import annotations

import json

import pytest


def _installed_models() -> list[str]:
    from astrobio_cli.plugins import load_host

    return load_host().names("model")


@pytest.mark.slow
@pytest.mark.parametrize("model", _installed_models())
def test_quick_smoke_trains_every_installed_model(model, tmp_path, train_env, run_astrobio):
    from astrobio_cli.plugins import load_host

    host = load_host()
    status = host.status(host.get("model", model))
    if status.state != "available":
        pytest.skip(f"model '{model}' is {status.state} here: {status.reason}")
    out = tmp_path / "run"
    r = run_astrobio("train", model, "--quick-smoke", "--cpu", "--out", str(out), "--json",
                     env=train_env, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == model and summary["steps"] == 10
    assert summary["final_loss"] is not None


def test_quick_smoke_caps_the_batch_at_the_training_split(tmp_path, train_env, run_astrobio):
    """A batch larger than the smoke data (a model default or a flag) is capped at the
    training split's size, not refused: `graph-vae`'s used to be 1024 for 319 samples."""
    out = tmp_path / "run"
    r = run_astrobio("train", "graph-vae", "--quick-smoke", "--cpu", "--batch-size", "100000",
                     "--out", str(out), env=train_env, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "batch size capped" in " ".join(r.stderr.split())
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert 0 < config["batch_size"] < 100000
    assert json.loads((out / "summary.json").read_text())["steps"] == 10
