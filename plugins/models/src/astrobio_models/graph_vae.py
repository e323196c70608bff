"""`graph-vae`: a variational graph auto-encoder (Kipf & Welling 2016) over metabolic networks.

Data: a genome-scale metabolic model (SBML `.xml`/`.sbml`, cobra `.json`, or the name of a model
cobra ships offline: `textbook` (E. coli core), `iJO1366` (E. coli, default), `salmonella`
(iYS1720)), read by the core (`astrobio_cli.data.networks.read_metabolic_network`; its source,
sha256 and cobra version go into the run card as `network_source`). Nodes are metabolites (per
compartment); two metabolites are linked when they take part in the same reaction. Reactions with more than `max_reaction_size` metabolites (biomass and
other lumped pseudo-reactions) are left out: they would add cliques that are no chemistry.

Node features: compartment (one-hot), log(1 + atom count) of C, H, N, O, P, S from the formula,
and the charge, standardised; the standardised log(1 + degree) in the graph the encoder sees; plus
a learned embedding per node (`embedding` > 0; transductive).

Task: link reconstruction. A fixed fraction of the undirected edges (`val_fraction`, chosen by
`split_seed`) is held out with as many sampled non-edges; the encoder only sees training edges.
Encoder: `layers` graph convolutions (`conv`: torch-geometric `SAGEConv` or `GCNConv`, each with a
linear skip) to a Gaussian posterior (mu, log sigma) per node. Decoder (`decoder`): "inner" is
the VGAE's sigmoid(z_u . z_v); "ncn" (default) adds a neural common-neighbour term (after Wang et
al. 2023, "Neural common neighbor"): z_u . z_v + MLP([z_u * z_v, sum over the common neighbours
w of u and v of phi(z_w, log deg w)]), so it can express (and weight) neighbourhood overlap as
Adamic-Adar and resource allocation do. Loss: binary cross-entropy on a batch of training edges
and as many uniformly drawn node pairs u != v (negatives), plus `inner_weight` x the same loss
of the inner-product decoder alone (it keeps the generative part a VGAE), plus the KL term / N.
With `mask_targets`, each step's batch of edges is removed from the graph the encoder and the
common-neighbour term see, as the held-out edges are at evaluation (without it, the model learns
to find an edge in its own input and scores held-out edges worse).
Metrics: ROC AUC and average precision on the held-out edges vs the held-out non-edges.
Baselines (`link_baselines`, all on the training graph only; the held-out edges never enter it):
degree product (preferential attachment), common neighbours, Jaccard, Adamic-Adar, resource
allocation, and a spectral embedding (top-k eigenvectors of the normalised adjacency, k chosen
on edges held out of the training graph with the run seed; score = dot product).
`plot` draws their ROC and precision-recall curves beside the model's.
`sample(model, n)` draws a new graph from the prior through the inner-product decoder.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from astrobio_cli.data.networks import MetabolicNetwork, read_metabolic_network
from astrobio_models._common import options
from astrobio_models.link_baselines import auc_ap, link_scores

NAME = "graph-vae"
ELEMENTS = ("C", "H", "N", "O", "P", "S")
DEFAULTS: dict[str, Any] = {
    "hidden": 64,
    "latent": 32,
    "layers": 2,
    "embedding": 32,
    "conv": "sage",
    "decoder": "ncn",
    "mask_targets": True,
    "inner_weight": 1.0,
    "network": "iJO1366",
    "max_reaction_size": 10,
    "val_fraction": 0.1,
    "split_seed": 0,
    "grad_checkpointing": False,
}


CHOICES = {"conv": ("sage", "gcn"), "decoder": ("ncn", "inner")}


def factory(config: dict[str, Any] | None = None) -> GraphVAEPlugin:
    from astrobio_cli.errors import UsageError

    c = options(NAME, DEFAULTS, config)
    for key, allowed in CHOICES.items():
        if c[key] not in allowed:
            raise UsageError(
                f"model '{NAME}' option '{key}' = {c[key]!r} should be one of {', '.join(allowed)}"
            )
    return GraphVAEPlugin(c)


def network_graph(net: MetabolicNetwork, max_reaction_size: int) -> dict[str, Any]:
    """Node features (N, F) float64 and undirected edges (E, 2) with u < v, from a network read by
    the core (`astrobio_cli.data.networks.read_metabolic_network`)."""
    mets = net.metabolites
    index = net.metabolite_index()
    pairs: set[tuple[int, int]] = set()
    for r in net.reactions:
        ids = sorted(index[m] for m in r.stoichiometry)
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
    train_defaults = {"lr": 1e-2, "batch_size": 256, "steps": 300, "warmup": 10}
    smoke_config = {"network": "textbook", "hidden": 16, "latent": 8, "embedding": 8}
    primary_metric = ("auc", "higher")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def make_datasets(self, data: Path | None, *, seed: int, smoke: bool = False):
        from astrobio_cli.training.plugin import Datasets

        c = self.config
        source = str(data) if data is not None else c["network"]
        net = read_metabolic_network(source)
        g = network_graph(net, c["max_reaction_size"])
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
            "network_source": net.provenance(),
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
            seed=seed,
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
            conv=c["conv"],
            decoder=c["decoder"],
        )

    def loss(self, model, batch, datasets):
        """batch: (B, 2) training edges; as many uniform node pairs (u != v) serve as negatives.
        With `mask_targets`, the batch's edges are taken out of the graph the encoder and the
        common-neighbour decoder see for this step, as held-out edges are at evaluation."""
        ctx = datasets.context
        device = batch.device
        n = ctx["num_nodes"]
        edge_index = ctx["edge_index"].to(device)
        if self.config["mask_targets"] and model.training:
            edge_index = drop_edges(edge_index, batch, n)
        u = torch.randint(0, n, (len(batch),), device=device)
        v = (u + torch.randint(1, n, (len(batch),), device=device)) % n
        pairs = torch.cat([batch, torch.stack([u, v], 1)])
        y = torch.cat([torch.ones(len(batch)), torch.zeros(len(batch))]).to(device)
        logit, inner, mu, logstd = model(ctx["x"].to(device), edge_index, pairs)
        bce = nn.functional.binary_cross_entropy_with_logits
        recon = bce(logit, y)
        if self.config["decoder"] != "inner":  # keep the generative (inner-product) decoder trained
            recon = recon + self.config["inner_weight"] * bce(inner, y)
        kl = -0.5 * torch.mean(torch.sum(1 + 2 * logstd - mu**2 - logstd.exp() ** 2, dim=1))
        return recon + kl / n

    def embed(self, model, datasets) -> torch.Tensor:
        ctx = datasets.context
        device = next(model.parameters()).device
        mu, _ = model(ctx["x"].to(device), ctx["edge_index"].to(device))
        return mu.float().cpu()

    def predict(self, model, datasets, pairs: torch.Tensor) -> np.ndarray:
        """Link logits of node pairs (P, 2), given the training graph (model in eval mode)."""
        ctx = datasets.context
        device = next(model.parameters()).device
        logit, *_ = model(ctx["x"].to(device), ctx["edge_index"].to(device), pairs.to(device))
        return logit.detach().double().cpu().numpy()

    def _model_scores(self, model, datasets) -> tuple[np.ndarray, np.ndarray]:
        ctx = datasets.context
        s = self.predict(model, datasets, torch.cat([ctx["val_pos"], ctx["val_neg"]]))
        return s[: len(ctx["val_pos"])], s[len(ctx["val_pos"]) :]

    def evaluate(self, model, datasets):
        return auc_ap(*self._model_scores(model, datasets))

    def _baseline_scores(self, datasets) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        ctx = datasets.context
        pos, neg = ctx["val_pos"].numpy(), ctx["val_neg"].numpy()
        scores, _ = link_scores(
            ctx["train_pos"].numpy(), ctx["num_nodes"], np.r_[pos, neg], seed=datasets.seed
        )
        return {k: (s[: len(pos)], s[len(pos) :]) for k, s in scores.items()}

    def baseline(self, datasets):
        return {k: auc_ap(p, q) for k, (p, q) in self._baseline_scores(datasets).items()}

    def plot(self, model, datasets, path: Path) -> None:
        """ROC and precision-recall curves of the model and every baseline on the held-out
        edges vs the held-out non-edges."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.metrics import precision_recall_curve, roc_curve

        ctx = datasets.context
        was_training = model.training
        model.eval()
        with torch.no_grad():
            curves = {"model": self._model_scores(model, datasets)}
        model.train(was_training)
        curves.update(self._baseline_scores(datasets))
        fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(12, 5))
        for name, (pos, neg) in curves.items():
            y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
            s = np.r_[pos, neg]
            m = auc_ap(pos, neg)
            width = 2.2 if name == "model" else 1.2
            fpr, tpr, _ = roc_curve(y, s)
            roc_ax.plot(fpr, tpr, lw=width, label=f"{name} (AUC {m['auc']:.3f})")
            prec, rec, _ = precision_recall_curve(y, s)
            pr_ax.plot(rec, prec, lw=width, label=f"{name} (AP {m['ap']:.3f})")
        roc_ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
        roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
        for ax in (roc_ax, pr_ax):
            ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8)
            ax.grid(alpha=0.3)
        p = datasets.provenance
        fig.suptitle(
            f"{NAME} on {p.get('network')}: {len(ctx['val_pos'])} held-out edges vs "
            f"{len(ctx['val_neg'])} non-edges (baselines on the training graph)"
        )
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def sample(self, model, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """A new graph of `n` nodes from the prior: z ~ N(0, I), edge (u, v) ~ Bernoulli(sigmoid(
        z_u . z_v)) (the generative inner-product decoder; the common-neighbour term needs an
        observed graph). Returns its undirected edges (2, E) with u < v."""
        z = torch.randn(n, model.latent, generator=generator)
        p = torch.sigmoid(z @ z.T)
        keep = torch.rand(n, n, generator=generator) < p
        return torch.triu(keep, diagonal=1).nonzero().T


def drop_edges(edge_index: torch.Tensor, pairs: torch.Tensor, n: int) -> torch.Tensor:
    """edge_index (2, E) without the undirected edges `pairs` (B, 2), in either direction."""
    key = edge_index[0] * n + edge_index[1]
    drop = torch.cat([pairs[:, 0] * n + pairs[:, 1], pairs[:, 1] * n + pairs[:, 0]])
    return edge_index[:, ~torch.isin(key, drop)]


def common_neighbour_pool(edge_index: torch.Tensor, pairs: torch.Tensor, h: torch.Tensor, n: int):
    """(P, H): for each pair (u, v), the sum of h[w] over the common neighbours w of u and v in
    the graph edge_index (2, E) (both directions listed)."""
    dtype = torch.float64 if h.dtype == torch.float64 else torch.float32  # no sparse half mm
    ones = torch.ones(edge_index.shape[1], dtype=dtype, device=h.device)
    adj = torch.sparse_coo_tensor(edge_index, ones, (n, n), check_invariants=False).coalesce()
    common = (adj.index_select(0, pairs[:, 0]) * adj.index_select(0, pairs[:, 1])).coalesce()
    with torch.autocast(h.device.type, enabled=False):  # autocast would cast h alone
        return torch.sparse.mm(common, h.to(dtype))


class EdgeItems:
    def __init__(self, edges: torch.Tensor) -> None:
        self.edges = edges

    def __len__(self) -> int:
        return len(self.edges)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.edges[i]


def _mlp(a: int, hidden: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, hidden), nn.ReLU(), nn.Linear(hidden, b))


class GraphVAE(nn.Module):
    """Encoder: `layers` graph convolutions with linear skips over [features, log degree,
    learned embedding] to (mu, log sigma) per node. Decoder: z_u . z_v ("inner"), plus for
    "ncn" an MLP on [z_u * z_v, sum over common neighbours w of phi(z_w, log deg w)]."""

    def __init__(
        self, in_dim, num_nodes, hidden, latent, layers, embedding, conv="gcn", decoder="ncn"
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv, SAGEConv

        Conv = {"gcn": GCNConv, "sage": SAGEConv}[conv]
        self.latent = latent
        self.num_nodes = num_nodes
        self.decoder = decoder
        self.embedding = nn.Embedding(num_nodes, embedding) if embedding else None
        dims = [in_dim + 1 + embedding] + [hidden] * (layers - 1)
        self.convs = nn.ModuleList(Conv(a, b) for a, b in itertools.pairwise(dims))
        self.skips = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.mu = Conv(dims[-1], latent)
        self.logstd = Conv(dims[-1], latent)
        if decoder == "ncn":
            self.node_fn = _mlp(latent + 1, hidden, hidden)
            self.pair_fn = _mlp(latent + hidden, hidden, 1)

    @staticmethod
    def log_degree(edge_index, n):
        d = torch.log1p(torch.bincount(edge_index[0], minlength=n).float())
        return ((d - d.mean()) / (d.std() + 1e-6)).unsqueeze(1)

    def forward(self, x, edge_index, pairs=None):
        """x (N, F), edge_index (2, E). Without pairs: (mu, logstd), each (N, L). With pairs
        (P, 2): (logit, inner logit, mu, logstd); z = mu + noise while training, else mu."""
        n = x.shape[0]
        logdeg = self.log_degree(edge_index, n)
        parts = [x, logdeg] + ([self.embedding.weight] if self.embedding is not None else [])
        h = torch.cat(parts, 1)
        for conv, skip in zip(self.convs, self.skips, strict=True):
            h = torch.relu(conv(h, edge_index) + skip(h))
        mu, logstd = self.mu(h, edge_index), self.logstd(h, edge_index).clamp(max=10)
        if pairs is None:
            return mu, logstd
        z = mu + torch.randn_like(mu) * logstd.exp() if self.training else mu
        zz = z[pairs[:, 0]] * z[pairs[:, 1]]
        inner = zz.sum(-1)
        logit = inner
        if self.decoder == "ncn":
            pooled = common_neighbour_pool(
                edge_index, pairs, self.node_fn(torch.cat([z, logdeg], 1)), n
            )
            logit = inner + self.pair_fn(torch.cat([zz, pooled], 1)).squeeze(-1)
        return logit, inner, mu, logstd
