"""The Triton kernels of the `triton` attention backend (see triton_flash.py for the algorithm).

Importing this module imports triton: set TRITON_INTERPRET=1 before that to run on a CPU.
"""

import triton
import triton.language as tl


@triton.jit
def _dot(a, b, DOT: tl.constexpr):
    # DOT 0: native (fp16/bf16 tensor cores); 1: fp32 in IEEE precision, not TF32;
    # 2: upcast to fp32 first (the interpreter's bf16 dot is wrong; products of bf16 values are
    # exact in fp32, so the result is what a GPU computes).
    if DOT == 1:
        return tl.dot(a, b, input_precision="ieee")
    if DOT == 2:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b)


@triton.jit
def fwd(
    Q, K, V, Bias, Out, LSE,
    qk_scale,  # scale * log2(e): scores are kept in base-2 units
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sob, soh, som, sod, sbb,
    Hq, G, Tq, Tk, D,
    CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr, DOT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // Hq
    h = bh % Hq
    hk = h // G  # grouped-query: the KV head this query head reads
    off = Tk - Tq  # bottom-right causal alignment
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
        mask=(offs_m[:, None] < Tq) & d_ok[None, :],
        other=0.0,
    )
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    hi = Tk
    if CAUSAL:  # keys after the block's last visible one are never loaded
        hi = tl.minimum(Tk, tl.maximum((start_m + 1) * BLOCK_M + off, 0))
    k_base = K + b * skb + hk * skh
    v_base = V + b * svb + hk * svh
    for start_n in range(0, hi, BLOCK_N):
        kn = start_n + offs_n
        kt = tl.load(
            k_base + kn[None, :] * skn + offs_d[:, None] * skd,
            mask=(kn[None, :] < Tk) & d_ok[:, None],
            other=0.0,
        )  # (BLOCK_D, BLOCK_N)
        s = _dot(q, kt, DOT) * qk_scale  # (BLOCK_M, BLOCK_N), base-2 units
        valid = (kn < Tk)[None, :]
        if CAUSAL:
            valid = valid & (kn[None, :] <= offs_m[:, None] + off)
        if HAS_BIAS:
            bias = tl.load(Bias + b * sbb + kn, mask=kn < Tk, other=0.0)
            s = s + bias[None, :] * 1.4426950408889634
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row that has seen no key yet keeps m = -inf; subtract 0 instead so that
        # exp2(-inf - -inf) = NaN never happens.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        vt = tl.load(
            v_base + kn[:, None] * svn + offs_d[None, :] * svd,
            mask=(kn[:, None] < Tk) & d_ok[None, :],
            other=0.0,
        )  # (BLOCK_N, BLOCK_D)
        acc = acc * alpha[:, None] + _dot(p.to(vt.dtype), vt, DOT)
        m_i = m_new
    has_key = l_i > 0.0
    l_safe = tl.where(has_key, l_i, 1.0)
    acc = acc / l_safe[:, None]
    lse = tl.where(has_key, m_i + tl.math.log2(l_safe), float("inf"))
    tl.store(
        Out + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :] * sod,
        acc.to(Out.dtype.element_ty),
        mask=(offs_m[:, None] < Tq) & d_ok[None, :],
    )
    tl.store(LSE + bh * Tq + offs_m, lse, mask=offs_m < Tq)


@triton.jit
def dkdv(
    Q, K, V, Bias, DO, LSE, Delta, DK, DV,
    qk_scale, sm_scale,
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd,
    sdob, sdoh, sdom, sdod, sdkb, sdkh, sdkn, sdkd, sdvb, sdvh, sdvn, sdvd, sbb,
    Hq, Hkv, G, Tq, Tk, D,
    CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr, DOT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    start_n = tl.program_id(0)
    bhk = tl.program_id(1)
    b = bhk // Hkv
    hk = bhk % Hkv
    off = Tk - Tq
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    n_ok = offs_n < Tk
    k = tl.load(
        K + b * skb + hk * skh + offs_n[:, None] * skn + offs_d[None, :] * skd,
        mask=n_ok[:, None] & d_ok[None, :],
        other=0.0,
    )  # (BLOCK_N, BLOCK_D)
    v = tl.load(
        V + b * svb + hk * svh + offs_n[:, None] * svn + offs_d[None, :] * svd,
        mask=n_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    bias = tl.zeros([BLOCK_N], tl.float32)
    if HAS_BIAS:
        bias = tl.load(Bias + b * sbb + offs_n, mask=n_ok, other=0.0) * 1.4426950408889634
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    lo = 0
    if CAUSAL:  # queries before (first key - off) cannot see this block
        lo = tl.maximum(start_n * BLOCK_N - off, 0) // BLOCK_M * BLOCK_M
    for g in range(0, G):
        h = hk * G + g
        q_base = Q + b * sqb + h * sqh
        do_base = DO + b * sdob + h * sdoh
        row = (b * Hq + h) * Tq
        for start_m in range(lo, Tq, BLOCK_M):
            offs_m = start_m + offs_m0
            m_ok = offs_m < Tq
            q = tl.load(
                q_base + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
                mask=m_ok[:, None] & d_ok[None, :],
                other=0.0,
            )
            do = tl.load(
                do_base + offs_m[:, None] * sdom + offs_d[None, :] * sdod,
                mask=m_ok[:, None] & d_ok[None, :],
                other=0.0,
            )
            lse = tl.load(LSE + row + offs_m, mask=m_ok, other=float("inf"))
            delta = tl.load(Delta + row + offs_m, mask=m_ok, other=0.0)
            s = _dot(q, tl.trans(k), DOT) * qk_scale + bias[None, :]  # (BLOCK_M, BLOCK_N)
            valid = m_ok[:, None] & n_ok[None, :]
            if CAUSAL:
                valid = valid & (offs_n[None, :] <= offs_m[:, None] + off)
            p = tl.where(valid, tl.math.exp2(s - lse[:, None]), 0.0)
            dv += _dot(tl.trans(p.to(do.dtype)), do, DOT)
            dp = _dot(do, tl.trans(v), DOT)
            ds = p * (dp - delta[:, None])  # dL/d(scores before scaling) / sm_scale
            dk += _dot(tl.trans(ds.to(q.dtype)), q, DOT)
    dk = dk * sm_scale
    tl.store(
        DK + b * sdkb + hk * sdkh + offs_n[:, None] * sdkn + offs_d[None, :] * sdkd,
        dk.to(DK.dtype.element_ty),
        mask=n_ok[:, None] & d_ok[None, :],
    )
    tl.store(
        DV + b * sdvb + hk * sdvh + offs_n[:, None] * sdvn + offs_d[None, :] * sdvd,
        dv.to(DV.dtype.element_ty),
        mask=n_ok[:, None] & d_ok[None, :],
    )


@triton.jit
def dq(
    Q, K, V, Bias, DO, LSE, Delta, DQ,
    qk_scale, sm_scale,
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd,
    sdob, sdoh, sdom, sdod, sdqb, sdqh, sdqm, sdqd, sbb,
    Hq, G, Tq, Tk, D,
    CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr, DOT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // Hq
    h = bh % Hq
    hk = h // G
    off = Tk - Tq
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    m_ok = offs_m < Tq
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
        mask=m_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    do = tl.load(
        DO + b * sdob + h * sdoh + offs_m[:, None] * sdom + offs_d[None, :] * sdod,
        mask=m_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    lse = tl.load(LSE + bh * Tq + offs_m, mask=m_ok, other=float("inf"))
    delta = tl.load(Delta + bh * Tq + offs_m, mask=m_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    hi = Tk
    if CAUSAL:
        hi = tl.minimum(Tk, tl.maximum((start_m + 1) * BLOCK_M + off, 0))
    k_base = K + b * skb + hk * skh
    v_base = V + b * svb + hk * svh
    for start_n in range(0, hi, BLOCK_N):
        kn = start_n + offs_n0
        n_ok = kn < Tk
        k = tl.load(
            k_base + kn[:, None] * skn + offs_d[None, :] * skd,
            mask=n_ok[:, None] & d_ok[None, :],
            other=0.0,
        )  # (BLOCK_N, BLOCK_D)
        v = tl.load(
            v_base + kn[:, None] * svn + offs_d[None, :] * svd,
            mask=n_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        s = _dot(q, tl.trans(k), DOT) * qk_scale
        if HAS_BIAS:
            bias = tl.load(Bias + b * sbb + kn, mask=n_ok, other=0.0)
            s = s + bias[None, :] * 1.4426950408889634
        valid = m_ok[:, None] & n_ok[None, :]
        if CAUSAL:
            valid = valid & (kn[None, :] <= offs_m[:, None] + off)
        p = tl.where(valid, tl.math.exp2(s - lse[:, None]), 0.0)
        dp = _dot(do, tl.trans(v), DOT)
        ds = p * (dp - delta[:, None])
        dq += _dot(ds.to(k.dtype), k, DOT)
    dq = dq * sm_scale
    tl.store(
        DQ + b * sdqb + h * sdqh + offs_m[:, None] * sdqm + offs_d[None, :] * sdqd,
        dq.to(DQ.dtype.element_ty),
        mask=m_ok[:, None] & d_ok[None, :],
    )


KERNELS = {"fwd": fwd, "dkdv": dkdv, "dq": dq}
