"""Every exact backend available here against the float64 reference: outputs and gradients.

The backends are the ones astrobio-attention registers whose availability check passes on this
machine (CPU here: eager, sdpa, sdpa-flash, sdpa-math; on a GPU also the CUDA kernels). The
Triton kernel is tested under its interpreter in test_triton.py.
"""

from __future__ import annotations

import zlib

import pytest
import torch

from astrobio_cli.attention import KVCache, attention, explain, reference_attention
from astrobio_cli.hardware import has_cuda, need_module
from astrobio_cli.plugins import get_host

from .conftest import make_qkv, max_err


def _exact_backends() -> list[str]:
    host = get_host()
    out = []
    for spec in host.specs("attention"):
        entry = host.entry("attention", spec.name)
        if entry.plugin.dist != "astrobio-attention" or not spec.exact or spec.name == "triton":
            continue
        if host.status(spec).state == "available":
            out.append(spec.name)
    return out


CUDA_ONLY = ("sdpa-efficient", "sdpa-cudnn", "flash-attn", "xformers")
BACKENDS = [b for b in _exact_backends() if b not in CUDA_ONLY]  # run on CPU tensors
CUDA_BACKENDS = [b for b in _exact_backends() if b in CUDA_ONLY or b.startswith("sdpa")]
if has_cuda() and need_module("triton")[0]:
    CUDA_BACKENDS.append("triton")  # compiled for the GPU here; the interpreter: test_triton.py
# Absolute error budgets against float64 for outputs and gradients of O(1) magnitude.
TOL = {torch.float32: 5e-5, torch.float16: 5e-3, torch.bfloat16: 4e-2}


def test_the_cpu_backends_are_all_here():
    assert {"eager", "sdpa", "sdpa-flash", "sdpa-math"} <= set(BACKENDS)


def _mask(kind: str, B: int, Hq: int, Tq: int, Tk: int, g: torch.Generator):
    keep = torch.rand(B, Hq, Tq, Tk, generator=g) > 0.3
    keep[..., 0] = True  # every row keeps a key unless a test wants empty rows
    if kind == "none":
        return None
    if kind == "bool-2d":
        return keep[0, 0]
    if kind == "bool-4d":
        return keep[:, :1]
    if kind.startswith("additive"):
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
            kind.split("-")[1]
        ]
        bias = torch.randn(B, Hq, Tq, Tk, generator=g)
        return bias.masked_fill(~keep, float("-inf")).to(dtype)
    if kind == "padding":
        pad = torch.rand(B, Tk, generator=g) > 0.3
        pad[:, -1] = True
        return pad
    raise AssertionError(kind)


CASES = [
    # (B, Hq, Hkv, Tq, Tk, D, mask, causal, scale, dtype)
    (2, 4, 4, 16, 16, 32, "none", False, None, torch.float32),
    (2, 4, 4, 16, 16, 32, "none", True, None, torch.float32),
    (1, 4, 2, 256, 256, 64, "none", True, None, torch.float32),
    (1, 4, 1, 256, 256, 32, "padding", False, 0.05, torch.float32),
    (2, 4, 2, 1, 37, 32, "none", True, None, torch.float32),  # decode: one query
    (2, 4, 2, 5, 37, 32, "bool-2d", True, None, torch.float32),  # decode: a query block
    (2, 4, 4, 24, 24, 16, "bool-4d", True, None, torch.float32),
    (2, 4, 2, 24, 30, 16, "additive-fp32", False, 0.3, torch.float32),
    (2, 4, 2, 24, 30, 16, "additive-fp16", True, None, torch.float32),
    (2, 4, 2, 24, 30, 16, "additive-bf16", False, None, torch.float32),
    (2, 4, 2, 24, 20, 16, "padding", True, None, torch.float32),  # Tq > Tk: causal empties rows
    (2, 4, 2, 32, 32, 32, "padding", True, None, torch.float16),
    (2, 4, 1, 32, 32, 32, "bool-2d", False, None, torch.bfloat16),
]


def _ids(case):
    B, Hq, Hkv, Tq, Tk, D, mask, causal, scale, dtype = case
    return (
        f"B{B}-H{Hq}/{Hkv}-T{Tq}x{Tk}-D{D}-{mask}-{'causal' if causal else 'full'}"
        f"{'-s' if scale else ''}-{str(dtype)[6:]}"
    )


_REF: dict = {}


def _reference(case):
    """float64 output and gradients for a case (computed once, shared by every backend)."""
    if case in _REF:
        return _REF[case]
    B, Hq, Hkv, Tq, Tk, D, kind, causal, scale, dtype = case
    g = torch.Generator().manual_seed(zlib.crc32(_ids(case).encode()))
    q, k, v = make_qkv(B, Hq, Hkv, Tq, Tk, D, dtype=dtype, seed=int(g.initial_seed()))
    mask = _mask(kind, B, Hq, Tq, Tk, g)
    do = torch.randn(B, Hq, Tq, D, generator=g).to(dtype)
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    ref = reference_attention(q64, k64, v64, mask=mask, causal=causal, scale=scale)
    ref.backward(do.double())
    _REF[case] = (q, k, v, mask, do, ref.detach(), (q64.grad, k64.grad, v64.grad))
    return _REF[case]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_backend_matches_float64_reference(backend, case):
    B, Hq, _, Tq, _, D, _, causal, scale, dtype = case
    q, k, v, mask, do, ref, ref_grads = _reference(case)
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = attention(q, k, v, mask=mask, causal=causal, scale=scale, backend=backend)
    assert out.shape == (B, Hq, Tq, D) and out.dtype == dtype
    tol = TOL[dtype]
    assert max_err(out, ref) < tol, f"{backend} output error"
    out.backward(do)
    for name, got, want in zip("qkv", (q.grad, k.grad, v.grad), ref_grads, strict=True):
        assert torch.isfinite(got).all(), f"{backend} d{name} has NaN/inf"
        assert max_err(got, want) < 4 * tol, f"{backend} d{name} error"


def test_the_reference_itself_matches_a_loop():
    # The reference is checked once against a per-element loop (no broadcasting, no masks
    # by tensor ops), so the other tests do not rest on an unchecked oracle.
    q, k, v = make_qkv(B=1, Hq=2, Hkv=1, Tq=3, Tk=5, D=4, dtype=torch.float64)
    mask = torch.tensor([True, False, True, True, True])
    ref = reference_attention(q, k, v, mask=mask[None].expand(1, 5), causal=True, scale=0.7)
    for h in range(2):
        for i in range(3):
            ws = []
            for j in range(5):
                ok = bool(mask[j]) and j <= i + 2
                ws.append(torch.exp((q[0, h, i] @ k[0, 0, j]) * 0.7) if ok else torch.tensor(0.0))
            w = torch.stack(ws).double()
            want = (w / w.sum()) @ v[0, 0]
            assert torch.allclose(ref[0, h, i], want, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_rows_give_zeros_and_zero_gradient(backend):
    q, k, v = make_qkv(B=2, Hq=2, Tq=6, Tk=8, D=16, grad=True)
    mask = torch.ones(2, 2, 6, 8, dtype=torch.bool)
    mask[0, 1, 3] = False  # one row of one head sees nothing
    mask[1] = False  # the whole second batch element is masked
    out = attention(q, k, v, mask=mask, backend=backend)
    assert torch.equal(out[0, 1, 3], torch.zeros(16))
    assert torch.equal(out[1], torch.zeros(2, 6, 16))
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert torch.equal(q.grad[0, 1, 3], torch.zeros(16))
    assert torch.equal(q.grad[1], torch.zeros(2, 6, 16))
    assert torch.equal(v.grad[1], torch.zeros(2, 8, 16))
    additive = torch.zeros(6, 8).masked_fill(torch.arange(6)[:, None] == 2, float("-inf"))
    out = attention(q.detach(), k.detach(), v.detach(), mask=additive, backend=backend)
    assert torch.equal(out[:, :, 2], torch.zeros(2, 2, 16))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_kv_cache_decode_equals_full_causal_forward(backend):
    B, Hq, Hkv, T, D = 2, 4, 2, 10, 16
    q, k, v = make_qkv(B, Hq, Hkv, T, T, D)
    full = attention(q, k, v, causal=True, backend=backend)
    cache = KVCache(B, Hkv, 16, D)
    ks, vs = cache.append(k[:, :, :3], v[:, :, :3])
    steps = [attention(q[:, :, :3], ks, vs, causal=True, backend=backend)]
    for t in range(3, T):
        ks, vs = cache.append(k[:, :, t : t + 1], v[:, :, t : t + 1])
        assert ks.shape == (B, Hkv, t + 1, D)
        steps.append(attention(q[:, :, t : t + 1], ks, vs, causal=True, backend=backend))
    assert max_err(torch.cat(steps, dim=2), full) < 1e-5


def test_kv_cache_rejects_overflow_and_wrong_shapes():
    cache = KVCache(1, 2, 4, 8)
    with pytest.raises(ValueError, match="must have shape"):
        cache.append(torch.zeros(1, 3, 1, 8), torch.zeros(1, 3, 1, 8))
    cache.append(torch.zeros(1, 2, 4, 8), torch.zeros(1, 2, 4, 8))
    with pytest.raises(ValueError, match="KVCache is full"):
        cache.append(torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 1, 8))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["eager", "sdpa-flash"])
def test_long_sequence_4096_forward_and_gradients(backend):
    # T = 4096 with B = H = 1 and a small head dim keeps the float64 reference at 128 MiB.
    case = (1, 1, 1, 4096, 4096, 16, "none", True, None, torch.float32)
    q, k, v, _, do, ref, ref_grads = _reference(case)
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = attention(q, k, v, causal=True, backend=backend)
    assert max_err(out, ref) < 5e-5
    out.backward(do)
    for got, want in zip((q.grad, k.grad, v.grad), ref_grads, strict=True):
        assert max_err(got, want) < 2e-4


@pytest.mark.gpu
@pytest.mark.skipif(not has_cuda(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c[-1] != torch.float32] + [(*c[:-1], torch.float16) for c in CASES[:6]],
    ids=_ids,
)
def test_cuda_backend_matches_float64_reference(backend, case):
    # CUDA kernels decline some cases (fp32 for flash, masks for flash-attn): skip with the reason.
    *_, causal, scale, dtype = case
    q, k, v, mask, do, ref, ref_grads = _reference(case)
    q, k, v = (t.cuda().requires_grad_() for t in (q, k, v))
    mask = None if mask is None else mask.cuda()
    exp = explain(q, k, v, mask=mask, causal=causal, scale=scale, backend=backend)
    if exp.chosen != backend:
        pytest.skip(next(c.reason for c in exp.candidates if c.name == backend))
    out = attention(q, k, v, mask=mask, causal=causal, scale=scale, backend=backend)
    tol = TOL[dtype]
    assert max_err(out.cpu(), ref) < tol
    out.backward(do.cuda())
    for got, want in zip((q.grad, k.grad, v.grad), ref_grads, strict=True):
        assert max_err(got.cpu(), want) < 4 * tol
