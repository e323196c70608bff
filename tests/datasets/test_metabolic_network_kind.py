"""The metabolic-network kind: cobra's real models (the shipped E. coli core, and SBML / cobra
JSON files cobra itself writes) read by the core reader into plain data; counts and values are
checked against cobra's own model objects, and graph-vae builds the same graph as it did when it
read the network through cobra itself (the reference below is that code, on the cobra model)."""

from __future__ import annotations

import hashlib
import pickle

import cobra
import numpy as np
import pytest

from astrobio_cli.data.kinds import KINDS
from astrobio_cli.data.networks import MetabolicNetwork, read_metabolic_network
from astrobio_cli.errors import UsageError

ELEMENTS = ("C", "H", "N", "O", "P", "S")


@pytest.fixture(scope="module")
def cobra_textbook():
    return cobra.io.load_model("textbook")


@pytest.fixture(scope="module")
def files(tmp_path_factory, cobra_textbook):
    """(SBML path, JSON path) written by cobra from its E. coli core model."""
    root = tmp_path_factory.mktemp("networks")
    sbml, js = root / "e_coli_core.xml", root / "e_coli_core.json"
    cobra.io.write_sbml_model(cobra_textbook, str(sbml))
    cobra.io.save_json_model(cobra_textbook, str(js))
    return sbml, js


def _same_as_cobra(net: MetabolicNetwork, model) -> None:
    assert len(net.metabolites) == len(model.metabolites)
    assert len(net.reactions) == len(model.reactions)
    assert len(net.genes) == len(model.genes)
    assert net.id == model.id
    assert set(net.compartments) == set(model.compartments)
    assert [m.id for m in net.metabolites] == [m.id for m in model.metabolites]
    assert [r.id for r in net.reactions] == [r.id for r in model.reactions]
    for mine, theirs in zip(net.metabolites, model.metabolites, strict=True):
        assert mine.compartment == theirs.compartment
        assert mine.formula == (theirs.formula or "")
        assert mine.elements == (theirs.elements or {})
        assert mine.charge == theirs.charge
        assert mine.name == theirs.name
    for mine, theirs in zip(net.reactions, model.reactions, strict=True):
        assert mine.stoichiometry == {m.id: c for m, c in theirs.metabolites.items()}
        assert (mine.lower_bound, mine.upper_bound) == theirs.bounds
        assert mine.reversible == theirs.reversibility
        assert mine.gene_rule == theirs.gene_reaction_rule


def test_builtin_textbook_matches_cobra(cobra_textbook):
    net = read_metabolic_network("textbook")
    # cobra's documented E. coli core: 95 reactions, 72 metabolites, 137 genes
    assert (len(net.reactions), len(net.metabolites), len(net.genes)) == (95, 72, 137)
    _same_as_cobra(net, cobra_textbook)
    pgi = {r.id: r for r in net.reactions}["PGI"]
    assert pgi.stoichiometry == {"g6p_c": -1.0, "f6p_c": 1.0} and pgi.reversible
    assert pgi.gene_rule == "b4025"
    atp = {m.id: m for m in net.metabolites}["atp_c"]
    assert atp.formula == "C10H12N5O13P3" and atp.charge == -4 and atp.compartment == "c"
    assert atp.elements == {"C": 10, "H": 12, "N": 5, "O": 13, "P": 3}
    shipped = cobra.__file__.rsplit("/", 1)[0] + "/data/textbook.xml.gz"
    with open(shipped, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    assert net.provenance() == {
        "source": "textbook",
        "format": "builtin",
        "sha256": digest,
        "cobra_version": cobra.__version__,
        "model_id": "e_coli_core",
        "metabolites": 72,
        "reactions": 95,
        "builtin": "textbook",
    }
    assert read_metabolic_network("cobra:textbook").builtin == "textbook"
    again = pickle.loads(pickle.dumps(net))  # plain data: it crosses process boundaries
    assert again == net and type(again.metabolites[0]).__module__ == "astrobio_cli.data.networks"


@pytest.mark.parametrize("which", ["sbml", "json"])
def test_files_written_by_cobra(files, cobra_textbook, which):
    path = files[0] if which == "sbml" else files[1]
    net = read_metabolic_network(path)
    # cobra reading the same file back is the independent reference
    ref = (
        cobra.io.read_sbml_model(str(path))
        if which == "sbml"
        else cobra.io.load_json_model(str(path))
    )
    _same_as_cobra(net, ref)
    assert (len(net.reactions), len(net.metabolites)) == (
        len(cobra_textbook.reactions),
        len(cobra_textbook.metabolites),
    )
    assert net.format == ("sbml" if which == "sbml" else "cobra-json")
    assert net.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert net.source == str(path) and net.builtin is None
    assert read_metabolic_network(str(path)) == net  # str or Path


def test_bad_sources_are_clear_usage_errors(tmp_path):
    with pytest.raises(UsageError, match=r"nope\.xml does not exist.*\.json.*textbook"):
        read_metabolic_network(tmp_path / "nope.xml")
    with pytest.raises(UsageError, match="nor is it a model cobra ships"):
        read_metabolic_network("e_coli_core_typo")
    with pytest.raises(UsageError, match="is not a file"):
        read_metabolic_network(tmp_path)
    junk = tmp_path / "junk.xml"
    junk.write_text("<html><body>not SBML</body></html>")
    with pytest.raises(UsageError, match=r"cannot read .*junk\.xml as SBML.*not a metabolic model"):
        read_metabolic_network(junk)
    table = tmp_path / "table.json"
    table.write_text('{"pl_name": ["a"], "pl_rade": [1.0]}')
    with pytest.raises(UsageError, match=r"cannot read .*table\.json as a cobra JSON model"):
        read_metabolic_network(table)
    empty = tmp_path / "empty.xml"
    cobra.io.write_sbml_model(cobra.Model("empty"), str(empty))
    with pytest.raises(UsageError, match=r"empty\.xml holds no metabolic model: 0 reactions"):
        read_metabolic_network(empty)
    assert KINDS["metabolic-network"].reader == (
        "astrobio_cli.data.networks.read_metabolic_network"
    )


def _reference_graph(model, max_reaction_size: int) -> dict:
    """graph-vae's graph as it was built from the cobra model before the core reader existed."""
    mets = list(model.metabolites)
    index = {m.id: i for i, m in enumerate(mets)}
    pairs: set[tuple[int, int]] = set()
    for r in model.reactions:
        ids = sorted(index[m.id] for m in r.metabolites)
        if len(ids) > max_reaction_size:
            continue
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                pairs.add((ids[a], ids[b]))
    comps = sorted({m.compartment or "?" for m in mets})
    feats = np.zeros((len(mets), len(comps) + len(ELEMENTS) + 1))
    for i, m in enumerate(mets):
        feats[i, comps.index(m.compartment or "?")] = 1.0
        elements = m.elements or {}
        for j, e in enumerate(ELEMENTS):
            feats[i, len(comps) + j] = np.log1p(max(0.0, float(elements.get(e, 0) or 0)))
        feats[i, -1] = float(m.charge or 0)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    edges = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    return {"x": feats, "edges": edges, "ids": [m.id for m in mets], "compartments": comps}


@pytest.mark.parametrize("name", ["textbook", pytest.param("iJO1366", marks=pytest.mark.slow)])
def test_graph_vae_builds_the_identical_graph(name):
    from astrobio_models.graph_vae import network_graph

    ref = _reference_graph(cobra.io.load_model(name), 10)
    g = network_graph(read_metabolic_network(name), 10)
    assert g["ids"] == ref["ids"] and g["compartments"] == ref["compartments"]
    assert g["x"].dtype == ref["x"].dtype and g["x"].tobytes() == ref["x"].tobytes()
    assert g["edges"].dtype == ref["edges"].dtype
    np.testing.assert_array_equal(g["edges"], ref["edges"])


def test_graph_vae_records_the_readers_provenance(files):
    from astrobio_models.graph_vae import factory

    p = factory({"network": "textbook", "hidden": 8, "latent": 4, "embedding": 4})
    ds = p.make_datasets(files[1], seed=0)  # the JSON file, given as --data
    prov = ds.provenance["network_source"]
    assert prov["source"] == str(files[1]) and prov["format"] == "cobra-json"
    assert prov["sha256"] == hashlib.sha256(files[1].read_bytes()).hexdigest()
    assert ds.provenance["nodes"] == 72
    shipped = p.make_datasets(None, seed=0)
    builtin = shipped.provenance["network_source"]
    assert builtin["builtin"] == "textbook" and builtin["cobra_version"] == cobra.__version__
    # the same network from the JSON file and from cobra's shipped model: the same split
    for key in ("train_pos", "val_pos", "val_neg"):
        assert ds.context[key].tolist() == shipped.context[key].tolist()
