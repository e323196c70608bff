"""`astrobio smoke`: the real command on this machine, and checks shown to fail when they should."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from astrobio_cli import smoke
from astrobio_cli.plugins import PluginHost
from astrobio_cli.smoke import CheckResult, judge_requirements, run_smoke

HERE = Path(__file__).resolve().parent


def _install_fake_dist(root: Path, dist: str, ep_name: str, module: str, source: str) -> None:
    """A real installed distribution as importlib.metadata sees one: a module and a dist-info."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.2.0\n")
    (info / "entry_points.txt").write_text(f"[astrobio]\n{ep_name} = {module}\n")


def _by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


# -- the real thing -----------------------------------------------------------------------------


@pytest.mark.slow
def test_full_smoke_on_this_machine(tmp_path, run_cli):
    """Every CPU check passes, GPU checks are skipped with reasons, exit 0; every registered
    model went through init, forward, backward, step, checkpoint and bf16 autocast."""
    out = tmp_path / "smoke.json"
    res = run_cli("smoke", "--json", str(out), env={"ASTROBIO_DATA_DIR": str(tmp_path / "d")})
    report = json.loads(out.read_text())
    failed = [c for c in report["checks"] if c["status"] == "failed"]
    assert res.returncode == 0, (failed, res.stdout[-3000:], res.stderr[-3000:])
    assert report["ok"] is True and not failed
    checks = _by_name(report)
    for name in ("accelerator", "native", "data", "attention[eager]", "attention-auto"):
        assert checks[name]["status"] == "passed", checks[name]
    assert "NCEP" in checks["native"]["detail"] and "870 NaN" in checks["native"]["detail"]
    assert "auto picks" in checks["attention-auto"]["detail"]
    models = json.loads(run_cli("plugins", "list", "--kind", "model", "--json").stdout)
    for row in models:
        for base in ("model-init", "model-forward", "model-backward", "model-step", "checkpoint"):
            want = "passed" if row["status"] == "available" else "skipped"
            assert checks[f"{base}[{row['name']}]"]["status"] == want, checks[
                f"{base}[{row['name']}]"
            ]
    # No GPU here: skipped with a reason, counted apart from the passes, never as one.
    assert checks["gpu"]["status"] == "skipped" and "CUDA" in checks["gpu"]["detail"]
    assert report["counts"]["skipped"] >= 1
    assert report["counts"]["passed"] == sum(c["status"] == "passed" for c in report["checks"])
    for c in report["checks"]:
        if c["status"] == "skipped":
            assert c["detail"], f"{c['name']} skipped without a reason"
    assert "skipped is not passed" in res.stdout and "ready" in res.stdout


def test_require_gpu_fails_without_one(run_cli):
    res = run_cli("smoke", "--only", "accelerator", "--require", "gpu")
    assert res.returncode == 1
    assert "required gpu: failed" in " ".join(res.stdout.split())
    assert "NOT ready" in res.stdout


def test_require_something_that_did_not_run_fails(run_cli, tmp_path):
    out = tmp_path / "r.json"
    res = run_cli("smoke", "--only", "imports", "--require", "native", "--json", str(out))
    assert res.returncode == 1
    (req,) = json.loads(out.read_text())["requirements"]
    assert req["item"] == "native" and req["status"] == "failed"
    assert "no check named 'native' ran" in req["detail"]


def test_unknown_group_is_a_usage_error(run_cli):
    res = run_cli("smoke", "--only", "imports,atention")
    assert res.returncode == 2
    assert "atention" in res.stderr and "attention" in res.stderr
    assert "Traceback" not in res.stderr


def test_broken_third_party_plugin_is_a_failure_naming_it(tmp_path, run_cli):
    _install_fake_dist(
        tmp_path, "astrobio-broken-thing", "broken-thing", "broken_thing_mod", "import nope_xyz\n"
    )
    out = tmp_path / "r.json"
    res = run_cli(
        "smoke", "--only", "imports", "--json", str(out), env={"PYTHONPATH": str(tmp_path)}
    )
    assert res.returncode == 1
    checks = _by_name(json.loads(out.read_text()))
    bad = checks["import[broken-thing]"]
    assert bad["status"] == "failed"
    assert "astrobio-broken-thing" in bad["detail"] and "nope_xyz" in bad["detail"]
    # The rest go on.
    assert checks["import[models]"]["status"] == "passed"
    assert checks["import[attention]"]["status"] == "passed"


def test_wrong_backend_and_plugin_checks_through_the_cli(tmp_path, run_cli):
    _install_fake_dist(
        tmp_path,
        "astrobio-wrong-attention",
        "wrong-attention",
        "fake_dist_wrong_attention",
        (HERE / "fake_dist_wrong_attention.py").read_text(),
    )
    out = tmp_path / "r.json"
    res = run_cli(
        "smoke",
        "--only",
        "attention,plugins",
        "--device",
        "cpu",
        "--json",
        str(out),
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert res.returncode == 1
    checks = _by_name(json.loads(out.read_text()))
    wrong = checks["attention[toy-wrong-scale]"]
    assert wrong["status"] == "failed" and "float64 reference" in wrong["detail"]
    assert checks["attention[eager]"]["status"] == "passed"
    assert checks["plugin[toy-wrong-scale:ok]"]["status"] == "passed"
    assert checks["plugin[toy-wrong-scale:skip]"]["status"] == "skipped"
    assert checks["plugin[toy-wrong-scale:skip]"]["detail"] == "needs the toy accelerator"
    fail = checks["plugin[toy-wrong-scale:fail]"]
    assert fail["status"] == "failed" and "bad value" in fail["detail"]


# -- checks that must fail, in process with toy models -----------------------------------------


@pytest.fixture
def toy_host():
    from tests.smoke import smoke_toys

    host = PluginHost()
    host.add_module("toys", smoke_toys)
    return host


def test_toy_models_each_flaw_is_caught(toy_host):
    report = run_smoke(toy_host, only=["model", "checkpoint", "precision"], device="cpu")
    got = {c.name: c for c in report.checks}
    for base in ("model-init", "model-forward", "model-backward", "model-step", "checkpoint"):
        assert got[f"{base}[toy-good]"].status == "passed", got[f"{base}[toy-good]"]
    assert got["precision-bf16[toy-good]"].status == "passed"
    assert got["precision-fp16[toy-good]"].status == "skipped"

    nan = got["model-forward[toy-nan]"]
    assert nan.status == "failed" and "not finite" in nan.detail
    for base in ("model-backward", "model-step"):  # not run, and not passed
        c = got[f"{base}[toy-nan]"]
        assert c.status == "skipped" and "model-forward[toy-nan] failed" in c.detail

    forgetful = got["checkpoint[toy-forgetful]"]
    assert forgetful.status == "failed" and "differ" in forgetful.detail

    away = got["model-init[toy-away]"]
    assert away.status == "skipped" and away.detail == "needs a toy accelerator"
    assert not report.ok


def test_cuda_requested_without_one_fails(toy_host):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    report = run_smoke(toy_host, only=["model"], device="cuda")
    init = {c.name: c for c in report.checks}["model-init[toy-good]"]
    assert init.status == "failed" and "no usable CUDA device" in init.detail


def test_native_check_catches_a_wrong_extension(monkeypatch):
    from astrobio_cli import _native

    assert "NCEP" in smoke._native()  # the real extension passes
    real_stats, real_regrid = _native.stats, _native.regrid

    def stats_off_by_a_little(data, threads=0):
        count, mean, std, lo, hi = real_stats(data, threads)
        return count, [m * (1 + 1e-6) for m in mean], std, lo, hi

    monkeypatch.setattr(_native, "stats", stats_off_by_a_little)
    with pytest.raises(RuntimeError, match="native stats mean"):
        smoke._native()
    monkeypatch.setattr(_native, "stats", real_stats)

    def regrid_shifted(data, out, *args):
        real_regrid(data, out, *args)
        out[..., 0] = out[..., 1]  # one longitude column wrong

    monkeypatch.setattr(_native, "regrid", regrid_shifted)
    with pytest.raises(RuntimeError, match="regrid"):
        smoke._native()


def test_native_disabled_is_a_skip_not_a_pass(monkeypatch):
    from astrobio_cli import settings

    monkeypatch.setenv("ASTROBIO_NATIVE", "0")
    settings.configure(None, None)
    with pytest.raises(smoke.Skip, match="ASTROBIO_NATIVE=0"):
        smoke._native()


def test_shipped_slice_is_the_real_ncep_cube():
    """The shipped slice equals a fresh cut of the NCEP file (when the shared data is here)."""
    import numpy as np

    src = HERE.parents[1].parent / "shared/data/climate/NCEP_06_climo.nc"
    if not src.exists():
        pytest.skip(f"{src} is not here")
    import warnings

    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_dataset(src)
    cube = smoke.load_ncep_slice()["cube"]
    t = ds["T"].sel(lev=ds["lev2"].values).values[0, :, ::4, ::4]
    ok = ~np.isnan(cube[0, 0])
    assert np.array_equal(cube[0, 0][ok], t[ok])
    below = ds["lev2"].values[:, None, None] > ds["PS"].values[0, ::4, ::4][None]
    assert np.array_equal(~ok, below)


def _r(name, group, status):
    return CheckResult(name, group, status, "why", 0.0)


def test_requirements_skip_is_never_a_pass():
    results = [
        _r("gpu", "accelerator", "skipped"),
        _r("native", "native", "passed"),
        _r("attention[triton]", "attention", "skipped"),
        _r("attention[eager]", "attention", "passed"),
        _r("model-init[cube-unet]", "model", "passed"),
        _r("model-forward[cube-unet]", "model", "failed"),
    ]
    got = {
        r.item: r.status
        for r in judge_requirements(
            results, ["gpu", "native", "triton", "eager", "cube-unet", "nothing"], smoke.GROUPS
        )
    }
    assert got == {
        "gpu": "failed",
        "native": "passed",
        "triton": "failed",
        "eager": "passed",
        "cube-unet": "failed",
        "nothing": "failed",
    }
