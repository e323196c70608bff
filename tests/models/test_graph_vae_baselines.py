"""graph-vae's link-prediction baselines and decoder, checked against networkx and sklearn on
cobra's E. coli core network (the smoke config); the held-out edges never reach a baseline."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from astrobio_cli.errors import UsageError
from astrobio_models import link_baselines as lb
from astrobio_models.graph_vae import common_neighbour_pool, drop_edges, factory

SMALL = {"network": "textbook", "hidden": 16, "latent": 8, "embedding": 8}


@pytest.fixture(scope="module")
def plugin():
    return factory(SMALL)


@pytest.fixture(scope="module")
def ds(plugin):
    return plugin.make_datasets(None, seed=3)


def train_graph(ds) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(ds.context["num_nodes"]))
    g.add_edges_from(ds.context["train_pos"].tolist())
    return g


def held_out(ds):
    ctx = ds.context
    pos, neg = ctx["val_pos"].numpy(), ctx["val_neg"].numpy()
    return pos, neg, np.r_[pos, neg], np.r_[np.ones(len(pos)), np.zeros(len(neg))]


def nx_scores(g: nx.Graph, pairs) -> dict[str, np.ndarray]:
    ebunch = [tuple(p) for p in np.asarray(pairs).tolist()]
    return {
        "degree": np.array([s for *_, s in nx.preferential_attachment(g, ebunch)], float),
        "common-neighbours": np.array(
            [len(list(nx.common_neighbors(g, u, v))) for u, v in ebunch], float
        ),
        "jaccard": np.array([s for *_, s in nx.jaccard_coefficient(g, ebunch)], float),
        "adamic-adar": np.array([s for *_, s in nx.adamic_adar_index(g, ebunch)], float),
        "resource-allocation": np.array(
            [s for *_, s in nx.resource_allocation_index(g, ebunch)], float
        ),
    }


def test_datasets_carry_the_run_seed(ds):
    assert ds.seed == 3


def test_heuristics_match_networkx_on_pairs(ds):
    g = train_graph(ds)
    a = lb.adjacency(ds.context["train_pos"].numpy(), ds.context["num_nodes"])
    rng = np.random.default_rng(0)
    pairs = np.r_[held_out(ds)[2][:20], rng.integers(0, g.number_of_nodes(), (20, 2))]
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    want = nx_scores(g, pairs)
    for name, fn in lb.HEURISTICS.items():
        np.testing.assert_allclose(fn(a, pairs), want[name], rtol=1e-12, err_msg=name)
    assert want["common-neighbours"].max() > 0 and want["adamic-adar"].max() > 0


def test_baseline_metrics_match_sklearn_on_networkx_scores(plugin, ds):
    got = plugin.baseline(ds)
    assert set(got) == {*lb.HEURISTICS, "spectral"}
    _, _, pairs, y = held_out(ds)
    for name, s in nx_scores(train_graph(ds), pairs).items():
        assert got[name]["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12), name
        assert got[name]["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12), name
    for vals in got.values():
        assert 0.0 <= vals["auc"] <= 1.0 and 0.0 <= vals["ap"] <= 1.0


def test_auc_is_the_mann_whitney_probability():
    rng = np.random.default_rng(1)
    pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 4, 40).astype(float)
    wins = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert lb.auc_ap(pos, neg)["auc"] == pytest.approx(wins)
    # average precision without ties: the mean precision at each positive's rank
    pos, neg = np.array([0.9, 0.7, 0.4]), np.array([0.8, 0.3])
    assert lb.auc_ap(pos, neg)["ap"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 4) / 3)


def test_held_out_edges_never_reach_a_baseline_graph(plugin, ds, monkeypatch):
    """Every matrix a baseline builds or embeds holds no held-out edge (and they would change
    the scores if they leaked)."""
    seen = []
    adjacency, embed = lb.adjacency, lb.spectral_embedding

    def spy_adjacency(edges, n):
        seen.append(adjacency(edges, n))
        return seen[-1]

    def spy_embed(a, k):
        seen.append(a)
        return embed(a, k)

    monkeypatch.setattr(lb, "adjacency", spy_adjacency)
    monkeypatch.setattr(lb, "spectral_embedding", spy_embed)
    plugin.baseline(ds)
    assert len(seen) >= 3  # the training graph, the graph k is chosen on, their embeddings
    pos = held_out(ds)[0]
    for a in seen:
        assert a[pos[:, 0], pos[:, 1]].sum() == 0 and a[pos[:, 1], pos[:, 0]].sum() == 0
    monkeypatch.undo()
    leaky = train_graph(ds)
    leaky.add_edges_from(pos.tolist())
    _, _, pairs, y = held_out(ds)
    leaked = roc_auc_score(y, nx_scores(leaky, pairs)["degree"])
    assert leaked != pytest.approx(plugin.baseline(ds)["degree"]["auc"])


def test_spectral_embedding_is_the_rank_k_normalised_adjacency(ds):
    g = train_graph(ds)
    a = lb.adjacency(ds.context["train_pos"].numpy(), ds.context["num_nodes"])
    norm = -nx.normalized_laplacian_matrix(g, nodelist=range(g.number_of_nodes())).toarray()
    np.fill_diagonal(norm, 0.0)  # I - L off the diagonal; no self-loops
    vals, vecs = np.linalg.eigh(norm)
    k = next(k for k in (8, 9, 10, 11, 12) if vals[-k] - vals[-k - 1] > 1e-6)
    want = (vecs[:, -k:] * vals[-k:]) @ vecs[:, -k:].T
    z = lb.spectral_embedding(a, k)
    assert z.shape == (g.number_of_nodes(), k)
    np.testing.assert_allclose(z @ z.T, want, atol=1e-8)
    assert lb.choose_spectral_k(a, seed=0) in lb.SPECTRAL_K


def test_spectral_baseline_draws_its_k_from_the_run_seed(ds):
    a = lb.adjacency(ds.context["train_pos"].numpy(), ds.context["num_nodes"])
    assert lb.choose_spectral_k(a, seed=5) == lb.choose_spectral_k(a, seed=5)


def test_common_neighbour_pool_counts_and_weights_like_networkx(ds):
    g = train_graph(ds)
    n = g.number_of_nodes()
    pairs = torch.tensor(held_out(ds)[2][:30])
    ones = common_neighbour_pool(ds.context["edge_index"], pairs, torch.ones(n, 1), n)
    want = nx_scores(g, pairs.numpy())
    np.testing.assert_allclose(ones[:, 0].numpy(), want["common-neighbours"])
    deg = torch.tensor([max(g.degree(i), 1) for i in range(n)], dtype=torch.float64)
    ra = common_neighbour_pool(ds.context["edge_index"], pairs, (1 / deg)[:, None], n)
    np.testing.assert_allclose(ra[:, 0].numpy(), want["resource-allocation"])


def test_drop_edges_removes_both_directions_only(ds):
    ei = ds.context["edge_index"]
    batch = ds.context["train_pos"][:5]
    kept = drop_edges(ei, batch, ds.context["num_nodes"])
    assert kept.shape[1] == ei.shape[1] - 10
    left = {tuple(e) for e in kept.T.tolist()}
    for u, v in batch.tolist():
        assert (u, v) not in left and (v, u) not in left


def test_model_scores_use_the_training_graph_and_differ_from_a_leaky_one(plugin, ds):
    torch.manual_seed(0)
    model = plugin.build(ds).eval()
    pairs = torch.cat([ds.context["val_pos"], ds.context["val_neg"]])
    x, ei = ds.context["x"], ds.context["edge_index"]
    with torch.no_grad():
        want = model(x, ei, pairs)[0].double().numpy()
        got = plugin.predict(model, ds, pairs)
        vp = ds.context["val_pos"]
        leaky = model(x, torch.cat([ei, vp.T, vp.T.flip(0)], 1), pairs)[0].double().numpy()
    np.testing.assert_allclose(got, want)
    assert not np.allclose(got, leaky)


def test_unknown_choices_are_usage_errors():
    with pytest.raises(UsageError, match="conv"):
        factory({"conv": "gat"})
    with pytest.raises(UsageError, match="decoder"):
        factory({"decoder": "mlp"})


def test_plot_writes_a_png_of_roc_and_pr_curves(plugin, ds, tmp_path):
    torch.manual_seed(0)
    model = plugin.build(ds)
    out = tmp_path / "curves.png"
    plugin.plot(model, ds, out)
    data = out.read_bytes()
    assert len(data) > 10_000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert model.training  # the mode is restored


@pytest.mark.parametrize("decoder", ["ncn", "inner"])
def test_both_decoders_train_and_sample(decoder):
    p = factory({**SMALL, "decoder": decoder})
    ds = p.make_datasets(None, seed=0)
    torch.manual_seed(0)
    model = p.build(ds)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = ds.context["train_pos"][:128]
    first = p.loss(model, batch, ds).item()
    for _ in range(20):
        opt.zero_grad()
        p.loss(model, batch, ds).backward()
        opt.step()
    assert p.loss(model, batch, ds).item() < first
    model.eval()
    with torch.no_grad():
        assert 0.5 < p.evaluate(model, ds)["auc"] <= 1.0
    edges = p.sample(model, 20, generator=torch.Generator().manual_seed(0))
    assert edges.shape[0] == 2 and (edges[0] < edges[1]).all()
