"""`astrobio bench attention`: the JSON document, the table, OOM and failure rows, the plot."""

from __future__ import annotations

import json

import pytest
import torch

from astrobio_cli.attention import bench
from astrobio_cli.hardware import need_module
from astrobio_cli.plugins import PluginHost
from astrobio_cli.specs import AttentionBackendSpec


def test_bench_json_on_a_small_size(run_cli, tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["bench", "attention", "--device", "cpu", "--seq", "48,64", "--heads", "4",
            "--kv-heads", "2", "--head-dim", "32", "--causal", "--repeats", "2", "--json", str(out), "--plot", str(png),
            "--backends", "eager,auto,sdpa-flash,sdpa-efficient,flash-attn,sliding-window"]  # fmt: skip
    if need_module("triton")[0]:
        args[-1] += ",triton"
    res = run_cli(*args, env={"COLUMNS": "220"})
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert set(doc) == {"env", "config", "results"}
    for key in ("torch", "cuda", "device", "device_name", "triton", "flash_attn", "xformers"):
        assert key in doc["env"]
    assert doc["config"]["seqs"] == [48, 64] and doc["config"]["causal"] is True
    rows = {(r["seq"], r["backend"]): r for r in doc["results"]}
    for r in doc["results"]:
        assert set(bench.RESULT_KEYS) <= set(r)
        assert r["status"] in bench.STATUSES
    for seq in (48, 64):
        eager, flash = rows[(seq, "eager")], rows[(seq, "sdpa-flash")]
        assert eager["status"] == flash["status"] == "ran"
        assert eager["max_abs_err"] < 1e-5 and flash["max_abs_err"] < 1e-5
        assert eager["speedup_vs_eager"] == 1.0
        assert flash["ms_min"] <= flash["ms_median"]
        assert flash["tflops"] == pytest.approx(
            bench.flops(1, 4, seq, seq, 32, True, "fwd") / (flash["ms_median"] / 1e3) / 1e12
        )
        auto = rows[(seq, "auto")]
        assert auto["status"] == "ran" and auto["max_abs_err"] < 1e-5
        if doc["config"]["device"] == "cpu":
            assert auto["reason"] == "routes to sdpa-flash"
        assert rows[(seq, "sdpa-efficient")]["status"] == "skipped"
        assert "CUDA" in rows[(seq, "sdpa-efficient")]["reason"]
        assert rows[(seq, "flash-attn")]["status"] == "skipped"
        assert rows[(seq, "sliding-window")]["exact"] is False
        if need_module("triton")[0] and doc["config"]["device"] == "cpu":
            tri = rows[(seq, "triton")]
            assert tri["status"] == "ran", tri["reason"]
            assert "interpreter: correctness only" in tri["reason"]
            assert tri["max_abs_err"] < 1e-5 and tri["ms_median"] is None
        if doc["config"]["device"] == "cpu":
            assert rows[(seq, bench.CEILING)]["tflops"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "interpreter: correctness only" in res.stdout or not need_module("triton")[0]
    assert "sdpa-flash" in res.stdout and "max abs err" in res.stdout


def test_bench_rejects_bad_options(run_cli):
    res = run_cli("bench", "attention", "--seq", "64", "--dtype", "fp8")
    assert res.returncode == 2 and "--dtype must be one of" in res.stderr
    res = run_cli("bench", "attention", "--seq", "6x4")
    assert res.returncode == 2 and "--seq takes integers" in res.stderr
    res = run_cli("bench", "attention", "--seq", "64", "--backends", "egaer")
    assert res.returncode == 2 and "did you mean 'eager'" in res.stderr
    assert "Traceback" not in res.stderr


class _Raises:
    def __init__(self, exc):
        self.exc = exc

    def supports(self, q, k, v, mask, causal, training):
        return True, ""

    def __call__(self, q, k, v, **kw):
        raise self.exc


class _Toy:
    from astrobio_cli.hookspecs import hookimpl

    @staticmethod
    @hookimpl
    def register_attention_backends(register):
        from astrobio_attention.eager import EagerBackend

        register(AttentionBackendSpec(name="eager", description="e", factory=EagerBackend))
        register(
            AttentionBackendSpec(
                name="toy-oom",
                description="always out of memory",
                factory=lambda: _Raises(torch.OutOfMemoryError("CUDA out of memory. Tried 9 GiB")),
            )
        )
        register(
            AttentionBackendSpec(
                name="toy-broken",
                description="always fails",
                factory=lambda: _Raises(RuntimeError("kernel exploded")),
            )
        )


def test_out_of_memory_and_failures_are_rows_not_crashes(monkeypatch):
    host = PluginHost()
    host.add_module("toy", _Toy)
    monkeypatch.setattr("astrobio_cli.plugins.get_host", lambda: host)
    doc = bench.run_bench(
        bench.BenchConfig(seqs=[32], heads=2, head_dim=16, repeats=1, device="cpu")
    )
    rows = {r["backend"]: r for r in doc["results"]}
    assert rows["eager"]["status"] == "ran"
    assert rows["toy-oom"]["status"] == "out of memory"
    assert "Tried 9 GiB" in rows["toy-oom"]["reason"]
    assert rows["toy-broken"]["status"] == "failed"
    assert "kernel exploded" in rows["toy-broken"]["reason"]
    assert rows["toy-oom"]["speedup_vs_eager"] is None
