"""Inexact backends: `linear` (kernelised, O(T)) and `sliding-window` (exact inside a window).

Both are registered with exact=False, so `auto` never picks them: a model names them.
"""

from __future__ import annotations

import torch

from astrobio_attention.eager import grouped


def window_band(
    Tq: int, Tk: int, window: int, causal: bool, device, rows=(0, None), cols=(0, None)
) -> torch.Tensor:
    """(Tq, Tk) boolean band: query i (at key position i' = i + Tk - Tq) sees key j when
    0 <= i' - j < window (causal) or |i' - j| < window (not causal).

    rows, cols: (start, stop) to build only that block of the band.
    """
    r0, r1 = rows[0], Tq if rows[1] is None else rows[1]
    c0, c1 = cols[0], Tk if cols[1] is None else cols[1]
    i = torch.arange(r0, r1, device=device).unsqueeze(1) + (Tk - Tq)
    j = torch.arange(c0, c1, device=device).unsqueeze(0)
    d = i - j
    if causal:
        return (d >= 0) & (d < window)
    return d.abs() < window


def _slice_mask(mask, qs: slice, ks: slice):
    if mask is None:
        return None
    m = mask if mask.shape[2] == 1 else mask[:, :, qs]
    return m if m.shape[3] == 1 else m[:, :, :, ks]


class SlidingWindowBackend:
    """Attention restricted to a band of `window` keys per query, computed block by block.

    Equals `eager` with mask AND window_band(...): each query block of `window` rows reads only
    the keys its band can reach, so time and memory are O(T * window), not O(T^2).
    """

    name = "sliding-window"
    supports_dropout = True

    def __init__(self, window: int) -> None:
        from astrobio_attention.sdpa import SdpaBackend

        self.window = int(window)
        # Each block is an exact masked attention: PyTorch's SDPA (fused where it can be, our
        # empty-row handling included) is several times faster than eager math on the CPU.
        self._block = SdpaBackend("sdpa")

    def supports(self, q, k, v, mask, causal, training):
        return True, ""

    def __call__(self, q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0):
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        Tq, Tk = q.shape[2], k.shape[2]
        W, off = self.window, Tk - Tq
        outs = []
        for s in range(0, Tq, W):
            e = min(s + W, Tq)
            lo = max(0, s + off - W + 1)
            hi = min(Tk, e - 1 + off + (1 if causal else W))
            if hi <= lo:
                outs.append(torch.zeros_like(q[:, :, s:e]))
                continue
            band = window_band(Tq, Tk, W, causal, q.device, (s, e), (lo, hi))[None, None]
            m = _slice_mask(mask, slice(s, e), slice(lo, hi))
            if m is None:
                m = band
            elif m.dtype == torch.bool:
                m = m & band
            else:
                m = m.masked_fill(~band, float("-inf"))
            outs.append(
                self._block(
                    q[:, :, s:e],
                    k[:, :, lo:hi],
                    v[:, :, lo:hi],
                    mask=m,
                    causal=False,
                    scale=scale,
                    dropout_p=dropout_p,
                )
            )
        return torch.cat(outs, dim=2)


class LinearBackend:
    """Kernelised linear attention (Katharopoulos et al. 2020), phi(x) = elu(x) + 1.

    out_i = phi(q_i) . sum_j phi(k_j) v_j^T / phi(q_i) . sum_j phi(k_j), over the keys query i may
    see. `scale` enters as phi(x * s) with s = sqrt(scale * sqrt(D)), so the default scale gives
    s = 1. Time and memory O(T * D^2). Key-padding masks drop keys; general masks are declined.
    Causal runs chunk by chunk: a (D, D) running state plus a small exact block per chunk.
    """

    name = "linear"
    supports_dropout = False
    chunk = 64

    def supports(self, q, k, v, mask, causal, training):
        if mask is not None and not (mask.dtype == torch.bool and mask.shape[1:3] == (1, 1)):
            return False, "takes boolean key-padding masks only (B, Tk); a general mask is declined"
        return True, ""

    def __call__(self, q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0):
        B, Hq, Tq, D = q.shape
        Hkv, Tk = k.shape[1], k.shape[2]
        scale = D**-0.5 if scale is None else scale
        s = (scale * D**0.5) ** 0.5
        compute = torch.float64 if q.dtype == torch.float64 else torch.float32
        fq = grouped(torch.nn.functional.elu(q.to(compute) * s) + 1, Hkv)  # (B, Hkv, G, Tq, D)
        fk = torch.nn.functional.elu(k.to(compute) * s) + 1  # (B, Hkv, Tk, D)
        vv = v.to(compute)
        if mask is not None:
            fk = fk * mask[:, :, 0, :, None].to(compute)  # (b, 1, Tk, 1): padded keys vanish
        if not causal:
            kv = torch.einsum("bhjd,bhje->bhde", fk, vv)  # (B, Hkv, D, D)
            z = fk.sum(dim=2)  # (B, Hkv, D)
            num = torch.einsum("bhgid,bhde->bhgie", fq, kv)
            den = torch.einsum("bhgid,bhd->bhgi", fq, z).unsqueeze(-1)
            out = num / den.clamp_min(1e-12)
            return out.reshape(B, Hq, Tq, D).to(q.dtype)
        off = Tk - Tq
        kv = torch.zeros(B, Hkv, D, D, dtype=compute, device=q.device)
        z = torch.zeros(B, Hkv, D, dtype=compute, device=q.device)
        done = 0  # keys folded into the running state
        outs = []
        for st in range(0, Tq, self.chunk):
            en = min(st + self.chunk, Tq)
            lo = max(0, min(Tk, st + off))  # keys every query of the chunk sees: [0, lo)
            if lo > done:
                kv = kv + torch.einsum("bhjd,bhje->bhde", fk[:, :, done:lo], vv[:, :, done:lo])
                z = z + fk[:, :, done:lo].sum(dim=2)
                done = lo
            hi = max(lo, min(Tk, en + off))  # keys some queries of the chunk see
            qc = fq[:, :, :, st:en]
            num = torch.einsum("bhgid,bhde->bhgie", qc, kv)
            den = torch.einsum("bhgid,bhd->bhgi", qc, z)
            if hi > lo:
                a = torch.einsum("bhgid,bhjd->bhgij", qc, fk[:, :, lo:hi])
                i = torch.arange(st, en, device=q.device).unsqueeze(1) + off
                j = torch.arange(lo, hi, device=q.device).unsqueeze(0)
                a = a * (j <= i).to(compute)
                num = num + torch.einsum("bhgij,bhje->bhgie", a, vv[:, :, lo:hi])
                den = den + a.sum(-1)
            out = torch.where(den.unsqueeze(-1) > 0, num / den.clamp_min(1e-12).unsqueeze(-1), 0.0)
            outs.append(out)
        return torch.cat(outs, dim=3).reshape(B, Hq, Tq, D).to(q.dtype)
