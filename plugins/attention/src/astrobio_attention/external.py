"""`flash-attn` (Dao-AILab/flash-attention) and `xformers`: third-party CUDA kernels.

Optional extras of this distribution (`astrobio-attention[flash-attn]`, `[xformers]`). Where the
library is not installed or there is no CUDA device, the spec's `check` says so and nothing here
is imported. Both take (B, T, H, D) layouts: the transposes below are views, no copies.
"""

from __future__ import annotations

import torch


def _causal_empty(q, k, out, causal):
    """Zero the first Tq - Tk rows when causal with Tq > Tk (they see no key)."""
    Tq, Tk = q.shape[2], k.shape[2]
    if causal and Tq > Tk:
        out = out.clone()
        out[:, :, : Tq - Tk] = 0
    return out


class FlashAttnBackend:
    name = "flash-attn"
    supports_dropout = True

    def supports(self, q, k, v, mask, causal, training):
        if q.device.type != "cuda":
            return False, "needs a CUDA device"
        if q.dtype not in (torch.float16, torch.bfloat16):
            return False, f"flash-attn takes fp16 or bf16, not {q.dtype}"
        D = q.shape[-1]
        if D > 256 or D % 8 != 0:
            return False, f"flash-attn needs head dim <= 256 and a multiple of 8, got {D}"
        if mask is not None:
            return False, "flash-attn takes no mask here (key padding would need varlen packing)"
        major, _ = torch.cuda.get_device_capability(q.device)
        if major < 8:
            return False, "flash-attn 2 needs an Ampere or newer GPU (sm80+)"
        return True, ""

    def __call__(self, q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0):
        from flash_attn import flash_attn_func

        out = flash_attn_func(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            dropout_p=dropout_p,
            softmax_scale=scale,
            causal=causal,  # flash-attn >= 2.1 aligns causal bottom-right, as we do
        ).transpose(1, 2)
        return _causal_empty(q, k, out, causal)


class XformersBackend:
    name = "xformers"
    supports_dropout = True

    def supports(self, q, k, v, mask, causal, training):
        if q.device.type != "cuda":
            return False, "needs a CUDA device"
        if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            return False, f"xformers takes fp16, bf16 or fp32, not {q.dtype}"
        if mask is not None:
            return False, "masks are not wired to xformers attn_bias here; use sdpa or triton"
        return True, ""

    def __call__(self, q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0):
        from xformers.ops import fmha

        B, Hq, Tq, D = q.shape
        Hkv, Tk = k.shape[1], k.shape[2]
        G = Hq // Hkv
        # 5-D (B, T, Hkv, G, D) is xformers' grouped-query layout; K/V are expanded views.
        qx = q.transpose(1, 2).reshape(B, Tq, Hkv, G, D)
        kx = k.transpose(1, 2).unsqueeze(3).expand(B, Tk, Hkv, G, D)
        vx = v.transpose(1, 2).unsqueeze(3).expand(B, Tk, Hkv, G, D)
        bias = fmha.attn_bias.LowerTriangularFromBottomRightMask() if causal else None
        out = fmha.memory_efficient_attention(qx, kx, vx, attn_bias=bias, p=dropout_p, scale=scale)
        out = out.reshape(B, Tq, Hq, D).transpose(1, 2)
        return _causal_empty(q, k, out, causal)
