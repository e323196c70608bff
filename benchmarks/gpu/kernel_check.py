"""Our Triton attention kernel, forward and backward, against the float64 reference on a GPU.

Every case runs `attention(..., backend="triton")` in fp16 or bf16, backpropagates a random
gradient, and compares the output and dq/dk/dv with `reference_attention` in float64 (on the same
device), next to eager in the same dtype (the rounding yardstick). The grid: fp16 and bf16, D in
{64, 128}, causal and not; then GQA and MQA, causal bottom-right with Tq < Tk (decode) and
Tq > Tk, key-padding (with a fully padded batch element) and additive masks, and T from 1 to
16384 including non-multiples of the tile. Also: decoding against a KVCache equals the full causal
forward, and what the kernel does not implement is declined.

    python benchmarks/gpu/kernel_check.py --json out.json             # CUDA, the full grid
    python benchmarks/gpu/kernel_check.py --cases tiny --interpret    # CPU rehearsal (slow, small)

Prints one line per case and exits 1 if any case fails (a case that raises is a failure too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

# Absolute budgets for O(1) outputs and gradients (tests/attention/test_triton.py's, scaled by
# the reference's magnitude where that exceeds 1): the kernel rounds P and dS to the input dtype
# before the tensor-core dots, so errors run a few units of the dtype's epsilon.
TOL = {"fp16": (2e-3, 4e-3), "bf16": (3e-2, 6e-2), "fp32": (2e-5, 8e-5)}


def full_cases() -> list[dict]:
    cases = []
    for dtype in ("fp16", "bf16"):
        for d in (64, 128):
            for causal in (False, True):
                cases.append(
                    dict(B=2, Hq=4, Hkv=4, Tq=1000, Tk=1000, D=d, causal=causal, dtype=dtype)
                )
    cases += [
        dict(B=2, Hq=8, Hkv=2, Tq=2048, Tk=2048, D=128, causal=True, dtype="bf16", tag="gqa"),
        dict(B=1, Hq=4, Hkv=1, Tq=777, Tk=777, D=64, causal=False, dtype="fp16", tag="mqa"),
        dict(B=2, Hq=4, Hkv=2, Tq=300, Tk=1000, D=64, causal=True, dtype="fp16", tag="tq<tk"),
        dict(B=1, Hq=8, Hkv=2, Tq=1, Tk=4097, D=128, causal=True, dtype="bf16", tag="decode"),
        dict(B=2, Hq=2, Hkv=2, Tq=513, Tk=200, D=64, causal=True, dtype="bf16", tag="tq>tk"),
        dict(B=2, Hq=4, Hkv=4, Tq=1500, Tk=1500, D=128, causal=False, dtype="fp16", mask="padding"),
        dict(B=2, Hq=4, Hkv=2, Tq=1500, Tk=1500, D=64, causal=True, dtype="bf16", mask="padding"),
        dict(
            B=2,
            Hq=4,
            Hkv=4,
            Tq=1025,
            Tk=1025,
            D=64,
            causal=False,
            dtype="bf16",
            mask="additive-padding",
        ),
        dict(
            B=1,
            Hq=4,
            Hkv=4,
            Tq=700,
            Tk=1025,
            D=128,
            causal=True,
            dtype="fp16",
            mask="additive-padding",
        ),
        dict(B=1, Hq=2, Hkv=2, Tq=1, Tk=1, D=64, causal=False, dtype="fp16", tag="t=1"),
        dict(B=1, Hq=2, Hkv=2, Tq=1, Tk=1, D=128, causal=True, dtype="bf16", tag="t=1"),
    ]
    for t in (17, 127, 128, 129, 4095, 16384):
        cases.append(dict(B=1, Hq=2, Hkv=2, Tq=t, Tk=t, D=128, causal=True, dtype="bf16"))
    cases.append(dict(B=1, Hq=2, Hkv=1, Tq=16384, Tk=16384, D=64, causal=False, dtype="fp16"))
    return cases


def tiny_cases() -> list[dict]:
    return [
        dict(B=2, Hq=2, Hkv=1, Tq=20, Tk=37, D=64, causal=True, dtype="fp16"),
        dict(B=2, Hq=2, Hkv=2, Tq=33, Tk=33, D=64, causal=False, dtype="bf16", mask="padding"),
    ]


def label(case: dict) -> str:
    causal = "causal" if case["causal"] else "full"
    extra = "-".join(str(case[k]) for k in ("tag", "mask") if k in case)
    return (
        f"{case['dtype']} D={case['D']} {causal} B={case['B']} Hq={case['Hq']} Hkv={case['Hkv']} "
        f"Tq={case['Tq']} Tk={case['Tk']}" + (f" {extra}" if extra else "")
    )


def run_case(case: dict, device: str) -> dict:
    import torch

    from astrobio_cli.attention import attention, reference_attention

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    g = torch.Generator().manual_seed(case.get("seed", 0))
    B, Hq, Hkv, Tq, Tk, D = (case[k] for k in ("B", "Hq", "Hkv", "Tq", "Tk", "D"))
    dtype = dtypes[case["dtype"]]

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    q = rand(B, Hq, Tq, D).requires_grad_()
    k = rand(B, Hkv, Tk, D).requires_grad_()
    v = rand(B, Hkv, Tk, D).requires_grad_()
    do = rand(B, Hq, Tq, D)
    mask = None
    if case.get("mask") == "padding":
        mask = torch.rand(B, Tk, generator=g) > 0.3
        if B > 1:
            mask[-1] = False  # a batch element with every key padded: zero rows
        mask = mask.to(device)
    elif case.get("mask") == "additive-padding":
        mask = torch.randn(B, 1, 1, Tk, generator=g).to(torch.float16)
        mask[..., ::3] = float("-inf")
        mask = mask.to(device)
    causal = case["causal"]

    out = attention(q, k, v, mask=mask, causal=causal, backend="triton")
    out.backward(do)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = reference_attention(q64, k64, v64, mask=mask, causal=causal)
    ref.backward(do.double())
    qe, ke, ve = (t.detach().clone().requires_grad_() for t in (q, k, v))
    eo = attention(qe, ke, ve, mask=mask, causal=causal, backend="eager")
    eo.backward(do)

    def err(a, b) -> float:
        return (a.detach().double() - b.detach().double()).abs().max().item()

    def scale(t) -> float:
        return max(1.0, t.detach().abs().max().item())

    tol_out, tol_grad = TOL[case["dtype"]]
    r = {
        "out": err(out, ref),
        "dq": err(q.grad, q64.grad),
        "dk": err(k.grad, k64.grad),
        "dv": err(v.grad, v64.grad),
        "eager_out": err(eo, ref),
        "eager_grad": max(err(qe.grad, q64.grad), err(ke.grad, k64.grad), err(ve.grad, v64.grad)),
        "tol_out": tol_out * scale(ref),
        "tol_grad": tol_grad * max(scale(q64.grad), scale(k64.grad), scale(v64.grad)),
        "finite": bool(torch.isfinite(out).all() and torch.isfinite(q.grad).all()),
        "zero_rows_ok": bool(
            case.get("mask") != "padding"
            or B == 1
            or ((out[-1] == 0).all().item() and (q.grad[-1] == 0).all().item())
        ),
    }
    grad = max(r["dq"], r["dk"], r["dv"])
    r["ok"] = bool(
        r["finite"] and r["zero_rows_ok"] and r["out"] < r["tol_out"] and grad < r["tol_grad"]
    )
    return r


def kv_cache_case(device: str, tiny: bool = False) -> dict:
    import torch

    from astrobio_cli.attention import KVCache, attention

    g = torch.Generator().manual_seed(1)
    B, Hq, Hkv, T, D, P = (1, 2, 1, 20, 32, 17) if tiny else (1, 4, 2, 300, 128, 257)
    q, k, v = (torch.randn(B, h, T, D, generator=g).half().to(device) for h in (Hq, Hkv, Hkv))
    full = attention(q, k, v, causal=True, backend="triton")
    cache = KVCache(B, Hkv, T + 12, D, dtype=torch.float16, device=device)
    ks, vs = cache.append(k[:, :, :P], v[:, :, :P])
    steps = [attention(q[:, :, :P], ks, vs, causal=True, backend="triton")]
    for t in range(P, T):
        ks, vs = cache.append(k[:, :, t : t + 1], v[:, :, t : t + 1])
        steps.append(attention(q[:, :, t : t + 1], ks, vs, causal=True, backend="triton"))
    e = (torch.cat(steps, 2).double() - full.double()).abs().max().item()
    return {"err": e, "ok": e < 2e-3}


def declines(device: str) -> dict:
    import torch

    from astrobio_cli.attention import BackendUnsupportedError, attention

    out = {}
    q = torch.randn(1, 2, 8, 16, device=device)
    for name, kwargs in (
        ("general-mask", dict(mask=torch.ones(8, 8, dtype=torch.bool, device=device))),
        ("fp64", dict(dtype=torch.float64)),
        ("dropout", dict(dropout_p=0.1)),
    ):
        t = q.to(kwargs.pop("dtype", torch.float32))
        try:
            attention(t, t, t, backend="triton", **kwargs)
            out[name] = ""
        except BackendUnsupportedError as exc:
            out[name] = str(exc)
    return {"reasons": out, "ok": all(out.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description="Triton kernel vs float64 on a device")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cases", choices=("full", "tiny"), default="full")
    ap.add_argument("--interpret", action="store_true", help="TRITON_INTERPRET=1 (CPU rehearsal)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are defined
        args.device = "cpu"
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("kernel_check: no CUDA device (use --interpret for a CPU rehearsal)")
        return 2
    cases = full_cases() if args.cases == "full" else tiny_cases()
    results = []
    t_all = time.perf_counter()
    for case in cases:
        t0 = time.perf_counter()
        try:
            r = run_case(case, args.device)
        except Exception as exc:
            r = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "tb": traceback.format_exc()}
        r["case"], r["label"], r["s"] = case, label(case), time.perf_counter() - t0
        results.append(r)
        if "error" in r:
            print(f"FAIL {r['label']}: {r['error']}", flush=True)
        else:
            grad = max(r["dq"], r["dk"], r["dv"])
            print(
                f"{'ok  ' if r['ok'] else 'FAIL'} {r['label']}: out {r['out']:.2e} "
                f"(tol {r['tol_out']:.1e}, eager {r['eager_out']:.2e}) grad {grad:.2e} "
                f"(tol {r['tol_grad']:.1e}, eager {r['eager_grad']:.2e}) {r['s']:.1f}s",
                flush=True,
            )
        if args.device == "cuda":
            torch.cuda.empty_cache()
    extra = {}
    tiny = args.cases == "tiny"
    for name, fn in (("kv_cache", lambda d: kv_cache_case(d, tiny)), ("declines", declines)):
        try:
            extra[name] = fn(args.device)
        except Exception as exc:
            extra[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(f"{'ok  ' if extra[name]['ok'] else 'FAIL'} {name}: {extra[name]}", flush=True)
    doc = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "interpret": bool(args.interpret),
        "seconds": time.perf_counter() - t_all,
        "cases": results,
        **extra,
    }
    doc["ok"] = all(r["ok"] for r in results) and all(e["ok"] for e in extra.values())
    doc["counts"] = {
        "passed": sum(r["ok"] for r in results),
        "failed": sum(not r["ok"] for r in results),
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
    print(f"kernel_check: {doc['counts']['passed']} passed, {doc['counts']['failed']} failed")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
