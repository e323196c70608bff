"""The selective scan as a Triton parallel-scan kernel (forward); backward by recomputation.

Importing this module imports triton: set TRITON_INTERPRET=1 before that to run on a CPU (the
interpreter executes the kernel with NumPy, for correctness only). `astrobio_cli.attention.ssm`
imports it lazily, only where Triton can run (CUDA tensors, or CPU under TRITON_INTERPRET=1).

Kernel: one program per (block of channels, batch element). It walks the sequence in chunks of
BLOCK_L steps, holding a (BLOCK_L, BLOCK_D, BLOCK_N) tile of the recurrence's coefficients
a_t = exp(dt_t A) and b_t = dt_t B_t x_t, and solves h_t = a_t h_{t-1} + b_t inside the chunk with
`tl.associative_scan` over the time axis, combining (a1, b1), (a2, b2) -> (a1 a2, a2 b1 + b2).
The state after the chunk, h = a_cum h_in + b_cum at its last row, carries into the next chunk
(padded rows past L have a = 1, b = 0, so the last row is the last valid state). The output
y_t = C_t . h_t + D x_t is reduced over the state axis in the tile. Everything is float32 inside;
y is written in x's dtype.

Backward: `SelectiveScanTriton.backward` recomputes the scan in PyTorch
(`ssm.selective_scan_parallel`, log2(L) vectorised steps) under autograd and returns its
gradients: correct (it is gradchecked in float64 against finite differences), but it
materialises O(B L Dm N) per step, so it is slower and hungrier than a fused backward kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _combine(a1, b1, a2, b2):
    return a1 * a2, b1 * a2 + b2


@triton.jit
def scan_fwd(
    X, DT, A, Bm, Cm, Dskip, Y,
    sxb, sxl, sxd, stb, stl, std, sad, san, sbb, sbl, sbn, scb, scl, scn, syb, syl, syd,
    L, Dm, N,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_d = tl.program_id(0)
    b = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_l = tl.arange(0, BLOCK_L)
    d_ok = offs_d < Dm
    n_ok = offs_n < N
    a_mat = tl.load(
        A + offs_d[:, None] * sad + offs_n[None, :] * san,
        mask=d_ok[:, None] & n_ok[None, :],
        other=0.0,
    ).to(tl.float32)  # (BLOCK_D, BLOCK_N)
    dsk = tl.load(Dskip + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    h = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    last = (offs_l == BLOCK_L - 1)[:, None, None]
    for start in range(0, L, BLOCK_L):
        ls = start + offs_l
        l_ok = ls < L
        ld = l_ok[:, None] & d_ok[None, :]
        ln = l_ok[:, None] & n_ok[None, :]
        x = tl.load(X + b * sxb + ls[:, None] * sxl + offs_d[None, :] * sxd, mask=ld, other=0.0)
        x = x.to(tl.float32)  # (BLOCK_L, BLOCK_D)
        dt = tl.load(DT + b * stb + ls[:, None] * stl + offs_d[None, :] * std, mask=ld, other=0.0)
        dt = dt.to(tl.float32)
        bm = tl.load(Bm + b * sbb + ls[:, None] * sbl + offs_n[None, :] * sbn, mask=ln, other=0.0)
        cm = tl.load(Cm + b * scb + ls[:, None] * scl + offs_n[None, :] * scn, mask=ln, other=0.0)
        bm = bm.to(tl.float32)  # (BLOCK_L, BLOCK_N)
        cm = cm.to(tl.float32)
        da = tl.exp(dt[:, :, None] * a_mat[None, :, :])  # (BLOCK_L, BLOCK_D, BLOCK_N)
        da = tl.where(l_ok[:, None, None], da, 1.0)
        dbx = (dt * x)[:, :, None] * bm[:, None, :]  # 0 on padded rows (x = 0 there)
        a_cum, b_cum = tl.associative_scan((da, dbx), 0, _combine)
        hs = a_cum * h[None, :, :] + b_cum
        y = tl.sum(hs * cm[:, None, :], 2) + dsk[None, :] * x
        tl.store(
            Y + b * syb + ls[:, None] * syl + offs_d[None, :] * syd,
            y.to(Y.dtype.element_ty),
            mask=ld,
        )
        h = tl.sum(tl.where(last, hs, 0.0), 0)


def _blocks(x: torch.Tensor, n: int) -> tuple[int, int, int, int]:
    """(BLOCK_L, BLOCK_D, BLOCK_N, num_warps): fixed, not autotuned."""
    bn = max(2, triton.next_power_of_2(n))
    bl = 16
    bd = max(2, min(32, 4096 // (bl * bn)))
    warps = 1 if x.device.type != "cuda" else 4
    return bl, bd, bn, warps


def scan_forward(x, dt, A, B, C, D) -> torch.Tensor:
    """y (Bt, L, Dm) in x's dtype; shapes as `ssm.selective_scan` (checked there)."""
    Bt, L, Dm = x.shape
    N = A.shape[1]
    y = torch.empty_like(x)
    bl, bd, bn, warps = _blocks(x, N)
    grid = (triton.cdiv(Dm, bd), Bt)
    scan_fwd[grid](
        x, dt, A, B, C, D, y,
        *x.stride(), *dt.stride(), *A.stride(), *B.stride(), *C.stride(), *y.stride(),
        L, Dm, N,
        BLOCK_L=bl, BLOCK_D=bd, BLOCK_N=bn, num_warps=warps,
    )  # fmt: skip
    return y


class SelectiveScanTriton(torch.autograd.Function):
    """Forward: the Triton kernel. Backward: the PyTorch parallel scan, recomputed."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D):
        ctx.save_for_backward(x, dt, A, B, C, D)
        return scan_forward(x, dt, A, B, C, D)

    @staticmethod
    def backward(ctx, dy):
        from astrobio_cli.attention.ssm import selective_scan_parallel

        inputs = [t.detach().requires_grad_(True) for t in ctx.saved_tensors]
        with torch.enable_grad():
            y = selective_scan_parallel(*inputs)
            grads = torch.autograd.grad(y, inputs, dy.to(y.dtype), allow_unused=True)
        return tuple(
            None if g is None else g.to(t.dtype) for g, t in zip(grads, inputs, strict=True)
        )


def selective_scan_triton(x, dt, A, B, C, D) -> torch.Tensor:
    return SelectiveScanTriton.apply(x, dt, A, B, C, D)


__all__ = ["SelectiveScanTriton", "scan_forward", "scan_fwd", "selective_scan_triton"]
