"""`astrobio preprocess` under hostile inputs and signals (issue 13, items 11-13): a corrupt
NetCDF, variables named like the files of a store, sizes that need petabytes, `--overwrite` on
what the tool did not write, OUT that is or holds IN, and Ctrl-C at any phase."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from astrobio_cli.cli import build_app

NCEP = Path(__file__).resolve().parents[1] / "data" / "climate" / "NCEP_06_climo.nc"

pytestmark = pytest.mark.filterwarnings("ignore:.*multiple fill values:xarray.SerializationWarning")


def astrobio_exe() -> str:
    exe = Path(sys.executable).with_name("astrobio")
    return str(exe) if exe.exists() else (shutil.which("astrobio") or "astrobio")


def invoke(*args: str):
    res = CliRunner().invoke(
        build_app(), ["preprocess", *map(str, args)], prog_name="astrobio", env={"COLUMNS": "200"}
    )
    return res.exit_code, res.stderr


def series(path: Path, n: int, rename: dict[str, str] | None = None) -> Path:
    """n time steps of NCEP's T and PS, zlib-compressed NetCDF (so damage shows on reading)."""
    src = xr.open_dataset(NCEP)[["T", "PS"]]
    steps = [
        src.isel(time=0).assign(T=src.T.isel(time=0) + k, PS=src.PS.isel(time=0) - k)
        for k in range(n)
    ]
    ds = xr.concat(steps, dim="time").assign_coords(time=np.arange(n, dtype=float))
    if rename:
        ds = ds.rename(rename)
    ds.to_netcdf(path, encoding={v: {"zlib": True, "complevel": 1} for v in ds.data_vars})
    return path


def assert_one_line(code: int, stderr: str, *words: str) -> None:
    assert code != 0
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), stderr
    for w in words:
        assert w in stderr, stderr


# -- item 11: one clear line, before any work ----------------------------------------------------


def test_corrupt_netcdf_is_one_clear_line(tmp_path):
    good = series(tmp_path / "good.nc", 4)
    raw = bytearray(good.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 4000] = b"\xff" * 4000  # inside the compressed data, not the header
    bad = tmp_path / "bad.nc"
    bad.write_bytes(bytes(raw))
    code, err = invoke(bad, tmp_path / "o.zarr")
    assert_one_line(code, err, "corrupt", str(bad.name))
    assert not (tmp_path / "o.zarr").exists()
    assert not list(tmp_path.glob(".o.zarr*"))


@pytest.mark.parametrize("name", ["stats.json", "provenance.json"])
def test_variable_named_like_a_file_of_the_store_is_refused(tmp_path, name):
    src = series(tmp_path / "in.nc", 2, rename={"PS": name})
    code, err = invoke(src, tmp_path / "o.zarr")
    assert_one_line(code, err, repr(name), "rename it")
    assert code == 2
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--patch", "8x8", "--pad", str(10**12)],
        ["--regrid", "0.001"],
        ["--patch", "8x8", "--pad", str(10**8)],
    ],
)
def test_petabyte_sizes_are_refused_before_any_work(tmp_path, args):
    src = series(tmp_path / "in.nc", 2)
    t0 = time.monotonic()
    code, err = invoke(src, tmp_path / "o.zarr", "--vars", "PS", *args)
    assert time.monotonic() - t0 < 20
    assert_one_line(code, err, "would be about", "free on")
    assert not (tmp_path / "o.zarr").exists()
    assert not list(tmp_path.glob(".o.zarr*"))


def test_output_larger_than_free_disk_is_refused(tmp_path, monkeypatch):
    from astrobio_cli import preprocess as pp

    real = shutil.disk_usage
    monkeypatch.setattr(pp.shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    code, err = invoke(NCEP, tmp_path / "o.zarr", "--vars", "T")
    assert_one_line(code, err, "more than the 100 KB free on")
    assert not (tmp_path / "o.zarr").exists()


def test_one_sample_larger_than_memory_is_refused(tmp_path, monkeypatch):
    from astrobio_cli import preprocess as pp

    monkeypatch.setattr(pp, "_memory_bound", lambda: 1_000_000)
    code, err = invoke(NCEP, tmp_path / "o.zarr", "--vars", "T")
    assert_one_line(code, err, "of memory to process", "1 MB available")
    assert not (tmp_path / "o.zarr").exists()


# -- item 12: --overwrite replaces only what preprocess wrote -----------------------------------


def test_overwrite_refuses_a_directory_it_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    (out / "provenance.json").write_text(json.dumps({"source": "fetch"}))
    (out / "stats.json").write_text("{}")
    code, err = invoke(NCEP, out, "--vars", "PS", "--overwrite")
    assert_one_line(code, err, "not a store written by astrobio preprocess")
    assert code == 2
    assert (out / "thesis.tex").read_text() == "years of work"


def test_overwrite_replaces_its_own_store(tmp_path):
    out = tmp_path / "o.zarr"
    assert invoke(NCEP, out, "--vars", "PS")[0] == 0
    code, err = invoke(NCEP, out, "--vars", "T", "--overwrite")
    assert code == 0, err
    assert set(json.loads((out / "stats.json").read_text())["variables"]) == {"T"}


def test_out_that_is_or_holds_or_lies_inside_the_input_is_refused(tmp_path):
    store = tmp_path / "store.zarr"
    assert invoke(NCEP, store, "--vars", "PS")[0] == 0
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    # OUT is IN (a preprocess store is a valid input, and one this tool would replace)
    code, err = invoke(store, store, "--overwrite")
    assert_one_line(code, err, "is the input")
    # OUT holds IN: replacing OUT would delete the input
    inside = store / "in.nc"
    shutil.copy(NCEP, inside)
    code, err = invoke(inside, store, "--vars", "PS", "--overwrite")
    assert_one_line(code, err, "holds the input")
    assert inside.exists()
    inside.unlink()
    # OUT inside IN: it would write into the input store
    code, err = invoke(store, store / "sub.zarr", "--vars", "PS")
    assert_one_line(code, err, "lies inside the input")
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


# -- item 13: Ctrl-C stops within a second at any phase, exit 130, nothing left ------------------


def _ignore_sigint() -> None:  # what a shell does to a job started with `&` from a script
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _opened(pid: int, path: Path) -> bool:
    fd = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(p) == str(path.resolve()) for p in fd.iterdir())
    except OSError:
        return False


@pytest.fixture(scope="module")
def long_input(tmp_path_factory) -> Path:
    return series(tmp_path_factory.mktemp("long") / "long.nc", 40)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
@pytest.mark.parametrize("inherited", ["default", "ignored"])
@pytest.mark.parametrize("phase", ["stats", "write"])
def test_sigint_stops_within_a_second_and_leaves_nothing(tmp_path, long_input, phase, inherited):
    out = tmp_path / "o.zarr"
    # --regrid 0.5: seconds of work per pass on one thread; one small tile per sample keeps
    # the output (and the disk it needs) small.
    args = ["--regrid", "0.5", "--patch", "8x8", "--stride", "400x720", "--split", "all"]
    if phase == "write":
        args += ["--stats-from", str(_stats(tmp_path, long_input))]
    env = {**os.environ, "ASTROBIO_THREADS": "1"}
    proc = subprocess.Popen(
        [astrobio_exe(), "preprocess", str(long_input), str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_ignore_sigint if inherited == "ignored" else None,
    )
    tmp = out.parent / f".{out.name}.tmp-{proc.pid}"
    deadline = time.monotonic() + 120
    if phase == "stats":
        while not _opened(proc.pid, long_input) and time.monotonic() < deadline:
            time.sleep(0.01)  # the input is open: the stats pass is next
        time.sleep(0.5)
    else:
        while not tmp.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    assert tmp.exists() == (phase == "write"), "not in the phase this test means"
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    took = time.monotonic() - t0
    assert proc.returncode == 130, err.decode()[-2000:]
    assert took < 1.5, f"took {took:.2f} s to stop"
    assert "interrupted" in err.decode()
    assert "Traceback" not in err.decode()
    assert not out.exists()
    assert not list(tmp_path.glob(".o.zarr*"))


def _stats(tmp_path: Path, src: Path) -> Path:
    small = tmp_path / "stats.zarr"
    code, err = invoke(src, small, "--chunk", "40", "--split", "all")
    assert code == 0, err
    return small / "stats.json"
