"""`attention(q, k, v, ...)`: the one entry point models call; semantics in problem.py.

Context parallelism (`context_parallel`, `shard_sequence`, `unshard_sequence`,
`gather_sequence`): the process group and shard layout a sequence-sharded backend (`ring`) uses.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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


# Context parallelism: a backend that shards the sequence over processes (`ring`) reads the
# process group and the shard layout from here, so models pass them without importing a plugin.

LAYOUTS = ("zigzag", "contiguous")


@dataclass(frozen=True)
class ContextParallel:
    """The process group a sequence-sharded backend runs over, and how the sequence is cut."""

    group: Any  # a torch.distributed ProcessGroup; None = the default group
    layout: str  # "zigzag" (rank i: chunks i and 2N-1-i of 2N) | "contiguous" (piece i of N)


_CONTEXT_PARALLEL: contextvars.ContextVar[ContextParallel | None] = contextvars.ContextVar(
    "astrobio_context_parallel", default=None
)


@contextlib.contextmanager
def context_parallel(group: Any = None, layout: str = "zigzag") -> Iterator[ContextParallel]:
    """Within this block, `attention(..., backend="ring")` treats q, k, v as this rank's shards
    (cut by `shard_sequence(..., layout=layout)`) of one sequence spread over `group`."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    token = _CONTEXT_PARALLEL.set(ContextParallel(group, layout))
    try:
        yield _CONTEXT_PARALLEL.get()
    finally:
        _CONTEXT_PARALLEL.reset(token)


def current_context_parallel() -> ContextParallel | None:
    return _CONTEXT_PARALLEL.get()


def _pieces(n: int, world: int, layout: str, what: str) -> int:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    parts = 2 * world if layout == "zigzag" else world
    if world < 1 or n % parts:
        raise ValueError(
            f"{what}: a sequence of length {n} cannot be cut into {parts} equal chunks "
            f"({layout} layout over {world} ranks); pad it to a multiple of {parts} "
            "and mask the padding"
        )
    return parts


def shard_sequence(
    x: torch.Tensor, rank: int, world: int, *, dim: int = 2, layout: str = "zigzag"
) -> torch.Tensor:
    """This rank's shard of a full sequence along `dim` (2 for (B, H, T, D); 1 for (B, T))."""
    parts = _pieces(x.shape[dim], world, layout, "shard_sequence")
    chunks = x.chunk(parts, dim)
    if layout == "zigzag":
        return torch.cat([chunks[rank], chunks[2 * world - 1 - rank]], dim)
    return chunks[rank]


def unshard_sequence(
    shards: list[torch.Tensor], *, dim: int = 2, layout: str = "zigzag"
) -> torch.Tensor:
    """The full sequence from every rank's shard, in rank order (inverse of shard_sequence)."""
    world = len(shards)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "contiguous":
        return torch.cat(list(shards), dim)
    chunks: list[Any] = [None] * (2 * world)
    for i, s in enumerate(shards):
        first, second = s.chunk(2, dim)
        chunks[i], chunks[2 * world - 1 - i] = first, second
    return torch.cat(chunks, dim)


def gather_sequence(
    x: torch.Tensor, group: Any = None, *, dim: int = 2, layout: str = "zigzag"
) -> torch.Tensor:
    """All ranks' shards gathered into the full sequence on every rank; differentiable (the
    gradient of the full sequence is summed over ranks and each rank keeps its shard's part)."""
    shards = _GatherShards.apply(x, group).unbind(0)
    return unshard_sequence(list(shards), dim=dim, layout=layout)


class _GatherShards(torch.autograd.Function):
    """(world, *x.shape): every rank's x. Backward: the gradient summed over ranks, this rank's."""

    @staticmethod
    def forward(ctx, x, group):
        import torch.distributed as dist

        ctx.group, ctx.rank = group, dist.get_rank(group)
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.rank], None
