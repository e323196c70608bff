"""A selective state-space mixer (Mamba-style), a sibling of attention for sequence models.

    from astrobio_cli.attention.ssm import SelectiveSSM, selective_scan
    mixer = SelectiveSSM(dim=64)            # (B, L, dim) -> (B, L, dim), causal in L
    y = selective_scan(x, dt, A, B, C, D)   # the scan alone

The scan (per batch element b, channel d, state n; Gu & Dao 2023, "Mamba", S6):

    h_t = exp(dt_t A) * h_{t-1} + dt_t B_t x_t        h_0 = 0
    y_t = C_t . h_t + D x_t

with x, dt (B, L, Dm); A (Dm, N) (negative: the layer keeps A = -exp(A_log)); B, C (B, L, N),
shared by the channels and chosen per token (the "selective" part); D (Dm,). Three
implementations, one semantics:

- `selective_scan_reference`: PyTorch, sequential in L, vectorised over batch, channels and
  state; differentiable (gradchecked in float64). The readable reference.
- `selective_scan_parallel`: PyTorch, a log-depth (Hillis-Steele) scan: log2(L) vectorised
  steps instead of L (fewer kernel launches on a GPU; on a CPU it moves more memory and was
  1.5-3x slower than the sequential loop at L=32); differentiable (gradchecked too).
- `ssm_triton.selective_scan_triton`: a Triton parallel-scan kernel (`tl.associative_scan` over
  time chunks) for the forward; the backward recomputes `selective_scan_parallel` under
  autograd. Runs on CUDA tensors, or on the CPU only under TRITON_INTERPRET=1 (correctness
  only). Imported lazily.

All three take any float dtype, compute in float32 (float64 for float64 inputs) and return x's
dtype. `selective_scan(..., backend="auto")` picks triton for CUDA tensors when triton imports
(else parallel), and the reference on a CPU; `backend="reference"`, `"parallel"` or `"triton"` pins one (triton on a
CPU tensor without TRITON_INTERPRET=1 is a ValueError saying so). Every one is tested against a
float64 NumPy twin of the recurrence (tests/attention/test_ssm.py).

`SelectiveSSM(dim, d_state=16, d_conv=4, expand=2, dt_rank=ceil(dim/16), scan="auto")`:
input projection to (x, z), each expand*dim wide; a causal depthwise convolution of width d_conv
over x, SiLU; per-token dt (a low-rank projection, softplus, its bias initialised so dt starts
log-uniform in [1e-3, 0.1]), B and C (projections of x); diagonal A = -exp(A_log) with
A_log = log(1..N) per channel; the D skip; the output gated by SiLU(z); an output projection.
Causal: output t depends on inputs 0..t only.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

SCAN_BACKENDS = ("auto", "reference", "parallel", "triton")


def _check(x, dt, A, B, C, D) -> None:
    if x.dim() != 3:
        raise ValueError(f"selective_scan: x must be (B, L, Dm), got shape {tuple(x.shape)}")
    Bt, L, Dm = x.shape
    if A.dim() != 2 or A.shape[0] != Dm:
        raise ValueError(f"selective_scan: A must be (Dm, N) = ({Dm}, N), got {tuple(A.shape)}")
    N = A.shape[1]
    expected = {"dt": (Bt, L, Dm), "B": (Bt, L, N), "C": (Bt, L, N), "D": (Dm,)}
    for name, t in (("dt", dt), ("B", B), ("C", C), ("D", D)):
        if tuple(t.shape) != expected[name]:
            raise ValueError(
                f"selective_scan: {name} must have shape {expected[name]}, got {tuple(t.shape)}"
            )
    devices = {t.device for t in (x, dt, A, B, C, D)}
    if len(devices) > 1:
        raise ValueError(f"selective_scan: inputs on several devices: {sorted(map(str, devices))}")


def selective_scan_reference(x, dt, A, B, C, D) -> torch.Tensor:
    """The scan in PyTorch, step by step; y (B, L, Dm) in x's dtype. Differentiable."""
    _check(x, dt, A, B, C, D)
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    x_, dt_, A_, B_, C_, D_ = (t.to(work) for t in (x, dt, A, B, C, D))
    Bt, _, Dm = x_.shape
    decay = torch.exp(dt_.unsqueeze(-1) * A_)  # (B, L, Dm, N)
    drive = (dt_ * x_).unsqueeze(-1) * B_.unsqueeze(2)  # (B, L, Dm, N)
    h = x_.new_zeros(Bt, Dm, A_.shape[1])
    ys = []
    # unbind, not decay[:, t]: its backward stacks the L gradients once, where L slices would
    # each write a full-size zero gradient (O(L^2) memory traffic)
    for a_t, b_t, c_t in zip(decay.unbind(1), drive.unbind(1), C_.unbind(1), strict=True):
        h = a_t * h + b_t
        ys.append((h * c_t[:, None, :]).sum(-1))  # (B, Dm)
    y = torch.stack(ys, 1) if ys else x_.new_zeros(Bt, 0, Dm)
    return (y + x_ * D_).to(x.dtype)


def selective_scan_parallel(x, dt, A, B, C, D) -> torch.Tensor:
    """The same scan with log2(L) vectorised steps (Hillis-Steele), for speed in PyTorch.

    Pairs (a_t, b_t) = (exp(dt_t A), dt_t B_t x_t) compose as (a1, b1) then (a2, b2) ->
    (a1 a2, a2 b1 + b2); after steps with offsets 1, 2, 4, ... < L, b_t is h_t. Only products of
    decays (<= 1) are formed, so it is as stable as the sequential loop; O(L log L) work,
    O(B L Dm N) memory per step. Differentiable; float32 math (float64 for float64 inputs).
    """
    _check(x, dt, A, B, C, D)
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    x_, dt_, A_, B_, C_, D_ = (t.to(work) for t in (x, dt, A, B, C, D))
    a = torch.exp(dt_.unsqueeze(-1) * A_)  # (B, L, Dm, N)
    b = (dt_ * x_).unsqueeze(-1) * B_.unsqueeze(2)
    L, off = x_.shape[1], 1
    while off < L:
        b = torch.cat([b[:, :off], b[:, off:] + a[:, off:] * b[:, :-off]], 1)
        a = torch.cat([a[:, :off], a[:, off:] * a[:, :-off]], 1)
        off *= 2
    y = (b * C_.unsqueeze(2)).sum(-1)
    return (y + x_ * D_).to(x.dtype)


def triton_usable(device: torch.device) -> tuple[bool, str]:
    """Whether the Triton scan can run on `device` in this process, and why not."""
    from astrobio_cli.hardware import need_module

    if not need_module("triton")[0]:
        return False, "triton is not installed"
    interpret = os.environ.get("TRITON_INTERPRET", "0") == "1"
    if device.type == "cuda":
        if interpret:
            return False, "TRITON_INTERPRET=1 is set: the interpreter cannot run CUDA tensors"
        return True, ""
    if interpret:
        return True, "interpreter: correctness only"
    return False, (
        f"the Triton scan runs on CUDA; {device.type} tensors only under TRITON_INTERPRET=1 "
        "(set before triton is imported)"
    )


def resolve_scan_backend(backend: str, device: torch.device) -> str:
    if backend not in SCAN_BACKENDS:
        raise ValueError(
            f"selective_scan: backend must be one of {', '.join(SCAN_BACKENDS)}, got {backend!r}"
        )
    if backend == "auto":
        if device.type == "cuda":
            return "triton" if triton_usable(device)[0] else "parallel"
        return "reference"
    if backend == "triton":
        ok, why = triton_usable(device)
        if not ok:
            raise ValueError(f"selective_scan: backend 'triton' cannot run here: {why}")
    return backend


def selective_scan(x, dt, A, B, C, D, *, backend: str = "auto") -> torch.Tensor:
    """h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t, y_t = C_t . h_t + D x_t; y (B, L, Dm)."""
    _check(x, dt, A, B, C, D)
    backend = resolve_scan_backend(backend, x.device)
    if backend == "triton":
        from astrobio_cli.attention.ssm_triton import selective_scan_triton

        return selective_scan_triton(x, dt, A, B, C, D)
    if backend == "reference":
        return selective_scan_reference(x, dt, A, B, C, D)
    return selective_scan_parallel(x, dt, A, B, C, D)


class SelectiveSSM(nn.Module):
    """A Mamba-style selective SSM mixer: (B, L, dim) -> (B, L, dim), causal in L."""

    def __init__(
        self,
        dim: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        scan: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("d_state", d_state), ("d_conv", d_conv),
                            ("expand", expand)):  # fmt: skip
            if int(value) < 1:
                raise ValueError(f"SelectiveSSM: {name} must be at least 1, got {value}")
        if scan not in SCAN_BACKENDS:
            raise ValueError(f"SelectiveSSM: scan must be one of {', '.join(SCAN_BACKENDS)}")
        inner = expand * dim
        self.dim, self.inner, self.d_state, self.d_conv = dim, inner, d_state, d_conv
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        self.scan = scan
        self.in_proj = nn.Linear(dim, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        with torch.no_grad():  # dt = softplus(bias) log-uniform in [dt_min, dt_max] at init
            u = torch.rand(inner)
            dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(inner, 1)
        self.A_log = nn.Parameter(torch.log(a))  # A = -exp(A_log): -1, -2, ..., -N
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, dim)

    def scan_inputs(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """The scan's inputs x, dt, A, B, C, D and the gate z for u (B, L, dim)."""
        L = u.shape[1]
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x = self.conv(x.transpose(1, 2))[..., :L].transpose(1, 2)  # causal: left padding only
        x = F.silu(x)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log.float())
        return {"x": x, "dt": dt, "A": A, "B": B, "C": C, "D": self.D, "z": z}

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.dim() != 3 or u.shape[-1] != self.dim:
            raise ValueError(
                f"SelectiveSSM: input must be (B, L, {self.dim}), got shape {tuple(u.shape)}"
            )
        s = self.scan_inputs(u)
        y = selective_scan(s["x"], s["dt"], s["A"], s["B"], s["C"], s["D"], backend=self.scan)
        return self.out_proj(y * F.silu(s["z"]))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, inner={self.inner}, d_state={self.d_state}, d_conv={self.d_conv}, "
            f"dt_rank={self.dt_rank}, scan={self.scan!r}"
        )


def run_ssm_bench(
    seqs: list[int],
    *,
    batch: int = 1,
    heads: int = 8,
    head_dim: int = 64,
    d_state: int = 16,
    mode: str = "fwd",
    repeats: int = 5,
    device: str | None = None,
    seed: int = 0,
    scans: list[str] | None = None,
) -> dict[str, Any]:
    """`astrobio bench attention --mixer ssm`: the SelectiveSSM layer's time per call, tokens/s
    and its output error against the same layer in float64 with the reference scan, per scan
    backend and sequence length. The width is heads * head_dim (the attention model's); an
    attention mixer of that width (qkv, `attention(...)` with backend auto, projection) is
    timed beside it for scale.
    Returns {"env", "config", "results"} like `run_bench`."""
    import copy
    import statistics

    from astrobio_cli.attention.bench import _time, environment
    from astrobio_cli.errors import UsageError
    from astrobio_cli.hardware import has_cuda
    from astrobio_cli.settings import get_settings

    if not seqs or any(int(s) < 1 for s in seqs):
        raise UsageError("--seq takes positive integers, e.g. --seq 256 or --seq 64,256")
    if mode not in ("fwd", "fwd+bwd"):
        raise UsageError(f"--mode must be fwd or fwd+bwd, got '{mode}'")
    for name, value in (("batch", batch), ("repeats", repeats), ("heads", heads),
                        ("head-dim", head_dim)):  # fmt: skip
        if int(value) < 1:
            raise UsageError(f"--{name} must be at least 1")
    device = device or ("cuda" if has_cuda() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device (a CPU-only torch build?)")
    threads = get_settings().threads
    if threads and device == "cpu":
        torch.set_num_threads(threads)
    scans = scans or ["reference", "parallel", "triton", "attention"]
    dim = heads * head_dim
    bad = [s for s in scans if s not in ("reference", "parallel", "triton", "attention")]
    if bad:
        raise UsageError(
            "--backends with --mixer ssm takes reference, parallel, triton and attention; "
            f"got '{bad[0]}'"
        )
    train = mode == "fwd+bwd"
    torch.manual_seed(seed)
    layer = SelectiveSSM(dim, d_state=d_state).to(device)
    ref_layer = copy.deepcopy(layer).double().cpu()
    ref_layer.scan = "reference"
    from astrobio_cli.attention.core import attention

    qkv, proj = nn.Linear(dim, 3 * dim).to(device), nn.Linear(dim, dim).to(device)

    def attn_mixer(u):
        b, t, c = u.shape
        q, k, v = qkv(u).view(b, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        return proj(attention(q, k, v).transpose(1, 2).reshape(b, t, c))

    results = []
    for seq in seqs:
        g = torch.Generator().manual_seed(seed + int(seq))
        u = torch.randn(batch, int(seq), dim, generator=g)
        with torch.no_grad():
            ref = ref_layer(u.double())
        u = u.to(device).requires_grad_(train)
        for name in ["attention" if s == "attention" else f"ssm-{s}" for s in scans]:
            row = dict(backend=name, seq=int(seq), status="ran", reason="", max_abs_err=None,
                       ms_median=None, ms_min=None, tokens_per_s=None)  # fmt: skip
            if name == "ssm-triton":
                ok, why = triton_usable(torch.device(device))
                if not ok or device == "cpu":
                    row.update(status="skipped", reason=why or "CPU: interpreter only; no timings")
                    results.append(row)
                    continue
            if name == "attention":
                fn, row["reason"] = attn_mixer, f"attention mixer, {heads} head(s), backend auto"
            else:
                layer.scan = name.removeprefix("ssm-")
                fn = layer

            def call(fn=fn, u=u):
                out = fn(u)
                if train:
                    out.sum().backward()
                    u.grad = None
                return out

            try:
                with torch.no_grad() if not train else torch.enable_grad():
                    out = call()
                    if name != "attention":
                        err = (out.detach().cpu().double() - ref).abs().max().item()
                        row["max_abs_err"] = err
                    times = _time(call, repeats, device)
            except Exception as exc:  # one failed row, never a crash of the whole table
                row.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:300])
                results.append(row)
                continue
            med = statistics.median(times)
            row.update(ms_median=med, ms_min=min(times), tokens_per_s=batch * seq / (med / 1e3))
            results.append(row)
    config = dict(mixer="ssm", seqs=[int(s) for s in seqs], batch=batch, heads=heads,
                  head_dim=head_dim, dim=dim,
                  d_state=d_state, inner=layer.inner, mode=mode, repeats=repeats, device=device,
                  backends=scans, reference="the same layer in float64, reference scan, CPU")  # fmt: skip
    return {"env": environment(device), "config": config, "results": results}


__all__ = [
    "SCAN_BACKENDS",
    "SelectiveSSM",
    "resolve_scan_backend",
    "run_ssm_bench",
    "selective_scan",
    "selective_scan_parallel",
    "selective_scan_reference",
    "triton_usable",
]
