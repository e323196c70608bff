"""Cheap tabular baselines for models with scalar targets: ridge, quadratic ridge, boosted trees.

Every baseline is fitted on the training rows only and predicts the held-out rows; the model
plugins score the predictions with the same metric function as their network.

ridge            inputs standardised with the training rows' mean and std, then ridge regression
                 (intercept unpenalised) with one alpha per target chosen from `ALPHAS` by
                 leave-one-out cross-validation on the training rows (sklearn `RidgeCV`, whose
                 efficient LOO is exact for ridge).
ridge-quadratic  the same ridge on the standardised inputs plus degree-2 terms (squares and
                 pairwise products, all standardised again) either of all inputs (when there
                 are at most `QUADRATIC_FULL_MAX`) or of their leading 4, 8 or 16 principal
                 components (PCA fitted on the training rows); which one is chosen by the
                 ridge's leave-one-out error on the training rows, like alpha.
boosted-trees    one sklearn `HistGradientBoostingRegressor` per target (`GBT` sizes, early
                 stopping on a split of the training rows drawn from the seed), seeded with the
                 run seed (`Datasets.seed`).

sklearn's OpenMP threads are limited to torch's thread count, so a run with `ASTROBIO_THREADS`
(or the tests, at one thread) does not spread over the whole machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ALPHAS = np.logspace(-3, 5, 33)
QUADRATIC_FULL_MAX = 40
QUADRATIC_PCA = (4, 8, 16)
GBT: dict[str, Any] = {
    "max_iter": 1000,
    "learning_rate": 0.05,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 20,
}
NAMES = ("ridge", "ridge-quadratic", "boosted-trees")


def ridge(alphas: np.ndarray = ALPHAS):
    """Standardise, then ridge with a per-target alpha chosen by LOO on the training rows."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, alpha_per_target=True))


class QuadraticFeatures:
    """x -> [x, the degree-2 monomials (squares and pairwise products) of z], where z is x or,
    with `components`, x's leading principal components (PCA fitted in `fit`). x is expected
    standardised. So the linear part always sees every input."""

    def __init__(self, components: int | None = None) -> None:
        self.components = components
        self.pca: Any = None

    def fit(self, x: np.ndarray, y: Any = None) -> QuadraticFeatures:
        if self.components is not None:
            from sklearn.decomposition import PCA

            self.pca = PCA(n_components=self.components, svd_solver="full").fit(x)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = x if self.pca is None else self.pca.transform(x)
        i, j = np.triu_indices(z.shape[1])
        return np.hstack([x, z[:, i] * z[:, j]])

    def fit_transform(self, x: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(x).transform(x)


def _quadratic_pipeline(components: int | None, alphas: np.ndarray):
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        QuadraticFeatures(components),
        StandardScaler(),
        RidgeCV(alphas=alphas, alpha_per_target=True),
    )


class QuadraticRidge:
    """Ridge on the standardised inputs and degree-2 terms of them or of their leading
    principal components (`QuadraticFeatures`); which (all inputs when there are at most
    `QUADRATIC_FULL_MAX`, or PCA to each of `QUADRATIC_PCA` components) is chosen by the
    ridge's leave-one-out error on the training rows, like alpha."""

    def __init__(self, alphas: np.ndarray = ALPHAS) -> None:
        self.alphas = alphas
        self.model: Any = None
        self.components: int | None = None

    def candidates(self, n_inputs: int) -> list[int | None]:
        out: list[int | None] = [k for k in QUADRATIC_PCA if k < n_inputs]
        if n_inputs <= QUADRATIC_FULL_MAX:
            out.append(None)
        return out

    def fit(self, x: np.ndarray, y: np.ndarray) -> QuadraticRidge:
        best = None
        for k in self.candidates(x.shape[1]):
            m = _quadratic_pipeline(k, self.alphas).fit(x, y)
            loo = float(np.mean(m[-1].best_score_))  # negative mean squared LOO error
            if best is None or loo > best[0]:
                best = (loo, k, m)
        assert best is not None
        _, self.components, self.model = best
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)


class BoostedTrees:
    """One `HistGradientBoostingRegressor` per target column (deterministic for a seed)."""

    def __init__(self, seed: int, **sizes: Any) -> None:
        self.seed, self.sizes = int(seed), {**GBT, **sizes}
        self.models: list[Any] = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> BoostedTrees:
        from sklearn.ensemble import HistGradientBoostingRegressor

        y = np.asarray(y).reshape(len(x), -1)
        self.models = [
            HistGradientBoostingRegressor(random_state=self.seed, **self.sizes).fit(x, y[:, j])
            for j in range(y.shape[1])
        ]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([m.predict(x) for m in self.models])


def _threads() -> int:
    try:
        import torch

        return max(1, torch.get_num_threads())
    except ImportError:  # pragma: no cover - torch is a dependency of every model
        return 1


def split_predict(
    x: np.ndarray, y: np.ndarray, train: list[int], val: list[int], seed: int
) -> dict[str, np.ndarray]:
    """The mean predictor and every baseline, fitted on the `train` rows of (x, y), predicting
    the `val` rows: {name: (n_val, targets)}."""
    preds = {"mean": np.repeat(y[train].mean(0, keepdims=True), len(val), 0)}
    preds.update(fit_predict(x[train], y[train], x[val], seed))
    return preds


def fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Each baseline (`NAMES`) fitted on (x_train, y_train); its (n_val, targets) predictions.

    Inputs and targets are used as float64; columns constant over the training rows, and
    repeats of an earlier column, are dropped first (they carry nothing new and only slow the
    quadratic expansion)."""
    from threadpoolctl import threadpool_limits

    x_train = np.asarray(x_train, dtype=np.float64)
    x_val = np.asarray(x_val, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=np.float64).reshape(len(x_train), -1)
    keep = np.flatnonzero(x_train.std(0) > 1e-12 * (1 + np.abs(x_train).max(0)))
    _, first = np.unique(x_train[:, keep], axis=1, return_index=True)
    keep = keep[np.sort(first)]
    x_train, x_val = x_train[:, keep], x_val[:, keep]
    out = {}
    with threadpool_limits(limits=_threads()):
        out["ridge"] = ridge().fit(x_train, y_train).predict(x_val)
        out["ridge-quadratic"] = QuadraticRidge().fit(x_train, y_train).predict(x_val)
        out["boosted-trees"] = BoostedTrees(seed).fit(x_train, y_train).predict(x_val)
    return {k: np.asarray(v, dtype=np.float64).reshape(len(x_val), -1) for k, v in out.items()}


def best_baseline(preds: dict[str, np.ndarray], true: np.ndarray) -> str:
    """The name of the predictions with the lowest RMSE against `true`."""
    return min(preds, key=lambda k: float(np.mean((np.asarray(preds[k]) - true) ** 2)))


def plot_pred_vs_true(
    path: Any,
    true: np.ndarray,
    model: np.ndarray,
    baseline: np.ndarray,
    baseline_name: str,
    names: tuple[str, ...],
    title: str,
) -> None:
    """One panel per target: predicted vs true on the held-out split, the model and a baseline
    (both (n, targets) arrays in the targets' units), with the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.4), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        t = true[:, j]
        for pred, label, colour in (
            (baseline[:, j], baseline_name, "tab:orange"),
            (model[:, j], "model", "tab:blue"),
        ):
            rmse = float(np.sqrt(np.mean((pred - t) ** 2)))
            ax.scatter(t, pred, s=4, alpha=0.5, color=colour, label=f"{label} (rmse {rmse:.3g})")
        lo, hi = float(t.min()), float(t.max())
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
