"""Training datasets: climate datacubes (NetCDF/Zarr) and exoplanet tables (Parquet).

`CubeDataset` — one sample of an ensemble datacube (e.g. `astrobio fetch synthetic-climate`)
as an (input, target) pair of float32 tensors::

    x: (C_in, lev, lat, lon)   one channel per input variable, in `input_channels` order
    y: (C_out, lev, lat, lon)  one channel per target variable, in `target_channels` order

Variables are broadcast onto the (lev, lat, lon) grid by their dimension names: a scalar per
sample (stellar_flux) fills the whole grid, a surface field (lat, lon) is repeated on every level,
a zonal field (lat,) over levels and longitudes. Every channel is normalised as (v - mean) / std
with the mean and standard deviation of that variable over the TRAIN split only (all its samples
and grid cells, NaNs ignored, population std; std 0 is taken as 1; computed by
`astrobio_cli.datacube.stats`, the native preprocessing), whatever split the dataset
serves, so validation and test data never leak into the normalisation. `dataset.stats` holds
them (JSON-able: store it in a checkpoint and pass it back as `stats=` to skip recomputing).

The file is opened lazily through xarray on first use, once per process: DataLoader workers each
open their own handle (HDF5 handles must not cross a fork). Only the samples asked for are read.

Two ways to iterate:
- map-style: `len(ds)`, `ds[k]` for k in range(len(ds)) (the k-th sample of the split); use it
  with your own sampler or batch order;
- `ds.shard(rank, world_size, shuffle=..., seed=..., epoch=...)`: an IterableDataset that splits
  the split across distributed ranks and then across DataLoader workers, so within an epoch
  every sample is yielded exactly once over all ranks and workers. Rank and world size default
  to torch.distributed's when it is initialised, else RANK/WORLD_SIZE from the environment
  (torchrun, accelerate launch), else 0 and 1. Do not hand the resulting DataLoader to
  `accelerator.prepare` (it would shard a second time); move batches to the device yourself.
  `even=True` cuts every rank to the same number of samples (at most world_size - 1 samples,
  different ones each epoch when shuffling, are skipped) so DDP ranks step in lockstep.

`ExoplanetTable` — rows of a Parquet table (e.g. `astrobio fetch nasa-exoplanet`) as float32
feature and target tensors, with missing values handled explicitly (see its docstring).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from astrobio_cli.data.climate import MODEL_INPUTS, MODEL_TARGETS, SAMPLE_DIM
from astrobio_cli.data.splits import SPLIT_NAMES, Splits, make_splits
from astrobio_cli.errors import UsageError

# The climate-cube variables are stated once, in astrobio_cli.data.climate (the schema).
CUBE_INPUTS = MODEL_INPUTS  # stellar_flux ... surface_albedo, land_mask, rsdt
CUBE_TARGETS = MODEL_TARGETS  # ta, hus
LEV_DIMS = ("plev", "lev", "level", "pressure")
LAT_DIMS = ("lat", "latitude")
LON_DIMS = ("lon", "longitude")


# -- statistics --------------------------------------------------------------------------------


def block_stats(values: np.ndarray, name: str):
    """`datacube.Stats` (count, mean, std, min, max; NaN ignored, float64) of one variable's block.

    Runs through the native preprocessing (`astrobio_cli.datacube`, Rust, or its NumPy twin
    when the `native` setting is false). The block (samples, *grid) is laid out as one variable
    with a flat grid, (samples, var=1, lev=1, lat=1, lon=cells).
    """
    import warnings

    from astrobio_cli import datacube

    v = np.ascontiguousarray(values)
    if v.dtype not in (np.float32, np.float64):
        v = v.astype(np.float64)
    v = v.reshape(v.shape[0], 1, 1, 1, -1)
    with warnings.catch_warnings():  # an all-NaN block is fine; an all-NaN variable is not
        warnings.simplefilter("ignore", datacube.AllNaNWarning)
        return datacube.stats(v, names=(name,))


def _stats_entry(st, name: str) -> dict[str, float]:
    count = int(st.count[0])
    if count == 0:
        raise UsageError(f"variable {name!r} has no finite values in the training split")
    std = float(st.std[0])
    return {
        "mean": float(st.mean[0]),
        "std": std if std > 0 else 1.0,
        "count": count,
        "min": float(st.min[0]),
        "max": float(st.max[0]),
    }


# -- the climate cube --------------------------------------------------------------------------


def _open_cube(path: Path):
    import xarray as xr

    try:
        if path.suffix == ".zarr" or path.is_dir():
            return xr.open_zarr(path, consolidated=None, chunks=None)
        return xr.open_dataset(path, engine="netcdf4", chunks=None, cache=False)
    except FileNotFoundError:
        raise UsageError(f"datacube {path} does not exist") from None
    except Exception as exc:
        raise UsageError(
            f"cannot read datacube {path} as NetCDF or Zarr ({type(exc).__name__}: {exc})"
        ) from None


def _pick(dims: Sequence[str], names: Sequence[str]) -> str | None:
    return next((d for d in dims if d in names), None)


class CubeDataset(Dataset):
    """(input, target) float32 tensors from an ensemble datacube; see the module docstring.

    path: a NetCDF file or Zarr store with a `sample` dimension.
    split: "train", "val" or "test"; the samples are `splits[split]`.
    splits: a `Splits`, or a path to a splits JSON file; default: `make_splits(n, seed)`.
    inputs, targets: variable names (channels, in this order).
    stats: {variable: {"mean", "std"}} to normalise with; default: computed on the train split.
    normalize: False yields raw physical values (stats are still computed and exposed).
    preload: read this split's variables into memory once per process (float32) instead of
        one sample at a time: for datasets that fit in RAM it makes an item ~10x cheaper.
    sample_dim: the dimension that indexes samples (`sample`; e.g. `time` for a reanalysis).
    level_dim: the level dimension (default: the first of plev, lev, level, pressure present).
    """

    def __init__(
        self,
        path: Path | str,
        split: str = "train",
        *,
        splits: Splits | Path | str | None = None,
        seed: int = 0,
        inputs: Sequence[str] = CUBE_INPUTS,
        targets: Sequence[str] = CUBE_TARGETS,
        stats: dict[str, dict[str, float]] | None = None,
        normalize: bool = True,
        preload: bool = False,
        sample_dim: str = SAMPLE_DIM,
        level_dim: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.preload = preload
        self.sample_dim = sample_dim
        self._arrays: dict[str, np.ndarray] = {}
        if split not in SPLIT_NAMES:
            raise UsageError(f"unknown split {split!r}: use one of {', '.join(SPLIT_NAMES)}")
        self.split = split
        self.input_channels = tuple(inputs)
        self.target_channels = tuple(targets)
        self.normalize = normalize
        self._ds = None
        self._pid = -1

        ds = self._dataset()
        if self.sample_dim not in ds.dims:
            raise UsageError(
                f"datacube {self.path} has no '{self.sample_dim}' dimension (dims: "
                f"{', '.join(map(str, ds.dims))}); CubeDataset reads ensembles such as "
                "`astrobio fetch synthetic-climate` writes, or pass sample_dim="
            )
        missing = [v for v in (*self.input_channels, *self.target_channels) if v not in ds]
        if missing:
            raise UsageError(
                f"datacube {self.path} has no variable(s) {', '.join(missing)}; it has "
                f"{', '.join(map(str, ds.data_vars))}"
            )
        self.n_samples = int(ds.sizes[self.sample_dim])
        if level_dim is not None and level_dim not in ds.dims:
            raise UsageError(f"datacube {self.path} has no level dimension {level_dim!r}")
        self._lev = level_dim or _pick(list(ds.dims), LEV_DIMS)
        self._lat = _pick(list(ds.dims), LAT_DIMS)
        self._lon = _pick(list(ds.dims), LON_DIMS)
        self.sample_shape = tuple(  # (lev, lat, lon); 1 where the cube lacks the dimension
            int(ds.sizes[d]) if d is not None else 1 for d in (self._lev, self._lat, self._lon)
        )
        for name in (*self.input_channels, *self.target_channels):
            extra = set(ds[name].dims) - {self.sample_dim, self._lev, self._lat, self._lon}
            if self.sample_dim not in ds[name].dims or extra:
                raise UsageError(
                    f"variable {name!r} in {self.path} has dims {ds[name].dims}; expected "
                    f"'{self.sample_dim}' and any of the level/lat/lon dims"
                )

        if isinstance(splits, (str, Path)):
            splits = Splits.load(splits)
        if splits is None:
            splits = make_splits(self.n_samples, seed, source=str(self.path))
        splits.check(self.n_samples)
        self.splits = splits
        self.indices = tuple(splits[split])
        if not self.indices:
            raise UsageError(f"the {split} split of {self.path} is empty; use more samples")

        names = (*self.input_channels, *self.target_channels)
        self.stats = dict(stats) if stats is not None else self.compute_stats(names)
        lacking = [n for n in names if n not in self.stats]
        if lacking:
            raise UsageError(f"stats given for CubeDataset lack variable(s) {', '.join(lacking)}")
        self._in_mean, self._in_std = self._vectors(self.input_channels)
        self._out_mean, self._out_std = self._vectors(self.target_channels)

    # -- file handle, one per process
    def _dataset(self):
        if self._ds is None or self._pid != os.getpid():
            self._ds = _open_cube(self.path)  # a forked worker opens its own
            self._pid = os.getpid()
        return self._ds

    def close(self) -> None:
        if self._ds is not None and self._pid == os.getpid():
            self._ds.close()
        self._ds = None

    def __getstate__(self) -> dict[str, Any]:  # spawned workers reopen the file
        state = dict(self.__dict__)
        state["_ds"], state["_pid"], state["_arrays"] = None, -1, {}
        return state

    # -- statistics over the train split, read in blocks of samples
    def compute_stats(self, names: Sequence[str], block: int = 64) -> dict[str, dict[str, float]]:
        ds = self._dataset()
        train = np.asarray(self.splits.train)
        out = {}
        for name in names:
            acc = None
            for start in range(0, train.size, block):
                idx = train[start : start + block]
                st = block_stats(ds[name].isel({self.sample_dim: idx}).values, name)
                acc = st if acc is None else acc.merge(st)  # Chan et al.'s parallel merge
            out[name] = _stats_entry(acc, name)
        return out

    def _vectors(self, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (len(names), 1, 1, 1)
        mean = torch.tensor([self.stats[n]["mean"] for n in names], dtype=torch.float64)
        std = torch.tensor([self.stats[n]["std"] for n in names], dtype=torch.float64)
        return mean.reshape(shape), std.reshape(shape)

    # -- samples
    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self.indices) <= k < len(self.indices):
            raise IndexError(f"sample {k} out of range for the {self.split} split ({len(self)})")
        k = k % len(self.indices)
        x = self._channels(self.input_channels, k)  # (C_in, lev, lat, lon) float64
        y = self._channels(self.target_channels, k)  # (C_out, lev, lat, lon) float64
        if self.normalize:
            x = (x - self._in_mean) / self._in_std
            y = (y - self._out_mean) / self._out_std
        return x.float(), y.float()

    def sample_index(self, k: int) -> int:
        """The index in the file's `sample` dimension of the split's k-th sample."""
        return self.indices[k]

    def _channels(self, names: Sequence[str], k: int) -> torch.Tensor:
        ds = self._dataset()
        grid = (self._lev, self._lat, self._lon)
        chans = []
        for name in names:
            da = ds[name]
            present = [d for d in grid if d is not None and d in da.dims]
            if self.preload:
                if name not in self._arrays:  # (n_split, *present) in split order
                    part = da.isel({self.sample_dim: np.asarray(self.indices)})
                    self._arrays[name] = np.asarray(
                        part.transpose(self.sample_dim, *present).values
                    )
                arr = self._arrays[name][k].astype(np.float64)
            else:
                one = da.isel({self.sample_dim: self.indices[k]})
                arr = np.asarray(one.transpose(*present).values, dtype=np.float64)
            shape = [self.sample_shape[a] if d in present else 1 for a, d in enumerate(grid)]
            chans.append(np.broadcast_to(arr.reshape(shape), self.sample_shape))
        return torch.from_numpy(np.stack(chans))

    def denormalize_target(self, y: torch.Tensor) -> torch.Tensor:
        """Undo the target normalisation: y (..., C_out, lev, lat, lon) -> physical units."""
        return y * self._out_std.to(y) + self._out_mean.to(y)

    def denormalize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._in_std.to(x) + self._in_mean.to(x)

    def stats_json(self) -> str:
        return json.dumps(self.stats, sort_keys=True)

    def shard(
        self,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        even: bool = False,
    ) -> CubeShards:
        """This split as an IterableDataset sharded by rank, then by DataLoader worker."""
        return CubeShards(
            self, rank, world_size, shuffle=shuffle, seed=seed, epoch=epoch, even=even
        )


def distributed_rank_world() -> tuple[int, int]:
    """(rank, world size): torch.distributed's, else RANK/WORLD_SIZE, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class CubeShards(IterableDataset):
    """A CubeDataset split, sharded: positions order[rank::world][worker::num_workers].

    `order` is the split (shuffled from seed + epoch when shuffle=True; call `set_epoch`
    between epochs - with `persistent_workers=True` the workers keep the epoch they started
    with, so make a new DataLoader per epoch or leave persistent workers off). Within an epoch the shards of all ranks and workers are disjoint and
    together cover the split (with even=True, all but at most world_size - 1 samples).
    """

    def __init__(
        self,
        dataset: CubeDataset,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        even: bool = False,
    ) -> None:
        self.dataset = dataset
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.seed, self.epoch, self.even = shuffle, seed, epoch, even

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_world(self) -> tuple[int, int]:
        if self.rank is not None and self.world_size is not None:
            rank, world = self.rank, self.world_size
        else:
            auto_rank, auto_world = distributed_rank_world()
            rank = self.rank if self.rank is not None else auto_rank
            world = self.world_size if self.world_size is not None else auto_world
        if world < 1 or not 0 <= rank < world:
            raise UsageError(f"rank {rank} is not valid for world size {world}")
        return rank, world

    def rank_positions(self) -> np.ndarray:
        """Positions (into the split) this rank takes this epoch, over all its workers."""
        n = len(self.dataset)
        order = np.arange(n)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        rank, world = self._rank_world()
        mine = order[rank::world]
        return mine[: n // world] if self.even else mine

    def __len__(self) -> int:
        return int(self.rank_positions().size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        mine = self.rank_positions()
        info = get_worker_info()
        if info is not None:
            mine = mine[info.id :: info.num_workers]
        for k in mine:
            yield self.dataset[int(k)]


# -- the exoplanet table -----------------------------------------------------------------------

EXOPLANET_FEATURES = (
    "pl_orbper",
    "pl_orbsmax",
    "pl_rade",
    "pl_bmasse",
    "pl_orbeccen",
    "st_teff",
    "st_rad",
    "st_mass",
    "st_met",
)
EXOPLANET_TARGETS = ("pl_eqt",)
MISSING_POLICIES = ("drop", "impute-median")


class ExoplanetTable(Dataset):
    """Rows of a Parquet table as float32 tensors: x (F,) features, y (T,) targets.

    path: a Parquet file (e.g. from `astrobio fetch nasa-exoplanet`); any other tabular file
        (CSV) is not read here - convert it first.
    split / splits / seed: as for CubeDataset, over the rows of the file.
    missing: what to do with a missing (null or NaN) value, explicitly:
      - "drop": drop every row of the split with any missing feature or target;
      - "impute-median": replace a missing feature by that column's median over the TRAIN
        split's rows (rows whose targets are present); rows with a missing target are still
        dropped - a target is never invented. A column with no value in the train split fails.
    normalize: standardise features (and targets) with train-split mean and std; `stats` holds
        them and the medians, JSON-able, and can be passed back as `stats=`.

    `row_ids` are the file rows kept (in order), so predictions can be joined back to names.
    """

    def __init__(
        self,
        path: Path | str,
        split: str = "train",
        *,
        features: Sequence[str] = EXOPLANET_FEATURES,
        targets: Sequence[str] = EXOPLANET_TARGETS,
        missing: str = "drop",
        splits: Splits | Path | str | None = None,
        seed: int = 0,
        stats: dict[str, dict[str, float]] | None = None,
        normalize: bool = True,
    ) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        if missing not in MISSING_POLICIES:
            raise UsageError(
                f"unknown missing-value policy {missing!r}: use one of {', '.join(MISSING_POLICIES)}"
            )
        if split not in SPLIT_NAMES:
            raise UsageError(f"unknown split {split!r}: use one of {', '.join(SPLIT_NAMES)}")
        self.feature_names, self.target_names = tuple(features), tuple(targets)
        if not self.feature_names or not self.target_names:
            raise UsageError("ExoplanetTable needs at least one feature and one target column")
        self.split, self.missing, self.normalize = split, missing, normalize

        columns = [*self.feature_names, *(t for t in self.target_names if t not in features)]
        try:
            schema = pq.read_schema(self.path)
        except FileNotFoundError:
            raise UsageError(f"table {self.path} does not exist") from None
        except Exception as exc:
            raise UsageError(
                f"cannot read {self.path} as Parquet ({type(exc).__name__}: {exc}); "
                "`astrobio fetch nasa-exoplanet --format parquet` writes one"
            ) from None
        absent = [c for c in columns if c not in schema.names]
        if absent:
            raise UsageError(
                f"table {self.path} has no column(s) {', '.join(absent)}; it has "
                f"{', '.join(schema.names)}"
            )
        table = pq.read_table(self.path, columns=columns)
        data = {}
        for c in columns:
            col = table.column(c)
            try:
                data[c] = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
            except (TypeError, ValueError):
                raise UsageError(
                    f"column {c!r} of {self.path} is {col.type}, not numeric; "
                    "choose numeric feature and target columns"
                ) from None
        n = table.num_rows
        if isinstance(splits, (str, Path)):
            splits = Splits.load(splits)
        if splits is None:
            splits = make_splits(n, seed, source=str(self.path))
        splits.check(n)
        self.splits = splits

        feats = np.stack([data[c] for c in self.feature_names], axis=1)  # (n, F)
        targs = np.stack([data[c] for c in self.target_names], axis=1)  # (n, T)
        feats[~np.isfinite(feats)] = np.nan
        targs[~np.isfinite(targs)] = np.nan

        if stats is None:
            stats = self._train_stats(feats, targs)
        self.stats = stats

        rows = np.asarray(splits[split], dtype=np.int64)
        rows = rows[~np.isnan(targs[rows]).any(axis=1)]  # a target is never imputed
        f = feats[rows]
        if missing == "drop":
            keep = ~np.isnan(f).any(axis=1)
            rows, f = rows[keep], f[keep]
        else:
            medians = np.array([stats["median"][c] for c in self.feature_names])
            f = np.where(np.isnan(f), medians[None, :], f)
        t = targs[rows]
        if normalize:
            f = (f - self._vec("mean", self.feature_names)) / self._vec("std", self.feature_names)
            t = (t - self._vec("mean", self.target_names)) / self._vec("std", self.target_names)
        self.row_ids = rows
        self.features = torch.from_numpy(f.astype(np.float32))  # (N, F)
        self.targets = torch.from_numpy(t.astype(np.float32))  # (N, T)

    def _vec(self, key: str, names: Sequence[str]) -> np.ndarray:
        return np.array([self.stats[key][c] for c in names])[None, :]

    def _train_stats(self, feats: np.ndarray, targs: np.ndarray) -> dict[str, dict[str, float]]:
        """Medians, means and stds over the train split (rows with all targets present)."""
        rows = np.asarray(self.splits.train, dtype=np.int64)
        rows = rows[~np.isnan(targs[rows]).any(axis=1)]
        f, t = feats[rows], targs[rows]
        if self.missing == "drop":
            keep = ~np.isnan(f).any(axis=1)
            f, t = f[keep], t[keep]
        stats: dict[str, dict[str, float]] = {"median": {}, "mean": {}, "std": {}}
        for j, c in enumerate(self.feature_names):
            col = feats[rows, j]
            col = col[~np.isnan(col)]
            if col.size == 0:
                raise UsageError(
                    f"feature column {c!r} has no value in the train split of {self.path}; "
                    "drop it from the features"
                )
            stats["median"][c] = float(np.median(col))
        if self.missing == "impute-median":
            med = np.array([stats["median"][c] for c in self.feature_names])
            f = np.where(np.isnan(f), med[None, :], f)
        if f.shape[0] == 0 or t.shape[0] == 0:
            raise UsageError(
                f"no complete row in the train split of {self.path} with missing={self.missing!r}; "
                "use missing='impute-median' or fewer feature columns"
            )
        for names, block in ((self.feature_names, f), (self.target_names, t)):
            for j, c in enumerate(names):
                std = float(block[:, j].std())
                stats["mean"][c] = float(block[:, j].mean())
                stats["std"][c] = std if std > 0 else 1.0
        return stats

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[k], self.targets[k]
