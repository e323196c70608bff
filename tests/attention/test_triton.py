"""Our Triton flash-attention kernel under TRITON_INTERPRET=1, forward and backward, vs float64.

The interpreter runs the kernels with NumPy on the CPU: correctness only, so shapes stay small;
tails (T not a multiple of the 32-wide tiles), D not a power of two, GQA/MQA, decode (Tq < Tk),
Tq > Tk, key padding (boolean and additive) with a fully padded batch element, explicit scale.
One subprocess runs every case (the flag must be set before the kernels are defined).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from astrobio_cli.hardware import need_module

pytestmark = pytest.mark.skipif(not need_module("triton")[0], reason="triton is not installed")

CASES = [
    dict(B=2, Hq=2, Hkv=2, Tq=37, Tk=37, D=32, causal=False, dtype="fp32"),
    dict(B=2, Hq=4, Hkv=2, Tq=37, Tk=37, D=24, causal=True, dtype="fp32", scale=0.2),
    dict(B=1, Hq=2, Hkv=1, Tq=5, Tk=41, D=64, causal=True, dtype="fp16"),
    dict(B=2, Hq=2, Hkv=1, Tq=41, Tk=30, D=16, causal=True, dtype="bf16", mask="padding"),
    dict(B=2, Hq=2, Hkv=2, Tq=33, Tk=33, D=128, causal=False, dtype="fp16", mask="padding"),
    dict(B=1, Hq=2, Hkv=2, Tq=20, Tk=45, D=32, causal=False, dtype="fp32", mask="additive-padding"),
]
# Absolute budgets for O(1) outputs and gradients. Like flash-attn, the kernel rounds the
# probabilities (and dS in backward) to the input dtype before the tensor-core dots, so fp16/bf16
# errors run a few units of that dtype's epsilon (bf16: 7.8e-3), above eager's, which upcasts.
TOL = {"fp32": (2e-5, 8e-5), "fp16": (2e-3, 4e-3), "bf16": (3e-2, 6e-2)}


def _run_cases() -> dict:
    script = Path(__file__).with_name("triton_check.py")
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(CASES)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_triton_kernel_under_the_interpreter():
    # One test, one subprocess: the interpreter is slow and the flag must not leak.
    results = _run_cases()
    failures = []
    for case, r in zip(CASES, results["cases"], strict=True):
        label = "-".join(map(str, case.values()))
        tol_out, tol_grad = TOL[case["dtype"]]
        if not r["finite"]:
            failures.append(f"{label}: NaN or inf in output or gradient")
        if not r["zero_rows_ok"]:
            failures.append(f"{label}: a fully padded batch element must give zeros and zero grad")
        if r["out"] >= tol_out:
            failures.append(f"{label}: output error {r['out']:.2e} >= {tol_out}")
        grad = max(r["dq"], r["dk"], r["dv"])
        if grad >= tol_grad:
            failures.append(f"{label}: gradient error {grad:.2e} >= {tol_grad}")
    assert not failures, "\n".join(failures)

    # Decoding against a KVCache (strided views) equals the full causal forward.
    assert results["kv_cache"]["err"] < 2e-3

    # What the kernel does not implement is declined with the reason, never run wrongly.
    d = results["declines"]
    assert "key-padding masks only" in d["general-mask"]
    assert "fp16, bf16 or fp32" in d["fp64"]
    assert "dropout" in d["dropout"]
    assert "head dim must be in 16..128" in d["d8"]
