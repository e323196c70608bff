"""The example attention backend: readable, float32, no tricks."""

from __future__ import annotations


class NaiveAttention:
    name = "example-naive"

    def supports(self, q, k, v, mask, causal, training):
        if q.shape[1] != k.shape[1]:
            return False, "grouped-query attention is not supported by example-naive"
        return True, ""

    def __call__(self, q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0):
        import torch

        scale = q.shape[-1] ** -0.5 if scale is None else scale
        s = (q.float() @ k.float().transpose(-1, -2)) * scale  # (B, H, Tq, Tk)
        tq, tk = q.shape[-2], k.shape[-2]
        allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device)
        if causal:
            allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(tk - tq)
        if mask is not None and mask.dtype == torch.bool:
            allowed = allowed & mask
        s = s.masked_fill(~allowed, float("-inf"))
        if mask is not None and mask.dtype != torch.bool:
            s = s + mask.float()
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # fully masked rows give zeros
        return (p @ v.float()).to(q.dtype)
