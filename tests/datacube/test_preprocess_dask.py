"""`astrobio preprocess --scheduler` (issue 18, item 1): the same pipeline as tasks on a Dask
cluster of real worker processes gives the single-node run's store bit for bit; a worker killed
mid-run leaves nothing at OUT and the rerun gives the same store; bad schedulers are one line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from astrobio_cli import datacube as dc
from astrobio_cli import preprocess as pp
from astrobio_cli.cli import build_app

distributed = pytest.importorskip("distributed")

THREADS = {"ASTROBIO_THREADS": "1", "OMP_NUM_THREADS": "1"}


def astrobio_exe() -> str:
    exe = Path(sys.executable).with_name("astrobio")
    return str(exe) if exe.exists() else (shutil.which("astrobio") or "astrobio")


def run_astrobio(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, **THREADS, "COLUMNS": "200"}
    return subprocess.run(
        [astrobio_exe(), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    """A small synthetic-climate ensemble (0.8 MB): two level groups (plev, surface), a zonal
    field (rsdt) and per-sample scalars."""
    path = tmp_path_factory.mktemp("cube") / "clim.nc"
    res = CliRunner().invoke(
        build_app(),
        ["fetch", "synthetic-climate", "--samples", "30", "--nlev", "4", "--out", str(path)],
    )
    assert res.exit_code == 0, res.output
    return path


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each, on loopback; a task whose worker dies fails at
    once (allowed-failures 0) instead of being retried on the other worker."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        local = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, env=THREADS,
        )  # fmt: skip
    client = distributed.Client(local)
    yield local, client
    client.close()
    local.close()


def files(store: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(store)): f.read_bytes() for f in sorted(store.rglob("*")) if f.is_file()
    }


def assert_same_store(got: Path, want: Path) -> None:
    """Every array decoded equal with its dtype, every chunk and metadata file and stats.json
    byte for byte; provenance.json differs only in its time stamp."""
    a, b = files(got), files(want)
    assert sorted(a) == sorted(b)
    chunk_files = [f for f in a if "/" in f and not f.rsplit("/", 1)[1].startswith(".")]
    assert len(chunk_files) > 20
    assert [f for f in a if f != "provenance.json" and a[f] != b[f]] == []
    assert a["stats.json"] == b["stats.json"]
    pa, pb = json.loads(a["provenance.json"]), json.loads(b["provenance.json"])
    pa.pop("written_at"), pb.pop("written_at")
    assert pa == pb
    with xr.open_zarr(got, chunks=None) as x, xr.open_zarr(want, chunks=None) as y:
        assert sorted(x.variables) == sorted(y.variables)
        for v in y.variables:
            assert x[v].dtype == y[v].dtype, v
            assert np.array_equal(x[v].values, y[v].values, equal_nan=y[v].dtype.kind == "f"), v


def assert_one_line(res, *words: str) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), res.stderr
    for w in words:
        assert w in res.stderr, res.stderr


def test_local_cluster_of_two_processes_writes_the_single_node_store(cube, tmp_path):
    """Through the installed script: `--scheduler local:2` starts and stops its own cluster."""
    args = dict(split="train", regrid=10.0, patch=dc.PatchSpec.parse("8x16", "8", 0), fill="mean")
    want = pp.preprocess(cube, tmp_path / "one.zarr", chunk=4, threads=1, **args).out
    out = tmp_path / "dask.zarr"
    res = run_astrobio(
        "preprocess", cube, out, "--split", "train", "--regrid", "10", "--patch", "8x16",
        "--stride", "8", "--fill", "mean", "--chunk", "4", "--scheduler", "local:2", "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["out"] == str(out)
    assert {v["name"] for v in doc["variables"]} >= {"ta", "hus", "ts", "rsdt", "stellar_flux"}
    assert_same_store(out, want)
    assert not list(tmp_path.glob(".dask.zarr*"))


def test_write_tasks_align_to_zarr_chunks_smaller_than_a_step(cube, tmp_path, monkeypatch, cluster):
    """Zarr chunks of 2 (plev), 9 (surface) and 10 (scalars) samples against steps of 10: the
    surface tasks are cut on its chunk boundaries (9), the stats keep the single-node chunks."""
    local, _ = cluster
    monkeypatch.setattr(pp, "READ_CHUNK_BYTES", 20_000)
    want = pp.preprocess(cube, tmp_path / "one.zarr", split="train", chunk=10, threads=1)
    got = pp.preprocess(
        cube, tmp_path / "dask.zarr", split="train", chunk=10, scheduler=local.scheduler_address
    )
    with xr.open_zarr(got.out, chunks=None) as ds:
        assert ds["ta"].encoding["chunks"][0] == 2
        assert ds["ts"].encoding["chunks"][0] == 9
        assert ds["stellar_flux"].encoding["chunks"][0] == 10
        # against NumPy in float64: the train split (first 24 of 30 samples) normalises all
        with xr.open_dataset(cube) as src:
            raw = src["ts"].values.astype(np.float64)
        train = raw[:24]
        want_ts = (raw - train.mean()) / train.std()
        np.testing.assert_allclose(ds["ts"].values, want_ts, rtol=1e-5, atol=1e-5)
    assert got.stats.count[list(got.stats.names).index("ts")] == train.size
    # the write tasks of the surface group: runs of 9 samples (its chunk), not the steps of 10
    from astrobio_cli import preprocess_dask as pdk

    plan = pdk._aligned(got.out, ["land_mask", "ts", "rsdt"], 30, 10)
    assert [(s.start, s.stop) for s, _ in plan] == [(0, 9), (9, 18), (18, 27), (27, 30)]
    assert [(s.start, s.stop) for s, _ in pdk._aligned(got.out, ["ta", "hus"], 30, 10)] == [
        (0, 10), (10, 20), (20, 30)
    ]  # fmt: skip
    assert_same_store(got.out, want.out)


class KillOnWrite(distributed.WorkerPlugin):
    """Kills its worker process (os._exit, like an OOM kill) when the k-th write task of the
    cluster starts executing; counts across workers and restarts in a file."""

    def __init__(self, counter: str, k: int) -> None:
        self.counter, self.k = counter, k

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing" or "-write-" not in str(key):
            return
        with open(self.counter, "a") as f:
            f.write("x")
        if os.path.getsize(self.counter) >= self.k:
            try:
                os.close(os.open(self.counter + ".killed", os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os._exit(1)


def test_worker_killed_mid_run_leaves_nothing_at_out_and_the_rerun_is_identical(
    cube, tmp_path, cluster
):
    local, client = cluster
    want = pp.preprocess(cube, tmp_path / "one.zarr", split="train", chunk=3, threads=1).out
    counter = tmp_path / "writes"
    client.register_plugin(KillOnWrite(str(counter), 4), name="kill-on-write")
    out = tmp_path / "dask.zarr"
    args = ("preprocess", cube, out, "--chunk", "3", "--scheduler", local.scheduler_address)
    try:
        code, err = invoke(*args)
    finally:
        client.unregister_worker_plugin("kill-on-write")
    assert (tmp_path / "writes.killed").exists()  # the plugin did kill a worker mid-run
    assert code == 1, err
    assert err.strip().startswith("error: a Dask worker died while running"), err
    assert "nothing was written to OUT" in err and "Traceback" not in err
    assert not out.exists()
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".dask.zarr")]
    assert all(name.startswith(".dask.zarr.tmp-") for name in left), left
    code, err = invoke(*args)
    assert code == 0, err
    assert_same_store(out, want)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dask.zarr")] == []


def invoke(*args: str):
    res = CliRunner().invoke(build_app(), list(map(str, args)), prog_name="astrobio")
    return res.exit_code, res.stderr


def test_unreachable_scheduler_is_one_line_and_writes_nothing(cube, tmp_path):
    import dask

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "o.zarr"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code, err = invoke("preprocess", cube, out, "--scheduler", f"tcp://127.0.0.1:{port}")
    assert code == 1
    assert err.strip().startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:"), err
    assert "nothing was written" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("address", "words"),
    [("local:0", "local:N needs"), ("tcp://127.0.0.1", "no port"), ("bogus://x:1", "bogus")],
)
def test_bad_scheduler_address_is_a_usage_error(cube, tmp_path, address, words):
    code, err = invoke("preprocess", cube, tmp_path / "o.zarr", "--scheduler", address)
    assert code == 2, err
    assert err.strip().startswith("error:") and words in err, err
    assert list(tmp_path.iterdir()) == []


def test_without_the_dask_extra_the_message_says_how_to_install_it(cube, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code, err = invoke("preprocess", cube, tmp_path / "o.zarr", "--scheduler", "local:2")
    assert code == 2
    assert err.strip() == "error: --scheduler needs the dask extra: pip install 'astrobio[dask]'"
    assert list(tmp_path.iterdir()) == []
