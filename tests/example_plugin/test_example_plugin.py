"""The example third-party plugin (examples/astrobio-example-plugin) works end to end.

Everything goes through real subprocesses of the installed `astrobio` script, as a user would
run it; numbers are checked against float64 NumPy recomputations, not against the plugin.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DIST = "astrobio-example-plugin"
PLANETS = [
    ["Mercury", "0.383", "0.387", "87.97"],
    ["Venus", "0.949", "0.723", "224.7"],
    ["Earth", "1.0", "1.0", "365.26"],
    ["Mars", "0.532", "1.524", "686.98"],
]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Isolated settings dirs, one thread, and a bytecode cache outside the tree: with
    PYTHONDONTWRITEBYTECODE set, every subprocess would otherwise recompile torch's sources."""
    root = tmp_path_factory.mktemp("example-plugin")
    out = {k: v for k, v in os.environ.items() if not k.startswith("ASTROBIO_")}
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        (root / var).mkdir()
        out[var] = str(root / var)
    out.update(
        ASTROBIO_THREADS="1",
        ASTROBIO_RUNS_DIR=str(root / "runs"),
        PYTHONPYCACHEPREFIX=str(root / "pycache"),
    )
    return out


def astrobio(*args: str, env: dict[str, str], timeout: float = 180):
    exe = str(Path(sys.executable).with_name("astrobio"))
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(env, tmp_path_factory) -> Path:
    """One `astrobio train example-mlp --quick-smoke` run, shared by the train and eval tests."""
    run = tmp_path_factory.mktemp("mlp") / "run"
    res = astrobio("train", "example-mlp", "--quick-smoke", "--out", str(run), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return run


def test_plugins_list_shows_every_contribution(env):
    res = astrobio("plugins", "list", "--json", env=env)
    assert res.returncode == 0, res.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(res.stdout)}
    for key in (("model", "example-mlp"), ("data-source", "example-constants"),
                ("attention", "example-naive")):  # fmt: skip
        assert key in rows, f"{key} not listed"
        assert rows[key]["distribution"] == DIST and rows[key]["plugin"] == "example"
        assert rows[key]["status"] == "available", rows[key]
    # The fourth contribution is a command (commands are not specs, so not in the list).
    res = astrobio("example-hello", "--name", "Titan", env=env)
    assert res.returncode == 0 and res.stdout.strip() == "hello Titan, from " + DIST


def test_quick_smoke_writes_a_checkpoint(smoke_run):
    step = smoke_run / "checkpoints" / "step-000010"
    assert step.is_dir(), sorted(p.name for p in smoke_run.rglob("*"))
    assert list(step.glob("*.safetensors")), sorted(p.name for p in step.iterdir())
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert summary["model"] == "example-mlp" and summary["steps"] == 10


def test_eval_beats_the_mean_predictor(smoke_run, env):
    res = astrobio("eval", "example-mlp", "--checkpoint", str(smoke_run), "--json", env=env)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["primary_metric"] == ["rmse_K", "lower"]
    assert set(report["model"]) == {"rmse_K", "mae_K"}
    assert set(report["baselines"]) == {"mean"}
    assert report["data"] == {
        "generator": "synthetic_table", "seed": 0, "rows": 512, "train": 384, "val": 128
    }  # fmt: skip

    # The mean predictor's scores, recomputed in float64 from the same table and split.
    from astrobio_example.mlp import synthetic_table

    teq = synthetic_table(512, 3.0, 0)["teq"]
    perm = np.random.default_rng(0).permutation(512)
    val, train = teq[perm[:128]], teq[perm[128:]]
    err = train.mean() - val
    mean = report["baselines"]["mean"]
    assert mean["rmse_K"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-5)
    assert mean["mae_K"] == pytest.approx(np.mean(np.abs(err)), rel=1e-5)
    # Ten steps at lr 3e-2 already halve the mean predictor's error (measured: 50.8 vs 101.6 K).
    assert report["model"]["rmse_K"] < 0.75 * mean["rmse_K"], report
    assert report["vs_baseline"]["mean"] > 0.25


def test_builtin_table_follows_the_equilibrium_temperature_formula():
    from astrobio_example.mlp import equilibrium_temperature, synthetic_table

    # Earth: S = 1361 W/m^2, Bond albedo 0.306, full redistribution -> about 254 K (textbook).
    assert float(equilibrium_temperature(1.0, 0.306, 0.25)) == pytest.approx(254.0, abs=1.0)
    t = synthetic_table(4000, 3.0, 1)
    sigma = 5.670374419e-8
    exact = (t["redistribution"] * 1361.0 * t["flux"] * (1 - t["albedo"]) / sigma) ** 0.25
    noise = t["teq"] - exact
    assert abs(noise.mean()) < 0.2 and noise.std() == pytest.approx(3.0, rel=0.05)
    assert np.array_equal(synthetic_table(50, 3.0, 7)["teq"], synthetic_table(50, 3.0, 7)["teq"])


def test_factory_object_passes_check_plugin_and_rejects_unknown_options(tmp_path):
    from astrobio_cli.errors import UsageError
    from astrobio_cli.plugins import get_host
    from astrobio_cli.training.plugin import check_plugin

    spec = get_host().get("model", "example-mlp")
    plugin = spec.factory({})
    assert check_plugin(plugin) == []
    assert plugin.data_kind in spec.data_kinds
    assert check_plugin(spec.factory(plugin.smoke_config)) == []
    with pytest.raises(UsageError, match=r"'width'.*options are"):
        spec.factory({"width": 3})
    bad = tmp_path / "bad.csv"
    bad.write_text("flux,albedo\n1,0.3\n", encoding="utf-8")
    with pytest.raises(UsageError, match="redistribution, teq"):
        plugin.make_datasets(bad, seed=0)


def test_registration_does_not_import_torch(env):
    code = "import sys, astrobio_example; assert 'torch' not in sys.modules, 'torch imported'"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_fetch_writes_the_table_atomically(env, tmp_path):
    out = tmp_path / "sub" / "planets.csv"
    res = astrobio("fetch", "example-constants", "--out", str(out), env=env)
    assert res.returncode == 0, res.stderr
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["pl_name", "pl_rade", "pl_orbsmax", "pl_orbper"], *PLANETS]
    assert sorted(p.name for p in out.parent.iterdir()) == ["planets.csv"]  # no temp left

    pq_out = tmp_path / "planets.parquet"
    assert astrobio("fetch", "example-constants", "--out", str(pq_out), env=env).returncode == 0
    import pyarrow.parquet as pq

    table = pq.read_table(pq_out)
    assert table.column("pl_name").to_pylist() == [r[0] for r in PLANETS]
    assert table.column("pl_orbper").to_pylist() == [float(r[3]) for r in PLANETS]
    assert table.schema.field("pl_orbsmax").metadata == {b"unit": b"au"}

    res = astrobio("fetch", "example-constants", "--out", str(tmp_path / "x.txt"), env=env)
    assert res.returncode != 0 and ".csv or .parquet" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "x.txt").exists()
