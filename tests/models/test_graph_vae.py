"""graph-vae on cobra's real E. coli core network: graph construction, split, sampling."""

from __future__ import annotations

import itertools

import cobra
import pytest
import torch

from astrobio_cli.data.networks import read_metabolic_network
from astrobio_models.graph_vae import factory, network_graph


@pytest.fixture(scope="module")
def textbook():
    return cobra.io.load_model("textbook")


def test_edges_link_metabolites_that_share_a_reaction(textbook):
    net = read_metabolic_network("textbook")  # the core reader; `textbook` is cobra's own model
    g = network_graph(net, max_reaction_size=10)
    ids = g["ids"]
    want = set()
    for r in textbook.reactions:
        ms = sorted(ids.index(m.id) for m in r.metabolites)
        if len(ms) <= 10:
            want |= set(itertools.combinations(ms, 2))
    assert {tuple(e) for e in g["edges"].tolist()} == want
    assert len(g["x"]) == len(textbook.metabolites) == 72
    # the biomass pseudo-reaction (> 10 metabolites) adds no clique
    biomass = textbook.reactions.get_by_id("Biomass_Ecoli_core")
    assert len(biomass.metabolites) > 10
    assert len(network_graph(net, max_reaction_size=100)["edges"]) > len(g["edges"])


def test_split_holds_out_edges_from_the_encoder():
    p = factory({"network": "textbook", "hidden": 8, "latent": 4, "embedding": 4})
    ds = p.make_datasets(None, seed=0)
    ctx = ds.context
    train = {tuple(e) for e in ctx["train_pos"].tolist()}
    val = {tuple(e) for e in ctx["val_pos"].tolist()}
    neg = {tuple(e) for e in ctx["val_neg"].tolist()}
    assert train and val and not train & val and not neg & (train | val)
    seen = {tuple(sorted(e)) for e in ctx["edge_index"].T.tolist()}
    assert seen == train
    assert len(neg) == len(val)


def test_sampling_new_graphs():
    p = factory({"network": "textbook", "hidden": 8, "latent": 4, "embedding": 4})
    ds = p.make_datasets(None, seed=0)
    model = p.build(ds)
    edges = p.sample(model, 30, generator=torch.Generator().manual_seed(0))
    assert edges.shape[0] == 2 and edges.shape[1] > 0
    assert (edges[0] < edges[1]).all() and edges.max() < 30
