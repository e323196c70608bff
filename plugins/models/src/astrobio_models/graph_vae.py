"""`graph-vae`: a variational graph auto-encoder (Kipf & Welling 2016) over metabolic networks.

Data: a genome-scale metabolic model (SBML `.xml`/`.sbml`, cobra `.json`, or the name of a model
cobra ships offline: `textbook` (E. coli core), `iJO1366` (E. coli, default), `salmonella`
(iYS1720)). Nodes are metabolites (per compartment); two metabolites are linked when they take
part in the same reaction. Reactions with more than `max_reaction_size` metabolites (biomass and
other lumped pseudo-reactions) are left out: they would add cliques that are no chemistry.

Node features: compartment (one-hot), log(1 + atom count) of C, H, N, O, P, S from the formula,
and the charge, standardised; plus a learned embedding per node (`embedding` > 0; transductive).

Task: link reconstruction. A fixed fraction of the undirected edges (`val_fraction`, chosen by
`split_seed`) is held out with as many sampled non-edges; the encoder only sees training edges.
Encoder: `layers` GCN layers (torch-geometric `GCNConv`) to a Gaussian posterior (mu, log
sigma) per node; decoder: sigmoid(z_u . z_v). Loss: binary cross-entropy on a batch of training
edges and as many uniformly drawn node pairs (negatives), plus the KL term / N.
Metrics: ROC AUC and average precision on the held-out edges vs the held-out non-edges.
Baseline: degree-based link prediction (preferential attachment: score = deg(u) * deg(v) on the
training graph). `sample(model, n)` draws a new graph from the prior.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from astrobio_models._common import options

NAME = "graph-vae"
BUILTIN = ("textbook", "iJO1366", "salmonella")
ELEMENTS = ("C", "H", "N", "O", "P", "S")
DEFAULTS: dict[str, Any] = {
    "hidden": 64,
    "latent": 32,
    "layers": 2,
    "embedding": 32,
    "network": "iJO1366",
    "max_reaction_size": 10,
    "val_fraction": 0.1,
    "split_seed": 0,
    "grad_checkpointing": False,
}


def factory(config: dict[str, Any] | None = None) -> GraphVAEPlugin:
    return GraphVAEPlugin(options(NAME, DEFAULTS, config))


def load_network(data: str) -> Any:
    import logging

    import cobra

    from astrobio_cli.errors import UserError

    logging.getLogger("cobra").setLevel(logging.ERROR)
    name = data.removeprefix("cobra:")
    try:
        if name in BUILTIN:
            return cobra.io.load_model(name)
        path = Path(data)
        if path.suffix.lower() == ".json":
            return cobra.io.load_json_model(str(path))
        return cobra.io.read_sbml_model(str(path))
    except Exception as exc:
        raise UserError(f"cannot read metabolic network {data}: {exc}") from None


def network_graph(model: Any, max_reaction_size: int) -> dict[str, Any]:
    """Node features (N, F) float64 and undirected edges (E, 2) with u < v, from a cobra model."""
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


class GraphVAEPlugin:
    name = NAME
    data_kind = "metabolic-network"
    train_defaults = {"lr": 1e-2, "batch_size": 1024, "steps": 300, "warmup": 10}
    smoke_config = {"network": "textbook", "hidden": 16, "latent": 8, "embedding": 8}
    primary_metric = ("auc", "higher")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False):
        from astrobio_cli.training.plugin import Datasets

        c = self.config
        source = str(data) if data is not None else c["network"]
        g = network_graph(load_network(source), c["max_reaction_size"])
        n, edges = len(g["x"]), g["edges"]
        rng = np.random.default_rng(c["split_seed"])
        perm = rng.permutation(len(edges))
        n_val = max(1, round(len(edges) * c["val_fraction"]))
        val_pos, train_pos = edges[perm[:n_val]], edges[perm[n_val:]]
        existing = {(int(u), int(v)) for u, v in edges}
        neg: list[tuple[int, int]] = []
        while len(neg) < n_val:
            u, v = sorted(rng.integers(0, n, size=2).tolist())
            if u != v and (u, v) not in existing:
                neg.append((u, v))
                existing.add((u, v))
        train_t = torch.tensor(train_pos, dtype=torch.long)
        ctx = {
            "x": torch.tensor(g["x"], dtype=torch.float32),
            "edge_index": torch.cat([train_t.T, train_t.T.flip(0)], 1),  # both directions
            "train_pos": train_t,
            "val_pos": torch.tensor(val_pos, dtype=torch.long),
            "val_neg": torch.tensor(np.array(neg), dtype=torch.long),
            "num_nodes": n,
        }
        provenance = {
            "network": source,
            "nodes": n,
            "edges": len(edges),
            "train_edges": len(train_pos),
            "val_edges": n_val,
            "max_reaction_size": c["max_reaction_size"],
        }
        return Datasets(
            train=EdgeItems(train_t),
            val=EdgeItems(ctx["val_pos"]),
            provenance=provenance,
            context=ctx,
        )

    def build(self, datasets):
        c = self.config
        ctx = datasets.context
        return GraphVAE(
            ctx["x"].shape[1],
            ctx["num_nodes"],
            c["hidden"],
            c["latent"],
            c["layers"],
            c["embedding"],
        )

    def loss(self, model, batch, datasets):
        """batch: (B, 2) training edges; as many uniform node pairs serve as negatives."""
        ctx = datasets.context
        device = batch.device
        mu, logstd = model(ctx["x"].to(device), ctx["edge_index"].to(device))
        z = mu + torch.randn_like(mu) * logstd.exp() if model.training else mu
        neg = torch.randint(0, ctx["num_nodes"], batch.shape, device=device)
        pos_logit = (z[batch[:, 0]] * z[batch[:, 1]]).sum(-1)
        neg_logit = (z[neg[:, 0]] * z[neg[:, 1]]).sum(-1)
        bce = nn.functional.binary_cross_entropy_with_logits
        recon = bce(pos_logit, torch.ones_like(pos_logit)) + bce(
            neg_logit, torch.zeros_like(neg_logit)
        )
        kl = -0.5 * torch.mean(torch.sum(1 + 2 * logstd - mu**2 - logstd.exp() ** 2, dim=1))
        return recon + kl / ctx["num_nodes"]

    def _scores(self, scores_fn, ctx) -> dict[str, float]:
        from sklearn.metrics import average_precision_score, roc_auc_score

        pos, neg = scores_fn(ctx["val_pos"]), scores_fn(ctx["val_neg"])
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        s = np.r_[pos, neg]
        return {"auc": float(roc_auc_score(y, s)), "ap": float(average_precision_score(y, s))}

    def embed(self, model, datasets) -> torch.Tensor:
        ctx = datasets.context
        device = next(model.parameters()).device
        mu, _ = model(ctx["x"].to(device), ctx["edge_index"].to(device))
        return mu.float().cpu()

    def evaluate(self, model, datasets):
        z = self.embed(model, datasets)
        return self._scores(lambda e: (z[e[:, 0]] * z[e[:, 1]]).sum(-1).numpy(), datasets.context)

    def baseline(self, datasets):
        ctx = datasets.context
        deg = torch.bincount(ctx["edge_index"][0], minlength=ctx["num_nodes"]).double()
        return {"degree": self._scores(lambda e: (deg[e[:, 0]] * deg[e[:, 1]]).numpy(), ctx)}

    def sample(self, model, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """A new graph of `n` nodes from the prior: z ~ N(0, I), edge (u, v) ~ Bernoulli(sigmoid(
        z_u . z_v)). Returns its undirected edges (2, E) with u < v."""
        z = torch.randn(n, model.latent, generator=generator)
        p = torch.sigmoid(z @ z.T)
        keep = torch.rand(n, n, generator=generator) < p
        return torch.triu(keep, diagonal=1).nonzero().T


class EdgeItems:
    def __init__(self, edges: torch.Tensor) -> None:
        self.edges = edges

    def __len__(self) -> int:
        return len(self.edges)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.edges[i]


class GraphVAE(nn.Module):
    """GCN encoder to (mu, log sigma) per node; the decoder (inner product) has no parameters."""

    def __init__(self, in_dim, num_nodes, hidden, latent, layers, embedding) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.latent = latent
        self.embedding = nn.Embedding(num_nodes, embedding) if embedding else None
        dims = [in_dim + embedding] + [hidden] * (layers - 1)
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in itertools.pairwise(dims))
        self.mu = GCNConv(dims[-1], latent)
        self.logstd = GCNConv(dims[-1], latent)

    def forward(self, x, edge_index):  # x (N, F), edge_index (2, E) -> (N, L), (N, L)
        if self.embedding is not None:
            x = torch.cat([x, self.embedding.weight], 1)
        for conv in self.convs:
            x = torch.relu(conv(x, edge_index))
        return self.mu(x, edge_index), self.logstd(x, edge_index).clamp(max=10)
