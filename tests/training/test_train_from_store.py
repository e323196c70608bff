"""A preprocessed store is a first-class training input: the commands a user runs, as
subprocesses of the installed `astrobio` (no network): fetch -> preprocess -> train -> eval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.training.conftest import TINY_UNET

TINY_CNN = "model:\n  width: 4\n  blocks: 1\n"
SAMPLES = 24
TRAIN = math.ceil(0.8 * SAMPLES)  # preprocess --split train: the first 80 % of the samples


@pytest.fixture(scope="module")
def store(tmp_path_factory, pycache) -> Path:
    """fetch synthetic-climate --samples 24 -> preprocess --split train --regrid 10 --patch 8x16."""
    import os

    from tests.training.conftest import astrobio

    root = tmp_path_factory.mktemp("store")
    env = dict(os.environ, ASTROBIO_THREADS="1", PYTHONPYCACHEPREFIX=str(pycache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    nc, out = root / "clim.nc", root / "clim.zarr"
    r = astrobio("fetch", "synthetic-climate", "--samples", str(SAMPLES), "--out", str(nc), env=env)
    assert r.returncode == 0, r.stderr
    r = astrobio(
        "preprocess", str(nc), str(out), "--split", "train", "--regrid", "10", "--patch", "8x16",
        env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize(
    ("model", "config"), [("cube-unet", TINY_UNET), ("datacube-cnn", TINY_CNN)]
)
def test_trains_and_evaluates_from_a_preprocessed_store(
    store, model, config, run_astrobio, train_env, tmp_path
):
    cfg = tmp_path / "model.yaml"
    cfg.write_text(config, encoding="utf-8")
    run = tmp_path / "run"
    r = run_astrobio(
        "train", model, "--data", str(store), "--cpu", "--steps", "2", "--batch-size", "4",
        "--config", str(cfg), "--out", str(run), "--json", env=train_env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((run / "run_card.json").read_text())
    text = json.dumps(card)
    assert "preprocessed" in text and "stats" in text
    # the checkpoint carries what serving and eval need: stats, schema, split, grid
    metas = sorted(run.glob("checkpoints/*/meta.json"))
    assert metas, list(run.rglob("*"))
    prov = json.loads(metas[-1].read_text())["data_provenance"]
    assert prov["form"] == "preprocessed" and prov["patch"] is not None
    assert prov["split"]["train"] == list(range(TRAIN))  # the samples the stats came from
    assert prov["split"]["val"] == list(range(TRAIN, SAMPLES))
    st = json.loads((store / "stats.json").read_text())["variables"]
    assert prov["stats"]["variables"]["ta"]["mean"] == st["ta"]["mean"]
    assert set(prov["schema"]["variables"]) >= {"stellar_flux", "ta", "hus", "rsdt"}
    if model == "cube-unet":
        assert "skipped" in prov["energy_balance"]  # tiles are not whole planets

    r = run_astrobio("eval", model, "--checkpoint", str(run), "--json", env=train_env)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    flat = json.dumps(report)
    assert "rmse" in flat
    model_metrics = report.get("model") or report.get("metrics") or report
    rmse = _find(model_metrics, "rmse")
    assert rmse is not None and math.isfinite(rmse)


def test_a_store_whose_stats_saw_every_sample_is_refused(
    store, run_astrobio, train_env, tmp_path, tiny_config
):
    seen = tmp_path / "seen.zarr"
    nc = store.parent / "clim.nc"
    r = run_astrobio("preprocess", str(nc), str(seen), "--split", "all", env=train_env)
    assert r.returncode == 0, r.stderr
    r = run_astrobio(
        "train", "cube-unet", "--data", str(seen), "--cpu", "--steps", "1",
        "--config", str(tiny_config), "--out", str(tmp_path / "run"), env=train_env,
    )  # fmt: skip
    assert r.returncode != 0
    assert "--split train" in r.stderr


def _find(obj, key):
    """The first number under `key` anywhere in a nested report."""
    if isinstance(obj, dict):
        if isinstance(obj.get(key), int | float):
            return float(obj[key])
        for v in obj.values():
            got = _find(v, key)
            if got is not None:
                return got
    if isinstance(obj, list):
        for v in obj:
            got = _find(v, key)
            if got is not None:
                return got
    return None


def test_dataloader_workers_train_exactly_as_the_training_process(
    store, run_astrobio, train_env, tmp_path, tiny_config
):
    """`--workers 2` (DataLoader worker processes read the store) and `--workers 0` (the loop
    reads it) feed the same batches: the same losses and held-out metrics, to the bit."""
    summaries = []
    for workers in (0, 2):
        run = tmp_path / f"run-w{workers}"
        r = run_astrobio(
            "train", "cube-unet", "--data", str(store), "--cpu", "--steps", "3",
            "--batch-size", "4", "--config", str(tiny_config), "--workers", str(workers),
            "--out", str(run), "--json", env=train_env,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"workers: {workers}" in (run / "config.yaml").read_text()
        summaries.append(json.loads((run / "summary.json").read_text()))
    assert summaries[0]["final_loss"] == summaries[1]["final_loss"]
    assert summaries[0]["eval"] == summaries[1]["eval"]
