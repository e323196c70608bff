"""Helpers for the attention tests: random problems and float64 comparisons."""

from __future__ import annotations

import pytest
import torch

TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float64: 1e-10}


def make_qkv(B=2, Hq=4, Hkv=None, Tq=16, Tk=None, D=32, dtype=torch.float32, grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    Hkv = Hkv or Hq
    Tk = Tk or Tq
    q = torch.randn(B, Hq, Tq, D, generator=g).to(dtype)
    k = torch.randn(B, Hkv, Tk, D, generator=g).to(dtype)
    v = torch.randn(B, Hkv, Tk, D, generator=g).to(dtype)
    if grad:
        for t in (q, k, v):
            t.requires_grad_(True)
    return q, k, v


def max_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (out.detach().double() - ref.detach().double()).abs().max().item()


@pytest.fixture(autouse=True)
def _fresh_seed():
    torch.manual_seed(0)
