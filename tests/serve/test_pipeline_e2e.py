"""From archive to served prediction, the way a user runs it (installed `astrobio` as
subprocesses, no network):

    astrobio fetch synthetic-climate --samples 24 --out clim.nc
    astrobio preprocess clim.nc clim.zarr --regrid 10 --patch 8x16
    astrobio train cube-unet --data clim.zarr --cpu ...
    astrobio eval cube-unet --checkpoint RUN --predictions held_out.jsonl
    astrobio serve cube-unet --checkpoint RUN

and the served prediction for a held-out planet equals eval's for the same planet: the request
is the body eval wrote for it; serving cuts the planet into the store's tiles, predicts and
stitches them back the same way the held-out tiles are stitched."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import numpy as np
import pytest

from tests.conftest import astrobio_exe
from tests.serve.conftest import free_port, running_server

TINY = "model:\n  width: 4\n  depth: 1\n  heads: 1\n"


def _run(*args, env, timeout=600):
    r = subprocess.run(
        [astrobio_exe(), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert r.returncode == 0, f"astrobio {' '.join(args)}:\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    pycache = root / "pycache"  # bytecode outside the tree (PYTHONDONTWRITEBYTECODE may be set)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTROBIO_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        ASTROBIO_THREADS="1",
        ASTROBIO_DATA_DIR=str(root / "data"),
        ASTROBIO_RUNS_DIR=str(root / "runs"),
        PYTHONPYCACHEPREFIX=str(pycache),
    )
    nc, store, run = root / "clim.nc", root / "clim.zarr", root / "run"
    _run("fetch", "synthetic-climate", "--samples", "24", "--out", str(nc), env=env)
    _run("preprocess", str(nc), str(store), "--regrid", "10", "--patch", "8x16", env=env)
    cfg = root / "tiny.yaml"
    cfg.write_text(TINY, encoding="utf-8")
    _run(
        "train", "cube-unet", "--data", str(store), "--cpu", "--steps", "4", "--batch-size", "4",
        "--config", str(cfg), "--out", str(run), env=env,
    )  # fmt: skip
    held = root / "held_out.jsonl"
    _run("eval", "cube-unet", "--checkpoint", str(run), "--predictions", str(held),
         "--limit", "2", env=env)  # fmt: skip
    return root, env, store, run, held


@pytest.fixture(scope="module")
def server(pipeline):
    root, env, _, run, _ = pipeline
    args = ["cube-unet", "--checkpoint", str(run), "--device", "cpu"]
    with running_server(args, env, root / "serve.log", free_port()) as base:
        yield base


def test_served_prediction_equals_evals_for_a_held_out_planet(pipeline, server):
    import xarray as xr

    _, _, store, run, held = pipeline
    records = [json.loads(line) for line in held.read_text().splitlines()]
    assert len(records) == 2
    meta = json.loads(sorted(run.glob("checkpoints/*/meta.json"))[-1].read_text())
    prov = meta["data_provenance"]
    assert [r["sample"] for r in records] == prov["split"]["val"][:2]  # held-out planets
    nlat, nlon = len(prov["grid"]["full_lat"]), len(prov["grid"]["full_lon"])
    assert (nlat, nlon) == (19, 36)  # the 10-degree grid preprocess regridded onto

    # the request body eval wrote carries the planet's own parameters (independent read)
    with xr.open_zarr(store) as ds:
        first = int(np.flatnonzero(ds["sample_sample"].values == records[0]["sample"])[0])
        for name in ("stellar_flux", "obliquity"):
            a = ds[name].attrs
            phys = float(ds[name].values[first]) * a["astrobio_std"] + a["astrobio_mean"]
            assert records[0]["input"][name] == pytest.approx(phys, rel=1e-6)

    r = httpx.post(
        f"{server}/v1/predict", json={"instances": [x["input"] for x in records]}, timeout=120
    )
    assert r.status_code == 200, r.text
    served = r.json()["predictions"]
    for got, rec in zip(served, records, strict=True):
        want = rec["prediction"]
        for key in ("ta", "hus"):
            g = np.array(got[key], dtype=np.float64)
            w = np.array(want[key], dtype=np.float64)
            assert g.shape == w.shape == (len(prov["grid"]["plev"]), nlat, nlon)
            # the rows no 8-row tile reaches (19 = 2 x 8 + 3) are null in both
            assert np.array_equal(np.isnan(g), np.isnan(w))
            assert np.isnan(g[:, 16:]).all() and np.isfinite(g[:, :16]).all()
            # same planet, same tiles, same weights: equal up to float32 round trips of the
            # inputs (the body is physical, the store normalised) and ta's 4-decimal rounding
            tol = 2e-3 if key == "ta" else 1e-6
            np.testing.assert_allclose(g, w, atol=tol, equal_nan=True)
        assert got["ts_mean"] == pytest.approx(want["ts_mean"], abs=1e-3)
        assert got["coverage"] == pytest.approx(want["coverage"], abs=1e-12)
        assert 0.9 < got["coverage"] < 1.0  # the uncovered polar rows


def test_the_served_grid_is_the_stores(pipeline, server):
    _, _, _, run, _ = pipeline
    prov = json.loads(sorted(run.glob("checkpoints/*/meta.json"))[-1].read_text())[
        "data_provenance"
    ]
    r = httpx.get(f"{server}/v1/models", timeout=30)
    assert r.status_code == 200, r.text
    text = r.text
    assert "tiles" in text and str(prov["grid"]["full_lat"][1]) in text
    bad = {
        "stellar_flux": 1361.0, "rotation_period": 1.0, "obliquity": 23.4,
        "greenhouse_factor": 0.7, "surface_albedo": 0.3, "land_mask": [[0.0] * 36] * 18,
    }  # fmt: skip
    r = httpx.post(f"{server}/v1/predict", json={"instances": [bad]}, timeout=60)
    assert r.status_code == 422 and "19 rows" in r.text
