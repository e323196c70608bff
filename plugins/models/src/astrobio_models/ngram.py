"""A token (character) n-gram language model with interpolated modified Kneser-Ney smoothing.

Numpy only (no torch). Chen & Goodman (1998), "An Empirical Study of Smoothing Techniques for
Language Modeling", sections 2.7-2.8 (interpolated Kneser-Ney, modified with three discounts):

    P_k(w | h) = max(c_k(hw) - D_k(c_k(hw)), 0) / c_k(h.)  +  gamma_k(h) * P_{k-1}(w | h')
    gamma_k(h) = (D_k1 N1(h.) + D_k2 N2(h.) + D_k3+ N3+(h.)) / c_k(h.)
    P_0(w) = 1 / V  (uniform over the whole vocabulary)

h' is h without its oldest token; c_k(h.) = sum_w c_k(hw); N_r(h.) = #{w : c_k(hw) = r}. The
top level of a query uses raw counts; every level below it uses continuation counts,
c_k(g) = N1+(. g) (the number of distinct tokens seen before g). A context never seen at a level
(c_k(h.) = 0) leaves the level's distribution equal to the one below. Discounts per level and
count kind from the counts of counts n_r: Y = n1 / (n1 + 2 n2), D_r = r - (r + 1) Y n_{r+1} / n_r
(r = 1, 2, 3). With too few counts (n1 or n2 = 0: Y = 1/2; D_r outside (0, r) or n_r = 0) the
discount is Y, so every discount is positive and every token keeps some probability. Every
P_k(. | h) sums to 1 over the V tokens.

A query whose context is shorter than the model's order - 1 (at the start of a text, or where the
caller cuts the context) is answered by the level its context reaches, with that level's raw
counts on top: the estimate of P(w | the tokens known).

N-grams are packed into int64 keys (`bits` per token, newest token in the lowest bits), so the
highest order is 63 // bits: 8 for a vocabulary up to 128 tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _discounts(counts: np.ndarray) -> np.ndarray:
    """D_1, D_2, D_3+ from the counts of counts (Chen & Goodman, eq. 26)."""
    n = [int((counts == r).sum()) for r in (1, 2, 3, 4)]
    y = n[0] / (n[0] + 2 * n[1]) if n[0] > 0 and n[1] > 0 else 0.5
    d = []
    for r in (1, 2, 3):
        v = r - (r + 1) * y * n[r] / n[r - 1] if n[r - 1] > 0 else y
        d.append(v if 0.0 < v < r else y)  # out of range (few counts): one discount, Y
    return np.array(d, dtype=np.float64)


class _Table:
    """One level's counts (raw or continuation) and its per-context normalisers."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, bits: int) -> None:
        self.keys, self.counts = keys, counts.astype(np.float64)
        self.d = _discounts(counts)
        ctx = keys >> bits  # keys are sorted, so each context's n-grams are contiguous
        self.ctx, starts = np.unique(ctx, return_index=True)
        self.total = np.add.reduceat(self.counts, starts) if len(keys) else np.zeros(0)
        cls = np.minimum(counts, 3) - 1  # 0, 1, 2 for counts 1, 2, >=3
        self.gamma_num = (
            np.add.reduceat(self.d[cls], starts) if len(keys) else np.zeros(0, dtype=np.float64)
        )

    def lookup(self, grams: np.ndarray, bits: int, lower: np.ndarray) -> np.ndarray:
        """P(w | h) at this level for each packed n-gram `hw`, given the level below's."""
        if len(self.keys) == 0:
            return lower
        ci = np.minimum(np.searchsorted(self.ctx, grams >> bits), len(self.ctx) - 1)
        seen_ctx = self.ctx[ci] == grams >> bits
        gi = np.minimum(np.searchsorted(self.keys, grams), len(self.keys) - 1)
        c = np.where(self.keys[gi] == grams, self.counts[gi], 0.0)
        d = self.d[np.clip(c.astype(np.int64), 1, 3) - 1]
        total = np.where(seen_ctx, self.total[ci], 1.0)
        p = np.maximum(c - d, 0.0) / total + self.gamma_num[ci] / total * lower
        return np.where(seen_ctx, p, lower)


class KneserNey:
    """Interpolated modified Kneser-Ney over token ids 0..vocab_size-1, orders 1..max_order.

    One `fit` serves every order up to `max_order`: `logprobs(..., order=k)` uses levels 1..k.
    """

    def __init__(self, vocab_size: int, max_order: int = 8) -> None:
        self.vocab_size = int(vocab_size)
        self.bits = max(1, (self.vocab_size - 1).bit_length())
        if max_order < 1 or max_order * self.bits > 63:
            raise ValueError(
                f"order {max_order} does not fit int64 keys with {self.vocab_size} tokens "
                f"(at most {63 // self.bits})"
            )
        self.max_order = max_order
        self.order = max_order  # the order `logprobs` uses by default
        self.raw: list[_Table] = []
        self.cont: list[_Table] = []
        self.tokens = 0

    def _grams(self, ids: np.ndarray, k: int) -> np.ndarray:
        """Packed k-grams ending at positions k-1..n-1 (newest token in the lowest bits)."""
        n = len(ids) - k + 1
        key = np.zeros(max(0, n), dtype=np.int64)
        for j in range(k):  # token at position i - j goes to bits [j*bits, (j+1)*bits)
            key |= ids[k - 1 - j : k - 1 - j + n] << (j * self.bits)
        return key

    def fit(self, ids: Sequence[int] | np.ndarray) -> KneserNey:
        """Count every n-gram of one token stream (n-grams may cross line boundaries)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError("token ids must lie in 0..vocab_size-1")
        self.tokens = len(ids)
        self.raw, self.cont = [], []
        for k in range(1, self.max_order + 1):
            keys, counts = np.unique(self._grams(ids, k), return_counts=True)
            self.raw.append(_Table(keys, counts, self.bits))
        for k in range(1, self.max_order):
            # N1+(. g): distinct (k+1)-grams whose newest k tokens are g
            suffix = self.raw[k].keys & ((1 << (k * self.bits)) - 1)
            keys, counts = np.unique(suffix, return_counts=True)
            self.cont.append(_Table(keys, counts, self.bits))
        return self

    def logprobs(
        self,
        ids: Sequence[int] | np.ndarray,
        positions: Sequence[int] | np.ndarray,
        starts: Sequence[int] | np.ndarray | None = None,
        order: int | None = None,
    ) -> np.ndarray:
        """Natural-log P(ids[i] | ids[max(start_i, i-order+1):i]) for each i in `positions`
        (float64); the context of position i never reaches before `starts[i]` (default 0)."""
        order = self.order if order is None else int(order)
        if not 1 <= order <= self.max_order or not self.raw:
            raise ValueError(f"order {order} outside 1..{self.max_order}, or not fitted")
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.asarray(positions, dtype=np.int64)
        start = np.zeros_like(pos) if starts is None else np.asarray(starts, dtype=np.int64)
        top = np.minimum(order, pos - start + 1)  # the highest level each query reaches
        key = np.zeros(len(pos), dtype=np.int64)
        lower = np.full(len(pos), 1.0 / self.vocab_size)
        out = np.zeros(len(pos))
        for k in range(1, order + 1):
            key |= ids[np.maximum(pos - (k - 1), 0)] << ((k - 1) * self.bits)
            here = top == k
            if here.any():
                out[here] = self.raw[k - 1].lookup(key[here], self.bits, lower[here])
            if k < order:
                lower = self.cont[k - 1].lookup(key, self.bits, lower)
        return np.log(out)

    def distribution(self, context: Sequence[int], order: int | None = None) -> np.ndarray:
        """P(w | context) for every token w (float64, sums to 1)."""
        ctx = [int(t) for t in context]
        v = self.vocab_size
        ids = np.array(ctx * v, dtype=np.int64).reshape(v, len(ctx)) if ctx else None
        grid = np.arange(v, dtype=np.int64)[:, None]
        rows = grid if ids is None else np.concatenate([ids, grid], axis=1)
        flat = rows.reshape(-1)
        width = len(ctx) + 1
        pos = np.arange(v) * width + width - 1
        return np.exp(self.logprobs(flat, pos, pos - len(ctx), order))


def blocks_positions(n_blocks: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions a causal LM scores in `n_blocks` concatenated blocks of `block` tokens
    (every token but each block's first) and, for each, where its block starts."""
    pos = np.arange(n_blocks * block, dtype=np.int64)
    keep = pos % block != 0
    return pos[keep], (pos - pos % block)[keep]


def choose_order(
    fit_ids: Sequence[int],
    score_ids: Sequence[int],
    block: int,
    vocab_size: int,
    max_order: int = 8,
) -> tuple[int, dict[int, float]]:
    """The order 1..max_order with the lowest perplexity on `score_ids` (cut into blocks like the
    model's held-out text) for a model fitted on `fit_ids`; and every order's perplexity.
    With fewer than two tokens to score there is nothing to choose on: order 3 (or less)."""
    n = len(score_ids) // block
    if n == 0:  # shorter than a block: one short block
        n, block = 1, len(score_ids)
    if block < 2:  # nothing to choose on
        return min(3, max_order), {}
    lm = KneserNey(vocab_size, max_order).fit(fit_ids)
    pos, starts = blocks_positions(n, block)
    ppl = {
        k: math.exp(-float(lm.logprobs(score_ids[: n * block], pos, starts, k).mean()))
        for k in range(1, max_order + 1)
    }
    return min(ppl, key=ppl.__getitem__), ppl


def fit_selected(
    fit_ids: Sequence[int],
    select_fit: Sequence[int],
    select_score: Sequence[int],
    block: int,
    vocab_size: int,
    max_order: int = 8,
) -> tuple[KneserNey, dict[str, Any]]:
    """Pick the order on (select_fit -> select_score), then refit on `fit_ids` at that order."""
    max_order = min(max_order, 63 // max(1, (vocab_size - 1).bit_length()))
    order, ppl = choose_order(select_fit, select_score, block, vocab_size, max_order)
    lm = KneserNey(vocab_size, order).fit(fit_ids)
    lm.order = order
    return lm, {"order": order, "selection_perplexity": ppl}
