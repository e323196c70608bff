"""The light core, installed as a new user would: `pip install astrobio` without extras.

Builds the wheels (the core's is abi3: one wheel for every CPython >= 3.11, no Rust toolchain
needed to install it), installs them in a clean virtual environment with only the core's
dependencies, checks that torch is absent, and runs the installed `astrobio`: fetch against the
loopback TAP server replaying the archive's recorded answer, QTable.read of the result, smoke
(torch checks skipped, saying which extra), and a command that needs an extra (one message).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Reply

ROOT = Path(__file__).resolve().parents[2]
BODY = (ROOT / "tests" / "data" / "nasa-exoplanet-archive" / "pscomppars-default.csv").read_bytes()

pytestmark = pytest.mark.slow


def _uv() -> str:
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH: install it with `pip install uv` (README's first command)"
    return uv


@pytest.fixture(scope="module")
def core_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("core")
    wheels = tmp / "wheels"
    for project in (ROOT, ROOT / "plugins" / "data_sources"):
        subprocess.run(
            [_uv(), "build", "--wheel", "--quiet", "-o", str(wheels), str(project)],
            check=True,
            cwd=ROOT,
            timeout=900,
        )
    venv = tmp / "venv"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([_uv(), "venv", "--quiet", "-p", py, str(venv)], check=True, timeout=300)
    built = sorted(wheels.glob("*.whl"))
    subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *built],
        check=True,
        timeout=900,
    )
    return venv, built


def _run(venv: Path, *args: str, env: dict[str, str] | None = None):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    full.update(env or {})
    return subprocess.run(
        [str(venv / "bin" / "astrobio"), *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=300,
    )


def test_core_wheel_is_abi3_and_installs_without_torch(core_env):
    venv, built = core_env
    core = next(w for w in built if w.name.startswith("astrobio-"))
    assert "-abi3-" in core.name, core.name
    with zipfile.ZipFile(core) as z:
        assert any(n.endswith("_native.abi3.so") for n in z.namelist())
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.util as u; "
            "print([m for m in ('torch', 'fastapi', 'matplotlib', 'astrobio_models') "
            "if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_core_fetches_from_the_archive_and_astropy_reads_units(core_env, tmp_path):
    venv, _ = core_env
    out = tmp_path / "planets.parquet"
    with LoopbackServer() as srv:
        srv.route("GET", "/TAP/sync", Reply(200, BODY, content_type="text/csv"))
        env = {
            "ASTROBIO_SOURCES__NASA_EXOPLANET__BASE_URL": srv.base_url,
            "ASTROBIO_CACHE_DIR": str(tmp_path / "cache"),
            "ASTROBIO_DATA_DIR": str(tmp_path / "data"),
        }
        dry = _run(venv, "fetch", "nasa-exoplanet", "--dry-run", "--limit", "3", env=env)
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.startswith("ADQL: SELECT TOP 3 pl_name")
        assert srv.requests == []
        res = _run(venv, "fetch", "nasa-exoplanet", "--out", str(out), env=env)
        assert res.returncode == 0, res.stderr
        assert len(srv.hits("/TAP/sync")) == 1
    check = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sys, astropy.units as u; from astropy.table import QTable; "
            "t = QTable.read(sys.argv[1], format='parquet'); "
            "print(len(t), t['pl_orbper'].unit.to_string(), t['st_teff'].unit.to_string(), "
            "isinstance(t['pl_rade'], u.Quantity))",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["6", "d", "K", "True"]


def test_core_says_which_extra_a_command_needs(core_env):
    venv, _ = core_env
    res = _run(venv, "train", "cube-unet", "--cpu")
    assert res.returncode == 2
    assert "astrobio train needs torch" in res.stderr
    assert "pip install 'astrobio[train]'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    serve = _run(venv, "serve", "cube-unet", "--checkpoint", "x")
    assert serve.returncode == 2 and "[train] extra" in serve.stderr
    helped = _run(venv, "train", "--help")  # help still works without the extra
    assert helped.returncode == 0 and "--cpu" in helped.stdout


def test_core_smoke_skips_what_needs_torch_and_passes_the_rest(core_env, tmp_path):
    venv, _ = core_env
    res = _run(
        venv,
        "smoke",
        "--json",
        str(tmp_path / "smoke.json"),
        env={"ASTROBIO_DATA_DIR": str(tmp_path / "data")},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads((tmp_path / "smoke.json").read_text())
    by = {c["name"]: c for c in doc["checks"]}
    assert by["native"]["status"] == "passed"
    assert by["model"]["status"] == "skipped" and "[train] extra" in by["model"]["detail"]
    assert not [c for c in doc["checks"] if c["status"] == "failed"]


def test_core_generates_and_preprocesses_a_climate_cube(core_env, tmp_path):
    venv, _ = core_env
    env = {"ASTROBIO_DATA_DIR": str(tmp_path / "data"), "ASTROBIO_CACHE_DIR": str(tmp_path / "c")}
    nc, store = tmp_path / "c.nc", tmp_path / "c.zarr"
    gen = _run(venv, "fetch", "synthetic-climate", "--samples", "6", "--out", str(nc), env=env)
    assert gen.returncode == 0, gen.stderr
    pre = _run(venv, "preprocess", str(nc), str(store), "--json", env=env)
    assert pre.returncode == 0, pre.stderr
    doc = json.loads(pre.stdout)
    assert doc["out"] == str(store) and doc["backend"] == "rust"  # the abi3 extension ran
    shapes = {v["name"]: v["shape"] for v in doc["variables"]}
    assert shapes["ts"] == [6, 16, 32]
    assert (store / "stats.json").is_file() and (store / "ta").is_dir()
