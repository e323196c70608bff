"""`astrobio preprocess` on the real NCEP reanalysis file, run as a subprocess of the installed
script: shapes, units, stats against xarray's own reductions, errors, interrupted runs."""

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

TEST_DATA = Path(__file__).resolve().parents[1] / "data"
NCEP = TEST_DATA / "climate" / "NCEP_06_climo.nc"


def astrobio_exe() -> str:
    """The `astrobio` script installed next to this interpreter."""
    exe = Path(sys.executable).with_name("astrobio")
    return str(exe) if exe.exists() else (shutil.which("astrobio") or "astrobio")


# NCEP declares two fill values; xarray masks both and says so.
pytestmark = pytest.mark.filterwarnings("ignore:.*multiple fill values:xarray.SerializationWarning")


def open_ncep() -> xr.Dataset:
    return xr.open_dataset(NCEP)


class Result:
    def __init__(self, res) -> None:
        self.returncode, self.stdout, self.stderr = res.exit_code, res.stdout, res.stderr


def invoke(*args: str) -> Result:
    """In-process run (no interpreter start): for the many small cases."""
    res = CliRunner().invoke(build_app(), list(args), prog_name="astrobio", env={"COLUMNS": "200"})
    return Result(res)


def stats_json(out: Path) -> dict:
    return json.loads((out / "stats.json").read_text())["variables"]


def test_ncep_groups_by_level_keeps_units_and_matches_xarray(run_cli, tmp_path):
    out = tmp_path / "ncep.zarr"
    r = run_cli("preprocess", str(NCEP), str(out), "--vars", "T,SHUM,PS", "--fill", "mean")
    assert r.returncode == 0, r.stderr
    src = open_ncep()
    got = xr.open_zarr(out)
    st = stats_json(out)
    for name in ("T", "SHUM", "PS"):
        assert got[name].dims == src[name].dims  # T on lev (17), SHUM on lev2 (8), PS surface
        assert got[name].shape == src[name].shape
        assert got[name].attrs["units"] == src[name].attrs["units"]
        assert got[name].attrs["long_name"] == src[name].attrs["long_name"]
        raw = src[name].astype("float64")
        mean, std = float(raw.mean(skipna=True)), float(raw.std(skipna=True))
        assert st[name]["mean"] == pytest.approx(mean, rel=1e-9)
        assert st[name]["std"] == pytest.approx(std, rel=1e-9)
        assert st[name]["count"] == int(raw.count())
        assert st[name]["units"] == src[name].attrs["units"]
        want = ((raw - mean) / std).values
        np.testing.assert_allclose(got[name].values, want, rtol=1e-5, atol=1e-5)
        assert got[name].attrs["astrobio_mean"] == pytest.approx(mean, rel=1e-9)
    np.testing.assert_array_equal(got["lev"].values, src["lev"].values)
    np.testing.assert_array_equal(got["lev2"].values, src["lev2"].values)
    np.testing.assert_array_equal(got["lat"].values, src["lat"].values)
    assert "T" in r.stdout and "stats.json" in r.stdout


def test_regrid_and_patches_give_training_samples(run_cli, tmp_path):
    out = tmp_path / "tiles.zarr"
    r = run_cli(
        "preprocess",
        str(NCEP),
        str(out),
        "--vars",
        "T,SHUM",
        "--regrid",
        "2.5",
        "--patch",
        "32x32",
        "--stride",
        "16",
        "--pad",
        "4",
        "--fill",
        "0",
        "--threads",
        "2",
    )
    assert r.returncode == 0, r.stderr
    got = xr.open_zarr(out)
    # 73 x 144 grid: lat tiles (73 + 8 - 32) // 16 + 1 = 4, lon tiles 144 / 16 = 9
    assert got["T"].shape == (36, 17, 32, 32)
    assert got["SHUM"].shape == (36, 8, 32, 32)
    assert got["T"].dims == ("sample", "lev", "lat", "lon")
    assert got["grid_lat"].size == 73 and got["grid_lon"].size == 144
    assert got["T"].attrs["units"] == "K"
    assert not np.isnan(got["T"].values).any()  # padding filled with the raw value 0
    # a tile fully inside the grid equals the normalised regridded field there
    st = stats_json(out)["T"]
    k = int(np.flatnonzero((got.patch_lat0.values == 12) & (got.patch_lon0.values == 32))[0])
    src = open_ncep()
    rg = (
        src["T"]
        .astype("float64")
        .interp(lat=got["grid_lat"].values[12:44], lon=got["grid_lon"].values[32:64])
    )
    want = ((rg - st["mean"]) / st["std"]).values[0]
    np.testing.assert_allclose(got["T"].values[k], want, rtol=1e-4, atol=1e-4)
    # the store is a training set: each tile is one sample of CubeDataset
    from astrobio_cli.data.datasets import CubeDataset

    train = CubeDataset(out, "train", inputs=("T",), targets=("T",), seed=0)
    assert len(train) > 0
    x0, y0 = train[0]
    assert tuple(x0.shape) == (1, 17, 32, 32) and tuple(y0.shape) == (1, 17, 32, 32)
    # reusing the stats on the same data reproduces the store exactly
    again = tmp_path / "again.zarr"
    r = invoke(
        "preprocess",
        str(NCEP),
        str(again),
        "--vars",
        "T,SHUM",
        "--regrid",
        "2.5",
        "--patch",
        "32x32",
        "--stride",
        "16",
        "--pad",
        "4",
        "--fill",
        "0",
        "--stats-from",
        str(out / "stats.json"),
    )
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(xr.open_zarr(again)["T"].values, got["T"].values)


def make_series(path: Path, n: int, nan_var: str | None = None) -> xr.Dataset:
    """n time steps of NCEP's T and PS (shifted per step), as NetCDF or Zarr (by suffix)."""
    src = open_ncep()[["T", "PS"]]
    steps = [
        src.isel(time=0).assign(T=src.T.isel(time=0) + k, PS=src.PS.isel(time=0) - k)
        for k in range(n)
    ]
    ds = xr.concat(steps, dim="time").assign_coords(time=np.arange(n, dtype=float))
    if nan_var:
        ds[nan_var][:] = np.nan
    if path.suffix == ".zarr":
        ds.to_zarr(path, zarr_format=2, consolidated=True)
    else:
        ds.to_netcdf(path)
    return ds


def test_train_split_stats_use_only_the_first_samples(tmp_path):
    ds = make_series(tmp_path / "series.zarr", 10)  # Zarr input this time
    out = tmp_path / "split.zarr"
    r = invoke(
        "preprocess",
        str(tmp_path / "series.zarr"),
        str(out),
        "--split",
        "train",
        "--train-fraction",
        "0.7",
        "--chunk",
        "3",
    )
    assert r.returncode == 0, r.stderr
    st = stats_json(out)
    train = ds["T"].isel(time=slice(0, 7)).astype("float64")
    assert st["T"]["mean"] == pytest.approx(float(train.mean()), rel=1e-9)
    assert st["T"]["std"] == pytest.approx(float(train.std()), rel=1e-9)
    got = xr.open_zarr(out)
    assert got["T"].shape == (10, 17, 64, 128)  # every sample is written, in order
    np.testing.assert_array_equal(got["time"].values, np.arange(10.0))
    want = (ds["T"].values[9].astype(np.float64) - st["T"]["mean"]) / st["T"]["std"]
    np.testing.assert_allclose(got["T"].values[9], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.nc", "OUT"], "does not exist"),
        (["NCEP", "OUT", "--vars", "T,NOPE"], "no variable NOPE"),
        (["NCEP", "OUT", "--patch", "32by32"], "--patch must look like 32x32"),
        (["NCEP", "OUT", "--patch", "128x32", "--vars", "T"], "does not fit 64 latitudes"),
        (["NCEP", "OUT", "--fill", "median"], "fill must be"),
        (["NCEP", "OUT", "--split", "test"], "--split must be"),
        (["NCEP", "OUT", "--stride", "4"], "--stride and --pad need --patch"),
        (["NCEP", "OUT", "--regrid", "7"], "grid step must divide 180"),
        (["NCEP", "OUT", "--stats-from", "NCEP"], "cannot read stats file"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    args = [
        str(NCEP) if a == "NCEP" else str(tmp_path / "o.zarr") if a == "OUT" else a for a in args
    ]
    if args[0] == "missing.nc":
        args[0] = str(tmp_path / "missing.nc")
    r = invoke("preprocess", *args)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_all_nan_variable_is_named(tmp_path):
    make_series(tmp_path / "s.nc", 2, nan_var="PS")
    r = invoke("preprocess", str(tmp_path / "s.nc"), str(tmp_path / "o.zarr"))
    assert r.returncode == 1
    assert "variable PS has no valid (finite) values" in r.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "o.zarr"
    out.mkdir()
    (out / "keep").write_text("x")
    r = invoke("preprocess", str(NCEP), str(out), "--vars", "PS")
    assert r.returncode == 2 and "already exists" in r.stderr
    assert (out / "keep").exists()
    # --overwrite replaces only a store preprocess wrote, never an unrelated directory
    r = invoke("preprocess", str(NCEP), str(out), "--vars", "PS", "--overwrite")
    assert r.returncode == 2 and "not a store written by astrobio preprocess" in r.stderr
    assert (out / "keep").exists()
    (out / "keep").unlink()
    out.rmdir()
    assert invoke("preprocess", str(NCEP), str(out), "--vars", "PS").returncode == 0
    r = invoke("preprocess", str(NCEP), str(out), "--vars", "T", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert list(stats_json(out)) == ["T"]


def interrupt(src: Path, out: Path, sig: int) -> Path:
    """Starts a real run, signals it once it is writing the store, returns its temp dir."""
    proc = subprocess.Popen(
        [astrobio_exe(), "preprocess", str(src), str(out), "--chunk", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    tmp = out.parent / f".{out.name}.tmp-{proc.pid}"
    deadline = time.monotonic() + 120
    while not (tmp / "T").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # wait until the store is being written: mid-run
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    return tmp


def test_interrupted_run_leaves_nothing_at_out(tmp_path):
    src = tmp_path / "long.nc"
    make_series(src, 40)
    out = tmp_path / "o.zarr"
    tmp = interrupt(src, out, signal.SIGTERM)  # Ctrl-C takes the same path
    assert not out.exists()
    assert not tmp.exists()  # a run that can clean up removes its temporary store
    tmp = interrupt(src, out, signal.SIGKILL)
    assert not out.exists()
    assert tmp.exists()  # killed: its leftovers stay, under a hidden temporary name only
    # the next run completes and clears a dead run's leftovers
    r = invoke("preprocess", str(src), str(out), "--chunk", "20")
    assert r.returncode == 0, r.stderr
    assert xr.open_zarr(out)["T"].shape == (40, 17, 64, 128)
    assert not list(tmp_path.glob(".o.zarr.tmp-*"))


def test_infinite_values_are_missing_not_a_constant_variable(tmp_path):
    # One +inf and one -inf used to give mean NaN / std 0 natively: "constant (std 0)".
    ds = make_series(tmp_path / "s.nc", 3)
    ds["PS"][0, 5, 7] = np.inf
    ds["PS"][1, 9, 3] = -np.inf
    ds.to_netcdf(tmp_path / "inf.nc")
    out = tmp_path / "o.zarr"
    r = invoke("preprocess", str(tmp_path / "inf.nc"), str(out), "--split", "all", "--fill", "0")
    assert r.returncode == 0, r.stderr
    ps = ds["PS"].values.astype(np.float64)
    finite = ps[np.isfinite(ps)]
    st = stats_json(out)["PS"]
    assert st["count"] == finite.size == ps.size - 2
    assert st["mean"] == pytest.approx(finite.mean(), rel=1e-9)
    assert st["std"] == pytest.approx(finite.std(), rel=1e-9)
    got = xr.open_zarr(out)["PS"].values
    assert np.isfinite(got).all()
    assert got[0, 5, 7] == pytest.approx((0.0 - finite.mean()) / finite.std(), rel=1e-5)


@pytest.mark.parametrize("threads", ["over", "5000"])
def test_too_many_threads_is_one_clear_line(tmp_path, threads):
    n = str(4 * (os.cpu_count() or 1) + 1) if threads == "over" else threads
    out = tmp_path / "o.zarr"
    r = invoke("preprocess", str(NCEP), str(out), "--vars", "PS", "--threads", n)
    assert r.returncode == 2, r.stderr
    assert f"--threads {n} is more than the maximum of" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()
