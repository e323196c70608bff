"""The interface's semantics against the float64 reference, through the eager backend."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from astrobio_cli.attention import KVCache, attention, check_inputs, reference_attention

from .conftest import make_qkv, max_err


def test_eager_matches_reference_with_gqa_padding_and_causal():
    q, k, v = make_qkv(B=2, Hq=4, Hkv=2, Tq=16, Tk=20)
    pad = torch.rand(2, 20) > 0.3
    for causal in (False, True):
        out = attention(q, k, v, mask=pad, causal=causal, backend="eager")
        ref = reference_attention(q, k, v, mask=pad, causal=causal)
        assert out.dtype == q.dtype
        assert max_err(out, ref) < 2e-5


def test_reference_matches_textbook_formula():
    # Independent check of the reference itself: one head, no mask, numpy-free float64 math.
    q, k, v = make_qkv(B=1, Hq=1, Tq=5, D=8, dtype=torch.float64)
    s = q[0, 0] @ k[0, 0].T / 8**0.5
    p = torch.exp(s) / torch.exp(s).sum(-1, keepdim=True)
    assert torch.allclose(reference_attention(q, k, v)[0, 0], p @ v[0, 0], atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (dict(q=torch.zeros(2, 4, 8)), "q must be 4-D"),
        (dict(k=torch.zeros(2, 3, 8, 16), v=torch.zeros(2, 3, 8, 16)), "Hq % Hkv == 0"),
        (dict(v=torch.zeros(2, 2, 9, 16)), "v must have the shape of k"),
        (dict(mask=torch.ones(3, 7, dtype=torch.bool)), "mask has shape (3, 7)"),
        (dict(mask=torch.ones(8, 8, dtype=torch.int64)), "mask must be boolean"),
        (dict(k=torch.zeros(2, 2, 8, 16, dtype=torch.float64)), "share one dtype"),
    ],
)
def test_invalid_inputs_name_the_argument(kwargs, needle):
    args = dict(q=torch.zeros(2, 4, 8, 16), k=torch.zeros(2, 2, 8, 16), v=torch.zeros(2, 2, 8, 16))
    mask = kwargs.pop("mask", None)
    args.update(kwargs)
    with pytest.raises(ValueError) as err:
        attention(args["q"], args["k"], args["v"], mask=mask)
    assert needle in str(err.value)


def test_key_padding_forms_agree():
    q, k, v = make_qkv(B=3, Hq=2, Tq=4, Tk=6)
    pad = torch.rand(3, 6) > 0.4
    a = attention(q, k, v, mask=pad, backend="eager")
    b = attention(q, k, v, mask=pad[:, None, None, :], backend="eager")
    assert torch.equal(a, b)
    assert check_inputs(q, k, v, pad).mask_kind == "key-padding"


def test_kv_cache_decode_equals_full_causal_forward():
    q, k, v = make_qkv(B=2, Hq=4, Hkv=2, Tq=12, D=16)
    full = attention(q, k, v, causal=True, backend="eager")
    cache = KVCache(2, 2, 32, 16)
    ks, vs = cache.append(k[:, :, :4], v[:, :, :4])  # prefill 4 tokens
    steps = [attention(q[:, :, :4], ks, vs, causal=True, backend="eager")]
    for t in range(4, 12):
        ks, vs = cache.append(k[:, :, t : t + 1], v[:, :, t : t + 1])
        steps.append(attention(q[:, :, t : t + 1], ks, vs, causal=True, backend="eager"))
    assert max_err(torch.cat(steps, dim=2), full) < 1e-6


@settings(max_examples=25, deadline=None)
@given(
    dims=st.tuples(*[st.booleans()] * 4),
    ndim=st.integers(1, 4),
    kind=st.sampled_from(["bool", "additive"]),
    causal=st.booleans(),
)
def test_any_broadcastable_mask_means_its_expansion(dims, ndim, kind, causal):
    # Independent reading of a mask: torch's own broadcasting to the full (B, Hq, Tq, Tk).
    B, Hq, Tq, Tk = 2, 4, 5, 7
    full = (B, Hq, Tq, Tk)
    shape = tuple(n if keep else 1 for n, keep in zip(full, dims, strict=True))[4 - ndim :]
    g = torch.Generator().manual_seed(sum(shape) + ndim)
    q, k, v = make_qkv(B, Hq, 2, Tq, Tk, 8)
    if kind == "bool":
        mask = torch.rand(shape, generator=g) > 0.3
    else:
        mask = torch.randn(shape, generator=g).masked_fill(
            torch.rand(shape, generator=g) > 0.7, -torch.inf
        )
    expanded = mask.expand(full).clone()
    out = attention(q, k, v, mask=mask, causal=causal, backend="eager")
    ref = reference_attention(q, k, v, mask=expanded, causal=causal)
    assert max_err(out, ref) < 2e-5
    assert max_err(attention(q, k, v, mask=mask, causal=causal), ref) < 2e-5  # auto
