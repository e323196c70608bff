"""Run the Triton kernel under the interpreter on small shapes; print errors as JSON.

Run as a subprocess by test_triton.py: TRITON_INTERPRET=1 must be set before the kernels are
defined, and a separate process keeps it out of every other test.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

import torch

from astrobio_cli.attention import KVCache, attention, reference_attention

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def run_case(case: dict) -> dict:
    g = torch.Generator().manual_seed(case.get("seed", 0))
    B, Hq, Hkv, Tq, Tk, D = (case[k] for k in ("B", "Hq", "Hkv", "Tq", "Tk", "D"))
    dtype = DTYPES[case["dtype"]]
    q = torch.randn(B, Hq, Tq, D, generator=g).to(dtype).requires_grad_()
    k = torch.randn(B, Hkv, Tk, D, generator=g).to(dtype).requires_grad_()
    v = torch.randn(B, Hkv, Tk, D, generator=g).to(dtype).requires_grad_()
    do = torch.randn(B, Hq, Tq, D, generator=g).to(dtype)
    mask = None
    if case.get("mask") == "padding":
        mask = torch.rand(B, Tk, generator=g) > 0.3
        if B > 1:
            mask[-1] = False  # a batch element with every key padded: zero rows
    elif case.get("mask") == "additive-padding":
        mask = torch.randn(B, 1, 1, Tk, generator=g).to(torch.float16)
        mask[..., ::3] = float("-inf")
    out = attention(
        q, k, v, mask=mask, causal=case["causal"], scale=case.get("scale"), backend="triton"
    )
    out.backward(do)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = reference_attention(
        q64, k64, v64, mask=mask, causal=case["causal"], scale=case.get("scale")
    )
    ref.backward(do.double())
    # The same problem through eager in the same dtype: the rounding yardstick for fp16/bf16.
    qe, ke, ve = (t.detach().clone().requires_grad_() for t in (q, k, v))
    eo = attention(
        qe, ke, ve, mask=mask, causal=case["causal"], scale=case.get("scale"), backend="eager"
    )
    eo.backward(do)

    def err(a, b):
        return (a.detach().double() - b.detach().double()).abs().max().item()

    return {
        "out": err(out, ref),
        "dq": err(q.grad, q64.grad),
        "dk": err(k.grad, k64.grad),
        "dv": err(v.grad, v64.grad),
        "eager_out": err(eo, ref),
        "eager_grad": max(err(qe.grad, q64.grad), err(ke.grad, k64.grad), err(ve.grad, v64.grad)),
        "finite": bool(torch.isfinite(out).all() and torch.isfinite(q.grad).all()),
        "zero_rows_ok": bool(
            mask is None
            or case.get("mask") != "padding"
            or B == 1
            or ((out[-1] == 0).all().item() and (q.grad[-1] == 0).all().item())
        ),
    }


def kv_cache_case() -> dict:
    g = torch.Generator().manual_seed(1)
    B, Hq, Hkv, T, D = 1, 2, 1, 20, 32
    q = torch.randn(B, Hq, T, D, generator=g).half()
    k = torch.randn(B, Hkv, T, D, generator=g).half()
    v = torch.randn(B, Hkv, T, D, generator=g).half()
    full = attention(q, k, v, causal=True, backend="triton")
    cache = KVCache(B, Hkv, 32, D, dtype=torch.float16)
    ks, vs = cache.append(k[:, :, :17], v[:, :, :17])
    steps = [attention(q[:, :, :17], ks, vs, causal=True, backend="triton")]
    for t in range(17, T):
        ks, vs = cache.append(k[:, :, t : t + 1], v[:, :, t : t + 1])
        steps.append(attention(q[:, :, t : t + 1], ks, vs, causal=True, backend="triton"))
    return {"err": (torch.cat(steps, 2).double() - full.double()).abs().max().item()}


def declines() -> dict:
    from astrobio_cli.attention import BackendUnsupportedError

    out = {}
    q = torch.randn(1, 2, 8, 16)
    for label, kwargs in (
        ("general-mask", dict(mask=torch.ones(8, 8, dtype=torch.bool))),
        ("fp64", dict(dtype=torch.float64)),
        ("dropout", dict(dropout_p=0.1)),
    ):
        t = q.to(kwargs.pop("dtype", torch.float32))
        try:
            attention(t, t, t, backend="triton", **kwargs)
            out[label] = ""
        except BackendUnsupportedError as exc:
            out[label] = str(exc)
    t = torch.randn(1, 2, 8, 8)
    try:
        attention(t, t, t, backend="triton")
        out["d8"] = ""
    except BackendUnsupportedError as exc:
        out["d8"] = str(exc)
    return out


if __name__ == "__main__":
    cases = json.loads(sys.argv[1])
    result = {
        "cases": [run_case(c) for c in cases],
        "kv_cache": kv_cache_case(),
        "declines": declines(),
    }
    print(json.dumps(result))
