"""`astrobio bench attention --decode`: one token against a KV cache, through the installed CLI."""

from __future__ import annotations

import json

import pytest

from astrobio_cli.attention import bench


def test_decode_bench_json_on_tiny_sizes(run_cli, tmp_path):
    out = tmp_path / "decode.json"
    B, Hq, L, D = 2, 8, 40, 16
    res = run_cli("bench", "attention", "--decode", "--cache-len", str(L), "--batch", str(B),
                  "--heads", str(Hq), "--head-dim", str(D), "--repeats", "2", "--device", "cpu",
                  "--backends", "eager,auto,sdpa-flash,sdpa-math,sdpa-efficient,linear,triton",
                  "--json", str(out), env={"COLUMNS": "200"})  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    cfg = doc["config"]
    assert cfg["decode"] is True and cfg["cache_len"] == L and cfg["kv_heads"] == [8, 2, 1]
    rows = {(r["kv_heads"], r["backend"]): r for r in doc["results"]}
    for kv in (8, 2, 1):
        for name in ("eager", "auto", "sdpa-flash", "sdpa-math"):
            r = rows[(kv, name)]
            assert set(bench.DECODE_KEYS) <= set(r)
            assert r["status"] == "ran", r["reason"]
            assert r["max_abs_err"] < 1e-5, (kv, name)
            assert r["gqa_ratio"] == Hq // kv and r["cache_len"] == L
            assert r["cache_bytes"] == 2 * B * kv * L * D * 4  # fp32: 4 bytes per element
            assert r["tokens_per_s"] == pytest.approx(B / (r["ms_median"] / 1e3))
            assert r["ms_min"] <= r["ms_median"]
        assert rows[(kv, "sdpa-efficient")]["status"] == "skipped"
        assert "CUDA" in rows[(kv, "sdpa-efficient")]["reason"]
        assert rows[(kv, "triton")]["status"] == "skipped"
        lin = rows[(kv, "linear")]  # inexact by design: its error is reported, and large
        assert lin["exact"] is False and lin["max_abs_err"] > 1e-3
    assert "GQA 4" in res.stdout and "cache bytes" in res.stdout


def test_decode_one_ratio_in_process_and_bad_options(run_cli):
    config = bench.BenchConfig(seqs=[9], heads=4, kv_heads=1, head_dim=8, dtype="bf16",
                               repeats=1, backends=["eager"], device="cpu")  # fmt: skip
    (row,) = bench.run_decode_bench(config, 9)["results"]
    assert row["gqa_ratio"] == 4 and row["cache_bytes"] == 2 * 1 * 1 * 9 * 8 * 2  # bf16: 2 bytes
    assert row["status"] == "ran" and row["max_abs_err"] < 3e-2
    bad = run_cli("bench", "attention", "--decode", "--heads", "6")
    assert bad.returncode == 2 and "--heads must be a multiple of 8" in bad.stderr
    bad = run_cli("bench", "attention", "--decode", "--cache-len", "0")
    assert bad.returncode == 2 and "--cache-len must be at least 1" in bad.stderr
    assert "Traceback" not in bad.stderr
