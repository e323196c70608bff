"""`attention(q, k, v, ...)`: the one entry point models call; semantics in problem.py."""

from __future__ import annotations

import torch

from astrobio_cli.attention.problem import check_inputs
from astrobio_cli.attention.routing import Explanation, explain_problem, select_backend


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    backend: str = "auto",
) -> torch.Tensor:
    """Scaled dot-product attention through the selected backend.

    q (B, Hq, Tq, D), k and v (B, Hkv, Tk, D), Hq % Hkv == 0. Returns (B, Hq, Tq, D) in q's
    dtype; scores are accumulated in float32 (float64 for float64 inputs).

    mask: None, bool (True = may attend) or additive float, broadcasting to (B, Hq, Tq, Tk);
        (Tq, Tk), key padding (B, Tk) and (B, 1, Tq, Tk) are accepted.
    causal: query i sees key j when j <= i + (Tk - Tq) (bottom-right), ANDed with mask.
    scale: default D ** -0.5.
    dropout_p: dropout on the attention weights (pass 0.0 at evaluation).
    backend: "auto" (per-device priority, or the `attention.backend` setting) or a name.

    A query row with no key to attend to returns zeros. Invalid inputs raise ValueError.
    """
    problem = check_inputs(q, k, v, mask, causal, scale, dropout_p)
    impl = select_backend(q, k, v, problem, backend)
    return impl(
        q, k, v, mask=problem.mask, causal=problem.causal, scale=problem.scale, dropout_p=dropout_p
    )


def explain(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    training: bool | None = None,
    backend: str = "auto",
) -> Explanation:
    """Which backend `attention(...)` with these arguments would run, and why no other.

    Only shapes, dtypes and devices matter: expanded views (`torch.empty(1, 1, 1, D).expand(...)`)
    describe a big problem without allocating it. `training` overrides the requires_grad guess.
    """
    problem = check_inputs(q, k, v, mask, causal, scale, dropout_p)
    if training is not None:
        from dataclasses import replace

        problem = replace(problem, training=bool(training))
    return explain_problem(q, k, v, problem, backend)
