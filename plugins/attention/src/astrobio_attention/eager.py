"""`eager`: attention in plain PyTorch operations, the readable baseline.

Materialises the (B, Hq, Tq, Tk) score matrix in float32, so memory grows with Tq * Tk.
Grouped-query attention reads K/V through a (B, Hkv, G, T, D) view: no copy of K or V.
"""

from __future__ import annotations

import torch


def grouped(t: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """(b, h, ...) -> (b, Hkv, G, ...) when h is the query head count, (b, 1, 1, ...) when 1."""
    b, h = t.shape[:2]
    if h == 1:
        return t.unsqueeze(2)
    return t.reshape(b, kv_heads, h // kv_heads, *t.shape[2:])


def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None,
    causal: bool,
    scale: float,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """softmax(q k^T * scale [+ bias], masked) v with float32 accumulation; q's dtype out."""
    B, Hq, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    qg = grouped(q.to(compute), Hkv)  # (B, Hkv, G, Tq, D)
    kg = k.to(compute).unsqueeze(2)  # (B, Hkv, 1, Tk, D)
    vg = v.to(compute).unsqueeze(2)
    scores = torch.matmul(qg, kg.transpose(-1, -2)) * scale  # (B, Hkv, G, Tq, Tk)

    allowed = None
    if causal:
        i = torch.arange(Tq, device=q.device).unsqueeze(1)
        j = torch.arange(Tk, device=q.device).unsqueeze(0)
        allowed = j <= i + (Tk - Tq)  # bottom-right aligned
    if mask is not None and mask.dtype == torch.bool:
        m = grouped(mask, Hkv)
        allowed = m if allowed is None else m & allowed
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    if mask is not None and mask.dtype != torch.bool:
        scores = scores + grouped(mask.to(compute), Hkv)

    # A row with no key left would be softmax(-inf, ..., -inf) = NaN: make it zeros instead, and
    # keep its gradient zero by never letting -inf - (-inf) into the graph.
    empty = None
    if allowed is not None or mask is not None:
        empty = torch.isneginf(scores).all(dim=-1, keepdim=True)
        scores = scores.masked_fill(empty, 0.0)
    probs = torch.softmax(scores, dim=-1)
    if empty is not None:
        probs = probs.masked_fill(empty, 0.0)
    if dropout_p > 0.0:
        probs = torch.nn.functional.dropout(probs, p=dropout_p)
    out = torch.matmul(probs, vg)  # (B, Hkv, G, Tq, D)
    return out.reshape(B, Hq, Tq, D).to(q.dtype)


class EagerBackend:
    name = "eager"
    supports_dropout = True

    def supports(self, q, k, v, mask, causal, training):
        return True, ""

    def __call__(self, q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0):
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        return eager_attention(q, k, v, mask=mask, causal=causal, scale=scale, dropout_p=dropout_p)
