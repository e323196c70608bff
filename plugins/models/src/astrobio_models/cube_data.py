"""What the climate-cube models (`cube-unet`, `datacube-cnn`) do with the datasets they receive.

They never open a file: `astrobio_cli.data.climate.open_climate_cube` (the core data layer) reads
a raw `synthetic-climate` ensemble or an `astrobio preprocess` store, splits it (a store made
with `--split train` is split exactly as its stats were: see docs/data.md) and hands out items
of normalised float32 variables. Here those items become the models' tensors, in the process
that reads them (a DataLoader worker when there is one):

    x (9, Z, Y, X)   stellar_flux, rotation_period, obliquity, greenhouse_factor,
                     surface_albedo (normalised scalars over the grid), land_mask, rsdt
                     (normalised), log(p / p_surface) scaled to [-1, 0] and sin(latitude)
    y (2, Z, Y, X)   ta, hus, normalised per variable with the train split's stats
    land, rsdt, albedo, greenhouse   physical values for the energy-balance term
    whole            False for a tile of a patched store

Every input and target is normalised once, by the data layer, per variable over all levels and
grid points (`stats.json` for a store, the train split's stats for a raw file). The stats, the
schema, the split and the grid travel in `Datasets.provenance`, which the training loop writes
into each checkpoint (`data_provenance`), so serving and evaluation need no second pass.

`CubeContext` holds the per-run constants; the whole cube as tensors (`x`, `y`, ... over every
item of the file, in file order) is built on first access only (the baselines and plots of
`astrobio eval` use it); training and `evaluate` stream items and keep memory flat.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrobio_cli.data.climate import MODEL_INPUTS, MODEL_TARGETS, SCALARS

VARIABLES = (*MODEL_INPUTS, *MODEL_TARGETS)
PHYSICAL = ("land_mask", "rsdt", "surface_albedo", "greenhouse_factor")


def default_data_path() -> Path:
    from astrobio_data_sources.synthetic_climate import ensure_default

    return ensure_default()


def open_cube(data: Path | None, config: dict[str, Any], provenance: dict | None = None):
    """The cube at `data` (default: the generated default ensemble), split by the model's
    `val_fraction` / `split_seed` unless the store carries its own split. With a checkpoint's
    `provenance`: its stats and split (nothing recomputed from the training samples)."""
    from astrobio_cli.data.climate import open_climate_cube
    from astrobio_cli.data.splits import Splits
    from astrobio_models._common import split_indices

    path = data if data is not None else default_data_path()
    vf, seed = float(config["val_fraction"]), int(config["split_seed"])

    def split(n: int) -> Splits:  # the models' own split (the same as before the data layer)
        train, val = split_indices(n, vf, seed)
        return Splits(n, seed, (1 - vf, vf, 0.0), tuple(train), tuple(val), (), str(path))

    saved = (provenance or {}).get("split") or {}
    if provenance and provenance.get("stats") and isinstance(saved.get("train"), list):
        n = int(saved["n"])
        parts = tuple(tuple(int(i) for i in saved.get(k) or ()) for k in ("train", "val", "test"))
        splits = Splits(
            n, int(saved.get("seed", -1)), tuple(len(p) / n for p in parts), *parts, str(path)
        )
        return open_climate_cube(
            path, variables=VARIABLES, splits=splits, stats=provenance["stats"]
        )
    return open_climate_cube(path, variables=VARIABLES, split_fn=split)


def area_weights(lat: Any) -> np.ndarray:
    """(Y,) cell areas of latitude rows (degrees), summing to 1: edges half-way between rows,
    the outer ones half a step beyond, clipped to the poles (exact for a cell-centred grid)."""
    lat = np.asarray(lat, dtype=np.float64)
    if lat.size == 1:
        return np.ones(1)
    mid = (lat[1:] + lat[:-1]) / 2
    edges = np.concatenate([[2 * lat[0] - mid[0]], mid, [2 * lat[-1] - mid[-1]]])
    edges = np.deg2rad(np.clip(edges, -90.0, 90.0))
    w = np.abs(np.diff(np.sin(edges)))
    return w / w.sum()


class UNetItem:
    """Reader item (normalised variables) -> the models' tensors; picklable, runs in workers."""

    def __init__(self, stats: Any, plev: Any) -> None:
        plev = np.asarray(plev, dtype=np.float64)
        logp = np.log(plev / plev[0])
        self.logp = torch.tensor(logp / max(1e-12, -logp[-1]), dtype=torch.float32)
        self.scale = {
            n: (float(stats.mean[stats.names.index(n)]), float(stats.std[stats.names.index(n)]))
            for n in PHYSICAL
        }

    def phys(self, name: str, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.scale[name]
        return x.double() * std + mean

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        land = item["land_mask"]
        shape = (self.logp.numel(), *land.shape)  # (Z, Y, X)
        lat = torch.as_tensor(item["lat"], dtype=torch.float64)
        chans = [item[s].float().expand(shape) for s in SCALARS]
        chans.append(land.expand(shape))
        chans.append(item["rsdt"][None, :, None].expand(shape))
        chans.append(self.logp[:, None, None].expand(shape))
        chans.append(torch.sin(torch.deg2rad(lat)).float()[None, :, None].expand(shape))
        return {
            "x": torch.stack(chans),
            "y": torch.stack([item["ta"], item["hus"]]),
            "land": self.phys("land_mask", land).float(),
            "rsdt": self.phys("rsdt", item["rsdt"]).float(),
            "albedo": self.phys("surface_albedo", item["surface_albedo"]).float(),
            "greenhouse": self.phys("greenhouse_factor", item["greenhouse_factor"]).float(),
            "whole": bool(item["whole"]),
            "index": int(item["index"]),
        }


class CubeItems:
    """One split as the models see it: item i -> dict of tensors; `idx` are the file's item
    indices (rows of the lazy context arrays), `ctx` the run's context."""

    def __init__(self, dataset: Any, ctx: CubeContext) -> None:
        self.dataset, self.ctx = dataset, ctx
        self.idx = [int(i) for i in dataset.idx]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.dataset[i]

    def batches(self, size: int = 16):
        """Default-collated batches in order (no augmentation)."""
        from torch.utils.data import default_collate

        ds = self.dataset
        for s in range(0, len(ds), size):
            items = [ds.raw_item(k, augment=False) for k in range(s, min(s + size, len(ds)))]
            tf = ds.transform
            yield default_collate([tf(_tensors(it)) if tf else _tensors(it) for it in items])


def _tensors(item: dict[str, Any]) -> dict[str, Any]:
    return {
        k: torch.from_numpy(np.require(v, requirements="C")) if isinstance(v, np.ndarray) else v
        for k, v in item.items()
    }


class CubeContext(dict):
    """Per-run constants (stats, grid, target scales, area weights, `tiled`), and on first
    access to one of `LAZY` (or `extra_keys`) the whole file as tensors, one row per item in
    file order; `extra(ctx) -> dict` then adds the model's own derived arrays."""

    LAZY = ("x", "y", "land", "rsdt", "albedo", "greenhouse", "scalars", "item_lat")

    def __init__(
        self,
        cube: Any,
        transform: Any,
        extra: Any = None,
        extra_keys: tuple[str, ...] = (),
        **eager: Any,
    ) -> None:
        super().__init__(**eager)
        self._cube, self._transform = cube, transform
        self._extra, self._extra_keys = extra, tuple(extra_keys)

    def __missing__(self, key: str) -> Any:
        if key not in self.LAZY and key not in self._extra_keys:
            raise KeyError(key)
        self.update(materialise(self._cube, self._transform))
        if self._extra is not None:
            self.update(self._extra(self))
        return dict.__getitem__(self, key)

    def __reduce__(self):  # pickles as a plain dict of what is built so far
        return (dict, (dict(self),))


def materialise(cube: Any, transform: UNetItem) -> dict[str, torch.Tensor]:
    """Every item of the file through `transform`, stacked (what the baselines fit on)."""
    cols: dict[str, list[torch.Tensor]] = {k: [] for k in CubeContext.LAZY}
    for item in range(cube.n_items):
        raw = _tensors(cube.read(item, VARIABLES))
        t = transform(raw)
        for k in ("x", "y", "land", "rsdt", "albedo", "greenhouse"):
            cols[k].append(t[k])
        cols["scalars"].append(torch.stack([raw[s].float() for s in SCALARS]))
        cols["item_lat"].append(torch.as_tensor(raw["lat"], dtype=torch.float64))
    return {k: torch.stack(v) for k, v in cols.items()}


def context(
    cube: Any,
    transform: UNetItem,
    extra: Any = None,
    extra_keys: tuple[str, ...] = (),
    **more: Any,
) -> CubeContext:
    st = cube.stats
    i_ta, i_hus = st.names.index("ta"), st.names.index("hus")
    shape = (2, 1, 1, 1)
    lat = cube.lat if cube.lat.ndim == 1 else cube.lat[0]
    return CubeContext(
        cube,
        transform,
        extra,
        extra_keys,
        y_mean=torch.tensor([st.mean[i_ta], st.mean[i_hus]], dtype=torch.float32).view(shape),
        y_std=torch.tensor([st.std[i_ta], st.std[i_hus]], dtype=torch.float32).view(shape),
        area=torch.tensor(area_weights(lat), dtype=torch.float32),
        tiled=bool(cube.tiled),
        in_channels=len(SCALARS) + 4,  # + land_mask, rsdt, log p, sin lat
        out_channels=len(MODEL_TARGETS),
        grid=(int(cube.plev.size), *(int(n) for n in cube.grid_shape)),  # (Z, Y, X) of an item
        stats=st,
        plev=torch.tensor(cube.plev),
        lat=torch.tensor(lat),
        **more,
    )


class RegressionAccumulator:
    """Streaming `_common.regression_metrics` (RMSE and R^2 with the per-element mean over
    samples) of (N, ...) predictions against truth, fed batch by batch, float64."""

    def __init__(self) -> None:
        self.n = 0
        self.sq = 0.0
        self.t_sum: torch.Tensor | None = None
        self.t_sq: torch.Tensor | None = None

    def update(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        p, t = pred.detach().double(), true.detach().double()
        self.sq += float(((p - t) ** 2).sum())
        s, q = t.sum(0), (t**2).sum(0)
        self.t_sum = s if self.t_sum is None else self.t_sum + s
        self.t_sq = q if self.t_sq is None else self.t_sq + q
        self.n += t.shape[0]

    def result(self) -> dict[str, float]:
        if self.n == 0 or self.t_sum is None or self.t_sq is None:
            return {"rmse": float("nan"), "r2": float("nan")}
        count = self.n * self.t_sum.numel()
        ss_tot = float((self.t_sq - self.t_sum**2 / self.n).clamp_min(0).sum())
        return {
            "rmse": math.sqrt(self.sq / count),
            "r2": 1.0 - self.sq / ss_tot if ss_tot > 0 else float("nan"),
        }


__all__ = [
    "VARIABLES",
    "CubeContext",
    "CubeItems",
    "RegressionAccumulator",
    "UNetItem",
    "area_weights",
    "context",
    "default_data_path",
    "materialise",
    "open_cube",
]
