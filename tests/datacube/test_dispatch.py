"""Which implementation runs, on how many threads, and the benchmark command's output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from astrobio_cli import datacube as dc
from astrobio_cli import settings
from astrobio_cli.cli import build_app


def test_native_setting_selects_the_numpy_twin(monkeypatch):
    x = np.ones((2, 3, 4), np.float32)
    calls = []
    monkeypatch.setattr(dc, "_native", lambda: calls.append(1) or pytest.fail("native used"))
    monkeypatch.setenv("ASTROBIO_NATIVE", "0")
    settings.configure(None, None)
    assert dc.use_native() is False
    assert dc.stats(x).mean[0] == 1.0
    assert not calls
    monkeypatch.setenv("ASTROBIO_NATIVE", "1")
    settings.configure(None, None)
    assert dc.use_native() is True


def test_threads_come_from_the_setting(monkeypatch):
    assert dc.thread_count() == 0  # all cores
    monkeypatch.setenv("ASTROBIO_THREADS", "3")
    settings.configure(None, None)
    assert dc.thread_count() == 3
    assert dc.thread_count(1) == 1
    with pytest.raises(ValueError, match="threads"):
        dc.thread_count(-2)


def test_stats_json_round_trip(tmp_path):
    s = dc.Stats([3, 0], [1.5, np.nan], [0.5, np.nan], [1, np.nan], [2, np.nan], ("T", "Q"))
    s.save(tmp_path / "s.json")
    back = dc.Stats.load(tmp_path / "s.json")
    assert back.names == ("T", "Q")
    np.testing.assert_array_equal(back.count, s.count)
    np.testing.assert_array_equal(back.mean, s.mean)
    assert json.loads((tmp_path / "s.json").read_text())["variables"]["Q"]["mean"] is None
    with pytest.raises(ValueError, match="not an astrobio stats file"):
        dc.Stats.from_dict({"variables": []})


def invoke(*args):
    return CliRunner().invoke(build_app(), list(args), prog_name="astrobio", env={"COLUMNS": "200"})


def test_bench_preprocess_reports_every_operation(tmp_path):
    path = tmp_path / "bench.json"
    r = invoke("bench", "preprocess", "--size", "2MB", "--repeat", "1", "--json", str(path))
    assert r.exit_code == 0, r.output
    res = json.loads(path.read_text())
    assert res["bytes"] == np.prod(res["shape"]) * 4
    assert res["copy"]["gb_s"] > 0 and res["machine"]["cores"] >= 1
    seen = {(row["op"], row["impl"], row["threads"]) for row in res["results"]}
    for op in (
        "stats",
        "normalize",
        "pipeline",
        "patches",
        "regrid",
        "flip_lat",
        "roll_lon",
        "noise",
    ):
        assert {(op, "numpy", 1), (op, "rust", 1), (op, "rust", 2)} <= seen
    for row in res["results"]:
        assert row["median_s"] > 0
        assert row["gb_s"] == pytest.approx(res["bytes"] / row["median_s"] / 1e9)
    assert set(res["targets"]) == {
        "pipeline >= 20x numpy",
        "stats >= 60% of copy",
        "normalize >= 60% of copy",
    }
    assert "memcpy" in r.stdout and "target pipeline" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "lots"], "--size must look like"),
        (["--ops", "stats,fft"], "unknown operation fft"),
        (["--threads", "a"], "--threads takes integers"),
    ],
)
def test_bench_preprocess_bad_arguments(args, message):
    r = invoke("bench", "preprocess", *args)
    assert r.exit_code == 2
    assert message in r.stderr


def test_stub_lists_every_native_function():
    import ast
    from pathlib import Path

    from astrobio_cli import _native

    stub = Path(dc.__file__).with_name("_native.pyi")
    declared = {n.name for n in ast.parse(stub.read_text()).body if isinstance(n, ast.FunctionDef)}
    public = {n for n in dir(_native) if not n.startswith("_") and callable(getattr(_native, n))}
    assert declared == public
