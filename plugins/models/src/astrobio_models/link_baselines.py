"""Cheap link-prediction baselines on an undirected graph, vectorised with scipy.sparse.

Every score of a node pair (u, v) is computed from the graph it is given (for `graph-vae`: the
training edges only; held-out edges never enter it):

- ``degree`` (preferential attachment): deg(u) * deg(v).
- ``common-neighbours``: |N(u) & N(v)|.
- ``jaccard``: |N(u) & N(v)| / |N(u) | N(v)| (0 when both are isolated).
- ``adamic-adar``: sum over common neighbours w of 1 / log deg(w).
- ``resource-allocation``: sum over common neighbours w of 1 / deg(w).
- ``spectral``: z_u . z_v with z = the top-k eigenvectors (largest eigenvalues) of the normalised
  adjacency D^-1/2 A D^-1/2, each scaled by sqrt(eigenvalue) (a rank-k reconstruction of it).
  k is chosen from `SPECTRAL_K` on the graph itself: 10% of its edges (drawn with `seed`) and as
  many of its non-edges are held out, and the k with the best ROC AUC on them wins; the
  embedding is then recomputed on the whole graph.

Definitions follow networkx (`common_neighbors`, `jaccard_coefficient`, `adamic_adar_index`,
`resource_allocation_index`, `preferential_attachment`); the tests check them against it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SPECTRAL_K = (8, 16, 32, 64, 128, 256)
DENSE_EIGH_MAX_NODES = 4000  # above this, scipy.sparse.linalg.eigsh for the top k


def adjacency(edges: np.ndarray, n: int) -> sp.csr_matrix:
    """The symmetric 0/1 adjacency (n, n) of undirected edges (E, 2); no self-loops."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    e = e[e[:, 0] != e[:, 1]]
    rows, cols = np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]]
    a = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    a.data[:] = 1.0  # duplicates sum on construction
    return a


def degrees(a: sp.csr_matrix) -> np.ndarray:
    return np.asarray(a.sum(1)).ravel()


def _common(a: sp.csr_matrix, pairs: np.ndarray) -> sp.csr_matrix:
    """(P, n): row p marks the common neighbours of pairs[p]."""
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return a[p[:, 0]].multiply(a[p[:, 1]]).tocsr()


def _weighted_common(a: sp.csr_matrix, pairs: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.asarray(_common(a, pairs) @ w).ravel()


def preferential_attachment(a, pairs) -> np.ndarray:
    d, p = degrees(a), np.asarray(pairs).reshape(-1, 2)
    return d[p[:, 0]] * d[p[:, 1]]


def common_neighbours(a, pairs) -> np.ndarray:
    return _weighted_common(a, pairs, np.ones(a.shape[0]))


def jaccard(a, pairs) -> np.ndarray:
    d, p = degrees(a), np.asarray(pairs).reshape(-1, 2)
    cn = common_neighbours(a, pairs)
    union = d[p[:, 0]] + d[p[:, 1]] - cn
    return np.divide(cn, union, out=np.zeros_like(cn), where=union > 0)


def adamic_adar(a, pairs) -> np.ndarray:
    d = degrees(a)
    # a common neighbour has degree >= 2, so log(deg) > 0 wherever it is used
    w = np.divide(1.0, np.log(np.maximum(d, 2.0)), out=np.zeros_like(d), where=d >= 2)
    return _weighted_common(a, pairs, w)


def resource_allocation(a, pairs) -> np.ndarray:
    d = degrees(a)
    return _weighted_common(a, pairs, np.divide(1.0, d, out=np.zeros_like(d), where=d > 0))


def spectral_embedding(a: sp.csr_matrix, k: int) -> np.ndarray:
    """(n, k): top-k eigenvectors of D^-1/2 A D^-1/2 times sqrt(max(eigenvalue, 0))."""
    n = a.shape[0]
    k = max(1, min(k, n - 2))
    d = degrees(a)
    s = np.divide(1.0, np.sqrt(d), out=np.zeros_like(d), where=d > 0)
    norm = sp.diags(s) @ a @ sp.diags(s)
    if n <= DENSE_EIGH_MAX_NODES:
        vals, vecs = np.linalg.eigh(norm.toarray())
        vals, vecs = vals[-k:], vecs[:, -k:]
    else:
        from scipy.sparse.linalg import eigsh

        v0 = np.random.default_rng(0).standard_normal(n)  # eigsh's start vector, fixed
        vals, vecs = eigsh(norm.astype(np.float64), k=k, which="LA", v0=v0)
    return vecs * np.sqrt(np.maximum(vals, 0.0))


def spectral_scores(z: np.ndarray, pairs) -> np.ndarray:
    p = np.asarray(pairs).reshape(-1, 2)
    return (z[p[:, 0]] * z[p[:, 1]]).sum(1)


def choose_spectral_k(a: sp.csr_matrix, seed: int, grid=SPECTRAL_K) -> int:
    """The k of `grid` whose embedding best predicts 10% of `a`'s own edges (drawn with `seed`)
    held out of it, against as many of its non-edges (ROC AUC)."""
    from sklearn.metrics import roc_auc_score

    n = a.shape[0]
    grid = sorted({max(1, min(k, n - 2)) for k in grid})
    edges = np.array(sp.triu(a, 1).nonzero()).T
    rng = np.random.default_rng(seed)
    n_val = max(1, round(0.1 * len(edges)))
    if len(edges) < 10 or n < 4:
        return grid[0]
    perm = rng.permutation(len(edges))
    val, fit = edges[perm[:n_val]], edges[perm[n_val:]]
    neg = sample_non_edges(a, n_val, rng)
    z = spectral_embedding(adjacency(fit, n), max(grid))  # columns: ascending eigenvalue
    y = np.r_[np.ones(len(val)), np.zeros(len(neg))]
    pairs = np.r_[val, neg]
    aucs = [roc_auc_score(y, spectral_scores(z[:, -k:], pairs)) for k in grid]
    return grid[int(np.argmax(aucs))]


def sample_non_edges(a: sp.csr_matrix, m: int, rng: np.random.Generator) -> np.ndarray:
    """m distinct node pairs u < v that are not edges of `a` (uniformly, by rejection)."""
    n = a.shape[0]
    seen = set(zip(*sp.triu(a, 1).nonzero(), strict=True))
    out: list[tuple[int, int]] = []
    while len(out) < m:
        u, v = sorted(rng.integers(0, n, size=2).tolist())
        if u != v and (u, v) not in seen:
            seen.add((u, v))
            out.append((u, v))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


HEURISTICS = {
    "degree": preferential_attachment,
    "common-neighbours": common_neighbours,
    "jaccard": jaccard,
    "adamic-adar": adamic_adar,
    "resource-allocation": resource_allocation,
}


def link_scores(train_edges: np.ndarray, n: int, pairs: np.ndarray, *, seed: int):
    """{baseline name: scores (P,)} of `pairs`, every baseline fitted on `train_edges` only.
    Also returns the spectral k chosen (for the record)."""
    a = adjacency(train_edges, n)
    out = {name: fn(a, pairs) for name, fn in HEURISTICS.items()}
    k = choose_spectral_k(a, seed)
    out["spectral"] = spectral_scores(spectral_embedding(a, k), pairs)
    return out, k


def auc_ap(pos: np.ndarray, neg: np.ndarray) -> dict[str, float]:
    """ROC AUC and average precision of scores of positives vs negatives."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    s = np.r_[np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)]
    return {"auc": float(roc_auc_score(y, s)), "ap": float(average_precision_score(y, s))}
