"""The float64 reference every backend is checked against.

Written for clarity and independence from the backends: K/V heads are repeated explicitly (no
grouped views), the causal band and the mask become one explicit boolean matrix, and the softmax
is spelled out with its max subtraction. Differentiable, so gradients are checked against it too.
"""

from __future__ import annotations

import torch

from astrobio_cli.attention.problem import check_inputs


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + bias, masked) v in float64; returns float64 (B, Hq, Tq, D)."""
    p = check_inputs(q, k, v, mask, causal, scale)
    q64, k64, v64 = q.double(), k.double(), v.double()
    g = p.q_heads // p.kv_heads
    k64 = k64.repeat_interleave(g, dim=1)  # (B, Hq, Tk, D): head h reads kv head h // g
    v64 = v64.repeat_interleave(g, dim=1)

    scores = torch.einsum("bhid,bhjd->bhij", q64, k64) * p.scale  # (B, Hq, Tq, Tk)
    allowed = torch.ones(p.q_len, p.kv_len, dtype=torch.bool, device=q.device)
    if causal:
        for i in range(p.q_len):  # j <= i + (Tk - Tq), written out
            last = i + p.kv_len - p.q_len
            allowed[i, max(last + 1, 0) :] = False
    allowed = allowed.expand(p.batch, p.q_heads, p.q_len, p.kv_len)
    if p.mask is not None:
        if p.mask.dtype == torch.bool:
            allowed = allowed & p.mask
        else:
            scores = scores + p.mask.double()
            allowed = allowed & ~torch.isneginf(p.mask)
    scores = torch.where(allowed, scores, torch.zeros((), dtype=torch.float64, device=q.device))
    row_max = torch.where(allowed, scores, torch.full_like(scores, -torch.inf)).amax(
        -1, keepdim=True
    )
    has_key = allowed.any(-1, keepdim=True)
    row_max = torch.where(has_key, row_max, torch.zeros_like(row_max))
    weights = torch.exp(scores - row_max) * allowed
    denom = weights.sum(-1, keepdim=True)
    probs = weights / torch.where(has_key, denom, torch.ones_like(denom))
    return torch.einsum("bhij,bhjd->bhid", probs, v64)
