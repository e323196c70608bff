"""Small helpers shared by the built-in model plugins (no torch at import)."""

from __future__ import annotations

from typing import Any

from astrobio_cli.errors import UsageError


def options(model: str, defaults: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    """`defaults` updated with `given`; an unknown key or a value of the wrong type is an error."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise UsageError(
            f"model '{model}' has no option {', '.join(repr(u) for u in unknown)}; "
            f"its options are: {', '.join(sorted(defaults))}"
        )
    out = dict(defaults)
    for k, v in given.items():
        d = defaults[k]
        if d is not None and v is not None and not isinstance(v, type(d)):
            if isinstance(d, float) and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            elif isinstance(d, tuple | list) and isinstance(v, tuple | list):
                v = type(d)(v)
            else:
                raise UsageError(
                    f"model '{model}' option '{k}' = {v!r} should be a {type(d).__name__}"
                )
        out[k] = v
    return out


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic train/val split of range(n) (the same for training and `astrobio eval`)."""
    import numpy as np

    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * val_fraction))
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


def regression_metrics(pred, true) -> dict[str, float]:
    """RMSE, MAE and R^2 (float64) of predictions against truth, both (N, ...) arrays."""
    import numpy as np

    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    err = p - t
    ss_res = float((err**2).sum())
    ss_tot = float(((t - t.mean(axis=0)) ** 2).sum())
    return {
        "rmse": float(np.sqrt((err**2).mean())),
        "mae": float(np.abs(err).mean()),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
    }
