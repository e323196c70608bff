"""`ring`: exact attention over a sequence sharded across processes (context parallelism).

Every rank of a torch.distributed process group holds one shard of the sequence: its queries and
its keys/values (`astrobio_cli.attention.core.shard_sequence` cuts a full sequence). The K/V
shards travel around the ring of ranks (point-to-point isend/irecv, one packed message per step,
sent while the current block is computed); each rank merges the partial results for its queries
with an online softmax (running max and sum), so no rank ever holds the whole sequence or the
(T, T) score matrix, only (T/N, T/N) blocks.

Backward (a torch.autograd.Function): the standard ring backward. K/V go around the ring once
more; dK/dV accumulators travel with them, each rank adding its queries' contribution to the
block it holds, and a last hop brings every block's dK/dV home. Probabilities are recomputed from
the saved log-sum-exp, so nothing of size (T/N, T) is kept between forward and backward.

Layouts (`context_parallel(layout=...)`):
- "zigzag" (default): the sequence is cut into 2N chunks and rank i holds chunks i and 2N-1-i,
  so under a causal mask every rank does the same work (one early and one late chunk); chunk
  pairs that the causal mask hides entirely are skipped.
- "contiguous": rank i holds the i-th of N equal pieces (simple, unbalanced when causal).

Causal means the interface's rule on the global sequence (Tq == Tk, so j <= i). Masks: key
padding only ((B, Tk) per rank, boolean or additive; it travels with K/V). Dropout: no.
Every rank must make the same call: equal shard lengths, and a mask on every rank or on none.
The group: the one set with `astrobio_cli.attention.context_parallel(group)`, else the default
group. On a single process (no group, or a group of one) the backend declines with the reason.
"""

from __future__ import annotations

import torch

from astrobio_attention.eager import grouped

LAYOUTS = ("zigzag", "contiguous")
_TAG_KV, _TAG_DKV = 17, 18


def _setup():
    """(group, layout) for this call: context_parallel(...) or the default group."""
    from astrobio_cli.attention.core import current_context_parallel

    cp = current_context_parallel()
    return (cp.group if cp else None), (cp.layout if cp else "zigzag")


def _group_status(group) -> tuple[bool, str]:
    import torch.distributed as dist

    if not dist.is_available():
        return False, "this torch build has no torch.distributed"
    if not dist.is_initialized():
        return False, (
            "no torch.distributed process group is initialised: ring attention shards the "
            "sequence over processes (start N of them, e.g. `astrobio bench attention "
            "--backends ring --procs 2`, or torchrun; then call inside context_parallel())"
        )
    world = dist.get_world_size(group)
    if world < 2:
        return False, (
            "the process group has one process: ring attention needs 2 or more "
            "(on one process, use an ordinary backend on the whole sequence)"
        )
    return True, ""


class _Ring:
    """Neighbour exchange on a ring of the group's ranks."""

    def __init__(self, group) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        to_global = (lambda r: r) if group is None else (lambda r: dist.get_global_rank(group, r))
        self.next = to_global((self.rank + 1) % self.world)
        self.prev = to_global((self.rank - 1) % self.world)

    def shift(self, tensors: list[torch.Tensor], tag: int):
        """Send `tensors` to the next rank and receive the previous rank's; returns a waiter."""
        if self.world == 1:  # a ring of one (the benchmark's baseline): nothing to exchange
            return lambda: list(tensors)
        flat = torch.cat([t.reshape(-1) for t in tensors])
        recv = torch.empty_like(flat)
        d = self.dist
        ops = [
            d.P2POp(d.isend, flat, self.next, self.group, tag),
            d.P2POp(d.irecv, recv, self.prev, self.group, tag),
        ]
        reqs = d.batch_isend_irecv(ops)
        shapes = [t.shape for t in tensors]

        def wait() -> list[torch.Tensor]:
            for r in reqs:
                r.wait()
            out, at = [], 0
            for s in shapes:
                n = s.numel()
                out.append(recv[at : at + n].view(s))
                at += n
            return out

        return wait


def _chunks(rank: int, world: int, T: int, layout: str, causal: bool):
    """The local sequence as (global chunk id, slice) pieces; one piece when not causal."""
    if not causal:
        return [(0, slice(0, T))]
    if layout == "zigzag":
        c = T // 2
        return [(rank, slice(0, c)), (2 * world - 1 - rank, slice(c, T))]
    return [(rank, slice(0, T))]


def _pairs(rank: int, src: int, world: int, T: int, layout: str, causal: bool):
    """(query slice, key slice, diagonal) for the chunk pairs that see anything."""
    out = []
    for qid, qs in _chunks(rank, world, T, layout, causal):
        for kid, ks in _chunks(src, world, T, layout, causal):
            if causal and kid > qid:
                continue  # every key after every query: hidden entirely
            out.append((qs, ks, causal and kid == qid))
    return out


def _scores(q, k, bias, scale, diag):
    s = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, Hkv, G, tq, tk)
    if bias is not None:
        s = s + bias
    if diag:  # same chunk of the global sequence: j <= i
        n = s.shape[-1]
        band = torch.ones(n, n, dtype=torch.bool, device=s.device).tril()
        s = s.masked_fill(~band, float("-inf"))
    return s


def _forward(ring, q, k, v, bias, scale, causal, layout):
    """q (B, Hkv, G, T, D), k/v (B, Hkv, 1, T, D), bias (B, 1, 1, 1, T) or None, compute dtype.
    Returns out (B, Hkv, G, T, D) and lse (B, Hkv, G, T, 1); lse is +inf for empty rows."""
    T = q.shape[-2]
    m = torch.full((*q.shape[:-1], 1), float("-inf"), dtype=q.dtype, device=q.device)
    l = torch.zeros_like(m)  # noqa: E741 (the softmax denominator, as in the papers)
    acc = torch.zeros_like(q)
    block = [k, v] if bias is None else [k, v, bias]
    for step in range(ring.world):
        src = (ring.rank - step) % ring.world
        wait = ring.shift(block, _TAG_KV) if step < ring.world - 1 else None
        kb, vb = block[0], block[1]
        bb = block[2] if bias is not None else None
        for qs, ks, diag in _pairs(ring.rank, src, ring.world, T, layout, causal):
            s = _scores(q[..., qs, :], kb[..., ks, :], None if bb is None else bb[..., ks],
                        scale, diag)  # fmt: skip
            mb = s.amax(-1, keepdim=True)
            m_new = torch.maximum(m[..., qs, :], mb)
            m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
            p = torch.exp(s - m_safe)
            alpha = torch.exp(m[..., qs, :] - m_safe)
            l[..., qs, :] = l[..., qs, :] * alpha + p.sum(-1, keepdim=True)
            acc[..., qs, :] = acc[..., qs, :] * alpha + torch.matmul(p, vb[..., ks, :])
            m[..., qs, :] = m_new
        if wait is not None:
            block = wait()
    has = l > 0
    out = torch.where(has, acc / torch.where(has, l, torch.ones_like(l)), torch.zeros_like(acc))
    lse = torch.where(has, m + torch.log(torch.where(has, l, torch.ones_like(l))),
                      torch.full_like(l, float("inf")))  # fmt: skip
    return out, lse


def _backward(ring, do, q, k, v, bias, out, lse, scale, causal, layout):
    """dq (like q) and dk, dv (like k) of the local shard; dK/dV travel around the ring."""
    T = q.shape[-2]
    delta = (do * out).sum(-1, keepdim=True)
    dq = torch.zeros_like(q)
    block = [k, v] if bias is None else [k, v, bias]
    dkv = [torch.zeros_like(k), torch.zeros_like(v)]
    for step in range(ring.world):
        src = (ring.rank - step) % ring.world
        wait = ring.shift(block, _TAG_KV) if step < ring.world - 1 else None
        kb, vb = block[0], block[1]
        bb = block[2] if bias is not None else None
        dk, dv = dkv
        for qs, ks, diag in _pairs(ring.rank, src, ring.world, T, layout, causal):
            qb, dob = q[..., qs, :], do[..., qs, :]
            s = _scores(qb, kb[..., ks, :], None if bb is None else bb[..., ks], scale, diag)
            p = torch.exp(s - lse[..., qs, :])  # masked and empty rows: exp(-inf) = 0
            dv[..., ks, :] += torch.matmul(p.transpose(-1, -2), dob).sum(2, keepdim=True)
            dp = torch.matmul(dob, vb[..., ks, :].transpose(-1, -2))
            ds = p * (dp - delta[..., qs, :])
            dq[..., qs, :] += torch.matmul(ds, kb[..., ks, :]) * scale
            dk[..., ks, :] += torch.matmul(ds.transpose(-1, -2), qb).sum(2, keepdim=True) * scale
        dkv = ring.shift(dkv, _TAG_DKV)()  # after the last hop each rank holds its own block's
        if wait is not None:
            block = wait()
    return dq, dkv[0], dkv[1]


class _RingFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, group, layout, causal, scale):
        ring = _Ring(group)
        B, Hq, T, D = q.shape
        Hkv = k.shape[1]
        compute = torch.float64 if q.dtype == torch.float64 else torch.float32
        qg = grouped(q.detach().to(compute), Hkv)  # (B, Hkv, G, T, D): no K/V copies per group
        kc = k.detach().to(compute).unsqueeze(2).contiguous()  # (B, Hkv, 1, T, D)
        vc = v.detach().to(compute).unsqueeze(2).contiguous()
        out, lse = _forward(ring, qg, kc, vc, bias, scale, causal, layout)
        ctx.save_for_backward(qg, kc, vc, out, lse, *(() if bias is None else (bias,)))
        ctx.ring, ctx.scale, ctx.causal, ctx.layout = ring, scale, causal, layout
        ctx.shapes = (q.shape, k.shape, q.dtype)
        return out.reshape(B, Hq, T, D).to(q.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        qg, kc, vc, out, lse, *rest = ctx.saved_tensors
        bias = rest[0] if rest else None
        q_shape, k_shape, dtype = ctx.shapes
        do = grouped(grad_out.to(qg.dtype), kc.shape[1])
        dq, dk, dv = _backward(ctx.ring, do, qg, kc, vc, bias, out, lse, ctx.scale, ctx.causal,
                               ctx.layout)  # fmt: skip
        return (dq.reshape(q_shape).to(dtype), dk.reshape(k_shape).to(dtype),
                dv.reshape(k_shape).to(dtype), None, None, None, None, None)  # fmt: skip


def _key_bias(mask, B: int, T: int, compute: torch.dtype) -> torch.Tensor | None:
    """A (B, 1, 1, T) key-padding mask as a (B, 1, 1, 1, T) additive bias (0 / -inf)."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        bias = torch.zeros(mask.shape, dtype=compute, device=mask.device)
        bias = bias.masked_fill(~mask, float("-inf"))
    else:
        bias = mask.to(compute)
    return bias.expand(B, 1, 1, T).reshape(B, 1, 1, 1, T).contiguous()


def ring_attention(q, k, v, *, mask=None, causal=False, scale=None, group=None, layout="zigzag"):
    """Ring attention of this rank's shard; q (B, Hq, T, D), k/v (B, Hkv, T, D) local shards.

    mask: None or key padding of the local keys, broadcasting to (B, 1, 1, T) (normalised by
    `check_inputs`). Every rank must hold a shard of the same length.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    bias = _key_bias(mask, q.shape[0], k.shape[2], compute)
    return _RingFunction.apply(q, k, v, bias, group, layout, bool(causal), float(scale))


class RingBackend:
    name = "ring"
    supports_dropout = False

    def supports(self, q, k, v, mask, causal, training):
        group, layout = _setup()
        ok, reason = _group_status(group)
        if not ok:
            return False, reason
        import torch.distributed as dist

        if layout not in LAYOUTS:
            return False, f"unknown layout {layout!r}; context_parallel takes {LAYOUTS}"
        kind = dist.get_backend(group)
        if kind == "gloo" and q.device.type != "cpu":
            return False, f"the group's gloo backend carries CPU tensors, got {q.device.type}"
        if kind == "nccl" and q.device.type != "cuda":
            return False, "the group's nccl backend carries CUDA tensors; use gloo on the CPU"
        if mask is not None and (mask.shape[1] != 1 or mask.shape[2] != 1):
            return False, "takes key-padding masks only ((B, Tk) per shard), not (Tq, Tk) masks"
        Tq, Tk = q.shape[2], k.shape[2]
        if causal and Tq != Tk:
            return False, (
                f"causal needs the query and key shards of one sequence (Tq == Tk), "
                f"got Tq={Tq}, Tk={Tk}"
            )
        if causal and layout == "zigzag" and Tq % 2:
            return False, (
                f"the zigzag layout holds two equal chunks per rank: the shard length {Tq} "
                "must be even (shard_sequence pads nothing: pad the sequence to 2N chunks)"
            )
        return True, ""

    def __call__(self, q, k, v, *, mask=None, causal=False, scale=None, dropout_p=0.0):
        group, layout = _setup()
        return ring_attention(q, k, v, mask=mask, causal=causal, scale=scale, group=group,
                              layout=layout)  # fmt: skip
