"""`astrobio eval` over runs of several seeds: every figure as mean ± std, per run kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrobio_cli.training.evaluate import mean_std, relative_gains


def test_mean_std_matches_numpy_sample_std():
    rng = np.random.default_rng(3)
    for n in (2, 3, 7):
        v = rng.normal(size=n).tolist()
        m, s = mean_std(v)
        assert m == pytest.approx(np.mean(v), abs=1e-15)
        assert s == pytest.approx(np.std(v, ddof=1), rel=1e-12)
    assert mean_std([4.0]) == (4.0, 0.0)


def test_relative_gains_sign_follows_the_metric_direction():
    base = {"a": {"rmse": 2.0}, "b": {"rmse": 0.5}, "c": {"auc": 0.9}}
    g = relative_gains({"rmse": 1.0}, base, "rmse", "lower")
    assert g == {"a": 0.5, "b": -1.0}  # beats a by 50%, loses to b; c has no rmse
    g = relative_gains({"auc": 0.8}, {"x": {"auc": 0.9}}, "auc", "higher")
    assert g["x"] == pytest.approx(-0.1 / 0.9)


def test_eval_over_seeds_is_the_mean_and_std_of_single_evals(
    tmp_path, tiny_config, train_env, run_astrobio
):
    runs = []
    for seed in (0, 1):
        out = tmp_path / f"run-{seed}"
        r = run_astrobio("train", "cube-unet", "--cpu", "--config", str(tiny_config), "--steps",
                         "2", "--seed", str(seed), "--out", str(out), env=train_env)  # fmt: skip
        assert r.returncode == 0, r.stderr
        runs.append(out)
    singles = []
    for run in runs:
        r = run_astrobio("eval", "cube-unet", "--checkpoint", str(run), "--json", env=train_env)
        assert r.returncode == 0, r.stderr
        singles.append(json.loads(r.stdout))
    args = [a for run in runs for a in ("--checkpoint", str(run))]
    r = run_astrobio("eval", "cube-unet", *args, "--json", env=train_env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["runs"] == 2 and rep["seeds"] == [0, 1]
    for k in ("rmse", "r2"):
        vals = [s["model"][k] for s in singles]
        assert rep["model"][k] == pytest.approx(np.mean(vals), rel=1e-12)
        assert rep["model_std"][k] == pytest.approx(np.std(vals, ddof=1), rel=1e-9, abs=1e-15)
    assert set(rep["baselines"]) == set(singles[0]["baselines"])
    for name in rep["baselines"]:
        vals = [s["baselines"][name]["rmse"] for s in singles]
        assert rep["baselines"][name]["rmse"] == pytest.approx(np.mean(vals), rel=1e-12)
    # two different seeds really trained two different models
    assert singles[0]["model"]["rmse"] != singles[1]["model"]["rmse"]
    assert rep["model_std"]["rmse"] > 0
    # a 2-step model loses to the climatology, and eval says so
    assert ("climatology" in rep["loses_to"]) == (rep["vs_baseline"]["climatology"] < 0)

    r = run_astrobio("eval", "cube-unet", *args, env=train_env)
    assert r.returncode == 0, r.stderr
    assert "±" in r.stdout and "2 seeds (0, 1)" in " ".join(r.stdout.split())

    r = run_astrobio("eval", "cube-unet", "--checkpoint", str(runs[0]), "--checkpoint",
                     str(runs[0]), env=train_env)  # fmt: skip
    assert r.returncode == 2
    assert "same seed" in r.stderr and "Traceback" not in r.stderr
