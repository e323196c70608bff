"""`astrobio eval` rebuilds a run's data from what its checkpoint carries: the normalisation
statistics and the split of the run, not statistics recomputed from the training samples."""

from __future__ import annotations

import json
import math

import numpy as np


def test_eval_does_not_recompute_stats_from_the_training_samples(
    run_astrobio, train_env, tmp_path, tiny_config
):
    import xarray as xr

    nc = tmp_path / "clim.nc"
    r = run_astrobio("fetch", "synthetic-climate", "--samples", "20", "--out", str(nc),
                     env=train_env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    r = run_astrobio(
        "train", "cube-unet", "--data", str(nc), "--cpu", "--steps", "2", "--batch-size", "4",
        "--config", str(tiny_config), "--out", str(run), env=train_env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads(sorted(run.glob("checkpoints/*/meta.json"))[-1].read_text())
    prov = meta["data_provenance"]
    train_idx = prov["split"]["train"]

    def evaluate():
        r = run_astrobio("eval", "cube-unet", "--checkpoint", str(run), "--json", env=train_env)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout)

    before = evaluate()
    # Shift the training samples' temperatures by +40 K in the file: stats recomputed from them
    # would move, and with them every normalised held-out input and target.
    with xr.open_dataset(nc) as ds:
        changed = ds.load()
    ta = changed["ta"].values.copy()
    ta[train_idx] += 40.0
    changed["ta"] = (changed["ta"].dims, ta, changed["ta"].attrs)
    changed.to_netcdf(tmp_path / "changed.nc")
    (tmp_path / "changed.nc").replace(nc)
    after = evaluate()

    assert after["data"]["stats"] == prov["stats"]  # the checkpoint's, not the file's
    for key in ("rmse", "rmse_ta_K", "rmse_hus_gkg"):
        assert math.isfinite(before["model"][key])
        assert after["model"][key] == before["model"][key]
    # the baselines are fitted on the (changed) training samples: they do move
    assert after["baselines"]["climatology"]["rmse"] != before["baselines"]["climatology"]["rmse"]
    assert np.isfinite(prov["stats"]["variables"]["ta"]["mean"])
