"""`triton`: our fused flash-attention kernel, forward and backward, written in Triton.

Forward (one program per (query block, batch*head)): stream K/V tiles through an online softmax
(running max m, running sum l, rescaled accumulator), so the (Tq, Tk) score matrix never exists;
store O and the row log-sum-exp. Backward recomputes the probabilities tile by tile from Q, K and
the saved log-sum-exp (FlashAttention-2, Dao 2023): one kernel accumulates dK and dV per key block
(looping over the query heads of its KV group, so grouped-query attention needs no atomics), a
second accumulates dQ per query block. Exponentials are base 2 with log2(e) folded into the scale.

Semantics: causal aligned bottom-right (key j visible to query i when j <= i + Tk - Tq); any Tq and
Tk (tails are masked loads); D from 16 to 128 (padded to a power of two, masked); fp16, bf16 and
fp32 (fp32 dots in IEEE precision, not TF32, so the error budget matches the other backends);
grouped-query attention by index mapping (query head h reads KV head h // (Hq / Hkv)); key-padding
masks (boolean or additive, shape (B, 1, 1, Tk)) as a per-key bias. General (Tq, Tk) masks and
dropout are declined with the reason. A row with no visible key returns zeros: its log-sum-exp
is stored as +inf, which makes every recomputed probability exp2(s - lse) exactly 0 in backward.

On a CPU the kernels run only under TRITON_INTERPRET=1 (set before triton is imported): the
interpreter executes them with NumPy, for correctness only.
"""

from __future__ import annotations

import os

import torch

LOG2E = 1.4426950408889634
DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _key_padding(mask):
    return mask is not None and mask.dim() == 4 and mask.shape[1] == 1 and mask.shape[2] == 1


class TritonBackend:
    name = "triton"
    supports_dropout = False

    def supports(self, q, k, v, mask, causal, training):
        if q.device.type == "cuda":
            if interpreting():
                return False, "TRITON_INTERPRET=1 is set: the interpreter cannot run CUDA tensors"
        elif not interpreting():
            return False, (
                f"runs on CUDA; {q.device.type} tensors only under TRITON_INTERPRET=1 "
                "(interpreter: correctness only)"
            )
        if q.dtype not in DTYPES:
            return False, f"takes fp16, bf16 or fp32, not {q.dtype}"
        D = q.shape[-1]
        if not 16 <= D <= 128:
            return False, f"head dim must be in 16..128, got {D}"
        if mask is not None and not _key_padding(mask):
            return False, (
                "takes key-padding masks only ((B, Tk) or (B, 1, 1, Tk)); a general "
                f"{tuple(mask.shape)} mask is declined (use sdpa or eager)"
            )
        return True, ""

    def __call__(self, q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0):
        if dropout_p > 0:
            raise ValueError("the triton attention backend does not implement dropout")
        scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
        bias = None
        if mask is not None:
            m = mask[:, 0, 0, :]  # (b, Tk), b in {1, B}
            if m.dtype == torch.bool:
                bias = torch.zeros(m.shape, dtype=torch.float32, device=q.device)
                bias = bias.masked_fill(~m, float("-inf"))
            else:
                bias = m.to(torch.float32).contiguous()
        return FlashAttnFunction.apply(q, k, v, bias, bool(causal), scale)


class FlashAttnFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, causal, scale):
        o, lse = _forward(q, k, v, bias, causal, scale)
        ctx.save_for_backward(q, k, v, o, lse, bias)
        ctx.causal, ctx.scale = causal, scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, bias = ctx.saved_tensors
        dq, dk, dv = _backward(q, k, v, o, lse, bias, do, ctx.causal, ctx.scale)
        return dq, dk, dv, None, None, None


def _blocks(q) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages). Fixed, not autotuned: untuned on GPUs here."""
    if q.device.type != "cuda":
        return 32, 32, 1, 1  # interpreter: NumPy per tile; mid-size tiles keep it quick
    D = q.shape[-1]
    if D <= 64:
        return 128, 64, 4, 3
    return 128, 64, 8, 3


def _dot_mode(q) -> int:
    if q.dtype == torch.float32:
        return 1
    if q.dtype == torch.bfloat16 and q.device.type != "cuda":
        return 2
    return 0


def _bias_args(bias, q):
    if bias is None:
        return q, 0, False  # a dummy pointer; HAS_BIAS=False never reads it
    return bias, (bias.stride(0) if bias.shape[0] > 1 else 0), True


def _forward(q, k, v, bias, causal, scale):
    import triton

    kernels = _kernels()
    B, Hq, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    o = torch.empty_like(q)
    lse = torch.empty(B, Hq, Tq, dtype=torch.float32, device=q.device)
    BM, BN, warps, stages = _blocks(q)
    BD = max(16, triton.next_power_of_2(D))
    bias_t, sbb, has_bias = _bias_args(bias, q)
    grid = (triton.cdiv(Tq, BM), B * Hq)
    kernels["fwd"][grid](
        q, k, v, bias_t, o, lse,
        scale * LOG2E,
        *q.stride(), *k.stride(), *v.stride(), *o.stride(), sbb,
        Hq, Hq // Hkv, Tq, Tk, D,
        CAUSAL=causal, HAS_BIAS=has_bias, DOT=_dot_mode(q),
        BLOCK_M=BM, BLOCK_N=BN, BLOCK_D=BD,
        num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return o, lse


def _backward(q, k, v, o, lse, bias, do, causal, scale):
    import triton

    kernels = _kernels()
    B, Hq, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    do = do.contiguous()
    delta = (do.float() * o.float()).sum(-1)  # (B, Hq, Tq): rowsum(dO * O)
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    BM, BN, warps, stages = _blocks(q)
    BD = max(16, triton.next_power_of_2(D))
    bias_t, sbb, has_bias = _bias_args(bias, q)
    common = dict(
        CAUSAL=causal, HAS_BIAS=has_bias, DOT=_dot_mode(q),
        BLOCK_M=BM, BLOCK_N=BN, BLOCK_D=BD, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    kernels["dkdv"][(triton.cdiv(Tk, BN), B * Hkv)](
        q, k, v, bias_t, do, lse, delta, dk, dv,
        scale * LOG2E, scale,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), *dv.stride(), sbb,
        Hq, Hkv, Hq // Hkv, Tq, Tk, D,
        **common,
    )  # fmt: skip
    kernels["dq"][(triton.cdiv(Tq, BM), B * Hq)](
        q, k, v, bias_t, do, lse, delta, dq,
        scale * LOG2E, scale,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride(), sbb,
        Hq, Hq // Hkv, Tq, Tk, D,
        **common,
    )  # fmt: skip
    return dq, dk, dv


def _kernels() -> dict[str, object]:
    """The jitted kernels; importing them imports triton, so only on first use."""
    from astrobio_attention import triton_kernels

    return triton_kernels.KERNELS


def flops(B: int, H: int, Tq: int, Tk: int, D: int, causal: bool) -> float:
    """4·B·H·Tq·Tk·D, halved when causal (the usual flash-attention count)."""
    f = 4.0 * B * H * Tq * Tk * D
    return f / 2 if causal else f


__all__ = ["FlashAttnFunction", "TritonBackend", "flops", "interpreting"]
