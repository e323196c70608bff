"""`sdpa` and its pinned kernels: `sdpa-flash`, `sdpa-efficient`, `sdpa-math`, `sdpa-cudnn`.

`sdpa` lets PyTorch choose its kernel. The pinned variants run inside
`torch.nn.attention.sdpa_kernel([one backend])`, so PyTorch cannot silently fall back to another
kernel: a call the kernel cannot take fails, and `supports` says so beforehand.

Semantics adapters (why this module is more than one call):
- PyTorch's `is_causal` is aligned top-left; ours is bottom-right. When Tq != Tk, or a mask is
  given, the causal band becomes part of an explicit mask.
- Additive masks are passed in q's dtype (SDPA's rule); boolean masks as they are.
- Grouped-query attention uses `enable_gqa=True` (no K/V copy where the kernel supports it).
- Rows with no key to attend to are set to zeros explicitly (with zero gradient), whatever the
  kernel does with them.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F

KERNELS = {
    "sdpa-flash": "FLASH_ATTENTION",
    "sdpa-efficient": "EFFICIENT_ATTENTION",
    "sdpa-math": "MATH",
    "sdpa-cudnn": "CUDNN_ATTENTION",
}
CUDA_ONLY = ("sdpa-efficient", "sdpa-cudnn")


def _band(Tq: int, Tk: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(Tq, device=device).unsqueeze(1)
    j = torch.arange(Tk, device=device).unsqueeze(0)
    return j <= i + (Tk - Tq)


def sdpa_mask(q, k, mask, causal) -> tuple[torch.Tensor | None, bool]:
    """(attn_mask, is_causal) for F.scaled_dot_product_attention with our semantics."""
    Tq, Tk = q.shape[2], k.shape[2]
    if not causal:
        if mask is not None and mask.dtype != torch.bool:
            return mask.to(q.dtype), False
        return mask, False
    if mask is None and Tq == Tk:
        return None, True  # top-left == bottom-right when square
    band = _band(Tq, Tk, q.device)[None, None]
    if mask is None:
        return band, False
    if mask.dtype == torch.bool:
        return mask & band, False
    return mask.to(q.dtype).masked_fill(~band, float("-inf")), False


def _empty_rows(q, k, mask, causal) -> torch.Tensor | None:
    if mask is None and not (causal and q.shape[2] > k.shape[2]):
        return None
    allowed = None
    if mask is not None:
        allowed = mask if mask.dtype == torch.bool else ~torch.isneginf(mask)
    if causal:
        band = _band(q.shape[2], k.shape[2], q.device)[None, None]
        allowed = band if allowed is None else allowed & band
    empty = ~allowed.any(dim=-1, keepdim=True)  # (b, h, Tq, 1)
    return empty if bool(empty.any()) else None


class SdpaBackend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.kernel = KERNELS.get(name)  # None: PyTorch chooses

    def _context(self):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        if self.kernel is None:
            import contextlib

            return contextlib.nullcontext()
        return sdpa_kernel([getattr(SDPBackend, self.kernel)])

    def supports_dropout(self, q) -> bool:
        # PyTorch's CPU flash kernel has no dropout; the CUDA kernels and math do.
        return not (self.kernel == "FLASH_ATTENTION" and q.device.type != "cuda")

    def supports(self, q, k, v, mask, causal, training):
        if self.name in CUDA_ONLY and q.device.type != "cuda":
            return False, f"needs a CUDA device (PyTorch has no CPU {self.kernel} kernel)"
        if self.kernel is None or self.kernel == "MATH":
            return True, ""
        gqa = q.shape[1] != k.shape[1]
        if q.device.type == "cuda":
            return _cuda_check(self.kernel, q, k, v, mask, causal, gqa, training)
        mask_kind = "none" if mask is None else ("bool" if mask.dtype == torch.bool else "additive")
        return _probe(
            self.kernel,
            q.device.type,
            q.dtype,
            q.shape[-1],
            q.shape[1] // k.shape[1],
            mask_kind,
            bool(causal) and (mask is not None or q.shape[2] != k.shape[2]),
            bool(causal),
            bool(training),
        )

    def __call__(self, q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0):
        attn_mask, is_causal = sdpa_mask(q, k, mask, causal)
        empty = _empty_rows(q, k, mask, causal)
        if empty is not None:
            # Unmask empty rows so no kernel sees an all -inf row; zero them afterwards.
            if attn_mask.dtype == torch.bool:
                attn_mask = attn_mask | empty
            else:
                attn_mask = attn_mask.masked_fill(empty, 0.0)
        gqa = q.shape[1] != k.shape[1]
        with self._context():
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=dropout_p,
                is_causal=is_causal,
                scale=scale,
                enable_gqa=gqa,
            )
        if empty is not None:
            out = out.masked_fill(empty, 0.0)
        return out


@functools.lru_cache(maxsize=256)
def _probe(kernel, device, dtype, D, groups, mask_kind, band_mask, causal, training):
    """Run the pinned kernel once on a tiny problem with the same properties; cache the verdict."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    T = 8
    q = torch.randn(1, groups, T, D, dtype=dtype, device=device, requires_grad=training)
    k = torch.randn(1, 1, T + 1, D, dtype=dtype, device=device, requires_grad=training)
    v = torch.randn(1, 1, T + 1, D, dtype=dtype, device=device, requires_grad=training)
    mask = None
    if mask_kind == "bool":
        mask = torch.ones(T, T + 1, dtype=torch.bool, device=device)
    elif mask_kind == "additive":
        mask = torch.zeros(T, T + 1, dtype=dtype, device=device)
    if band_mask:
        mask = _band(T, T + 1, torch.device(device)) if mask is None else mask
    try:
        with warnings.catch_warnings(), sdpa_kernel([getattr(SDPBackend, kernel)]):
            warnings.simplefilter("ignore")
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, enable_gqa=groups > 1, is_causal=causal and not band_mask
            )
            if training:
                out.sum().backward()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return False, f"PyTorch's {kernel} kernel declines it on {device}: {first}"
    return True, ""


def _cuda_check(kernel, q, k, v, mask, causal, gqa, training):
    """Ask PyTorch's own dispatcher checks; their debug warnings are the reason."""
    attn_mask, is_causal = sdpa_mask(q, k, mask, causal)
    can = {
        "FLASH_ATTENTION": "can_use_flash_attention",
        "EFFICIENT_ATTENTION": "can_use_efficient_attention",
        "CUDNN_ATTENTION": "can_use_cudnn_attention",
    }[kernel]
    fn = getattr(torch.backends.cuda, can, None)
    if fn is None:
        return True, ""
    params = torch.backends.cuda.SDPAParams(q, k, v, attn_mask, 0.0, is_causal, gqa)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = fn(params, True)
    if ok:
        return True, ""
    why = "; ".join(str(w.message).strip() for w in caught) or _known_limits(kernel, q, attn_mask)
    return False, why


def _known_limits(kernel, q, attn_mask) -> str:
    """A reason when PyTorch's debug output went to the C++ log instead of Python warnings."""
    D = q.shape[-1]
    if kernel == "FLASH_ATTENTION":
        if q.dtype not in (torch.float16, torch.bfloat16):
            return f"the CUDA flash kernel takes fp16 or bf16, not {q.dtype}"
        if attn_mask is not None:
            return "the CUDA flash kernel takes no attn_mask (mask or Tq != Tk causal band)"
        if D > 256 or D % 8:
            return f"the CUDA flash kernel needs head dim <= 256 and a multiple of 8, got {D}"
        if torch.cuda.get_device_capability(q.device)[0] < 8:
            return "the CUDA flash kernel needs sm80 or newer"
    if kernel == "CUDNN_ATTENTION" and q.dtype not in (torch.float16, torch.bfloat16):
        return f"the cuDNN kernel takes fp16 or bf16, not {q.dtype}"
    return (
        f"PyTorch's {kernel} checks declined it (details in the C++ log: TORCH_CPP_LOG_LEVEL=INFO)"
    )
