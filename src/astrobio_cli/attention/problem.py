"""Validation and normalisation of one attention call: the semantics fixed once for every backend.

Shapes: q (B, Hq, Tq, D); k and v (B, Hkv, Tk, D) with Hq % Hkv == 0 (query head h reads key/value
head h // (Hq // Hkv): grouped-query and multi-query attention without copying K/V).

Masks: None, boolean (True = may attend) or additive float (any float dtype, -inf allowed). After
normalisation a mask is 4-D and broadcasts to (B, Hq, Tq, Tk): every dimension is 1 or the full
size. Accepted inputs are those that broadcast by the usual rules, e.g. (Tq, Tk), (Tk,),
(B, 1, Tq, Tk), (B, Hq, Tq, Tk), plus the 2-D key-padding form (B, Tk). A 2-D mask that matches
both (Tq, Tk) and (B, Tk) (B == Tq) is read as (Tq, Tk), by broadcasting; pass key padding as
(B, 1, 1, Tk) to be unambiguous. Boolean masks stay boolean; additive masks become float32
(float64 for float64 inputs), the dtype scores are accumulated in.

Causal: query i may attend key j when j <= i + (Tk - Tq) (aligned bottom-right, so a query block
at the end of a KV cache sees the whole prefix). It is ANDed with the mask. A query row with no
key left to attend to returns zeros and passes zero gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DTYPE_NAMES = {
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float32: "fp32",
    torch.float64: "fp64",
}


@dataclass(frozen=True)
class Problem:
    """The validated call: sizes, the normalised mask and what kind of mask it is."""

    batch: int
    q_heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device
    mask: torch.Tensor | None  # 4-D, broadcasts to (B, Hq, Tq, Tk); bool or float32/float64
    mask_kind: str  # "none" | "key-padding" | "general"
    causal: bool
    scale: float
    dropout_p: float
    training: bool

    @property
    def groups(self) -> int:
        return self.q_heads // self.kv_heads

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == torch.float64 else torch.float32

    def describe(self) -> str:
        return (
            f"B={self.batch} Hq={self.q_heads} Hkv={self.kv_heads} Tq={self.q_len} "
            f"Tk={self.kv_len} D={self.head_dim} {DTYPE_NAMES[self.dtype]} "
            f"{'causal' if self.causal else 'non-causal'} mask={self.mask_kind} "
            f"on {self.device.type}"
        )


def _shape(t: Any) -> str:
    return "(" + ", ".join(str(s) for s in t) + ")"


def check_inputs(
    q: Any,
    k: Any,
    v: Any,
    mask: Any = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> Problem:
    """Validate one call; raise ValueError naming the argument and the expected shape."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(
                f"{name} must be a torch.Tensor of shape (B, H, T, D), got {type(t).__name__}"
            )
        if t.dim() != 4:
            raise ValueError(
                f"{name} must be 4-D (B, H, T, D), got shape {_shape(t.shape)}; "
                "reshape (B, T, H, D) inputs with .transpose(1, 2)"
            )
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
        if any(s == 0 for s in t.shape):
            raise ValueError(f"{name} has an empty dimension: shape {_shape(t.shape)}")
    B, Hq, Tq, D = q.shape
    Bk, Hkv, Tk, Dk = k.shape
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(
            f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}"
        )
    if Bk != B or Dk != D:
        raise ValueError(
            f"k must have shape (B, Hkv, Tk, D) = ({B}, Hkv, Tk, {D}) to match q {_shape(q.shape)}, "
            f"got {_shape(k.shape)}"
        )
    if tuple(v.shape) != tuple(k.shape):
        raise ValueError(f"v must have the shape of k {_shape(k.shape)}, got {_shape(v.shape)}")
    if Hq % Hkv != 0:
        raise ValueError(
            f"k has {Hkv} heads, which does not divide q's {Hq} heads; grouped-query attention "
            "needs Hq % Hkv == 0 (k/v shape (B, Hkv, Tk, D))"
        )
    if scale is None:
        scale = D**-0.5
    else:
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise ValueError(f"scale must be a number, got {scale!r}") from None
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale}")
    dropout_p = float(dropout_p)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    norm, kind = normalize_mask(mask, B, Hq, Tq, Tk, q.device, compute)
    training = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    return Problem(
        batch=B,
        q_heads=Hq,
        kv_heads=Hkv,
        q_len=Tq,
        kv_len=Tk,
        head_dim=D,
        dtype=q.dtype,
        device=q.device,
        mask=norm,
        mask_kind=kind,
        causal=bool(causal),
        scale=scale,
        dropout_p=dropout_p,
        training=training,
    )


def normalize_mask(
    mask: Any,
    B: int,
    Hq: int,
    Tq: int,
    Tk: int,
    device: torch.device,
    compute_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor | None, str]:
    """The mask as a 4-D tensor broadcasting to (B, Hq, Tq, Tk), and its kind."""
    if mask is None:
        return None, "none"
    full = (B, Hq, Tq, Tk)
    expected = (
        f"a shape that broadcasts to (B, Hq, Tq, Tk) = {_shape(full)}, e.g. (Tq, Tk) = ({Tq}, {Tk}), "
        f"key padding (B, Tk) = ({B}, {Tk}) or (B, 1, Tq, Tk) = ({B}, 1, {Tq}, {Tk})"
    )
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a torch.Tensor with {expected}, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.dtype.is_floating_point:
        raise ValueError(
            f"mask must be boolean (True = may attend) or an additive float mask, got {mask.dtype}"
        )
    if mask.device != device:
        raise ValueError(f"mask must be on q's device {device}, got {mask.device}")
    shape = tuple(mask.shape)
    if mask.dim() == 2 and not _broadcasts(shape, (Tq, Tk)) and shape == (B, Tk):
        m = mask.view(B, 1, 1, Tk)  # key padding
    elif 1 <= mask.dim() <= 4 and _broadcasts(shape, full[-mask.dim() :]):
        m = mask.view((1,) * (4 - mask.dim()) + shape)
    else:
        raise ValueError(f"mask has shape {_shape(shape)}; expected {expected}")
    if m.dtype != torch.bool:
        m = m.to(compute_dtype)
    kind = "key-padding" if m.shape[1] == 1 and m.shape[2] == 1 else "general"
    return m, kind


def _broadcasts(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    return len(shape) == len(target) and all(
        s in (1, t) for s, t in zip(shape, target, strict=True)
    )


def causal_band(Tq: int, Tk: int, device: torch.device) -> torch.Tensor:
    """(Tq, Tk) boolean: query i may see key j when j <= i + (Tk - Tq) (bottom-right aligned)."""
    i = torch.arange(Tq, device=device).unsqueeze(1)
    j = torch.arange(Tk, device=device).unsqueeze(0)
    return j <= i + (Tk - Tq)


def allowed_and_bias(
    problem: Problem,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The effective boolean mask (mask AND causal band) and the additive bias, both 4-D.

    Either may be None (everything allowed / no bias). Used by backends that take one explicit
    mask (sdpa) and to find fully masked rows.
    """
    allowed = None
    bias = None
    if problem.mask is not None:
        if problem.mask.dtype == torch.bool:
            allowed = problem.mask
        else:
            bias = problem.mask
    if problem.causal:
        band = causal_band(problem.q_len, problem.kv_len, problem.device)[None, None]
        allowed = band if allowed is None else allowed & band
    return allowed, bias


def empty_rows(problem: Problem) -> torch.Tensor | None:
    """Boolean (b, h, Tq, 1) broadcasting to (B, Hq, Tq, 1): rows with no key to attend to.

    None when no row can be empty (no mask, and causal with Tq <= Tk).
    """
    if problem.mask is None and not (problem.causal and problem.q_len > problem.kv_len):
        return None
    allowed, bias = allowed_and_bias(problem)
    if bias is not None:
        finite = ~torch.isneginf(bias)
        allowed = finite if allowed is None else allowed & finite
    if allowed is None:
        return None
    return ~allowed.any(dim=-1, keepdim=True)
