"""The climate-cube data kind: its schema, stated once, and the one reader of its files.

Schema (what `astrobio fetch synthetic-climate` writes; :data:`SCHEMA`, :data:`COORDS`)::

    stellar_flux, rotation_period, obliquity,     (sample,)                W m-2, day, degree,
    greenhouse_factor, surface_albedo                                      1, 1
    land_mask                                     (sample, lat, lon)       1 (0 ocean, 1 land)
    rsdt                                          (sample, lat)            W m-2 (insolation)
    ts                                            (sample, lat, lon)       K
    ta, hus                                       (sample, plev, lat, lon) K, kg kg-1
    coordinates lat (degrees_north), lon (degrees_east), plev (Pa, surface first)

:func:`open_climate_cube` reads either form of it:

- a raw ensemble (NetCDF or Zarr as `fetch` writes it): the split is drawn from a seed
  (:func:`astrobio_cli.data.splits.make_splits`) and the per-variable statistics are computed
  over the train split with the native kernels (:func:`astrobio_cli.datacube.stats`);
- a store written by `astrobio preprocess` (recognised by its `stats.json` / `provenance.json`):
  normalised, maybe regridded and cut into tiles. Its stats come from `stats.json`. Split rule:
  a store made with `--split train` records the samples its stats came from (the first
  `train_samples`); those are the train split and every other sample is held out (`val`; `test`
  is empty: keep a test set in a separate store made with `--stats-from`), so the normalisation
  never saw a held-out sample. A store made with `--split all` saw every sample: it is refused
  (rerun `astrobio preprocess IN OUT --split train`) unless `allow_seen=True`, which re-splits it
  from the seed and warns. A store made with `--stats-from` saw none of its samples: it is split
  from the seed like a raw file.

Items. ``cube.dataset(split)`` is a map-style torch Dataset; item k is a dict of float32 tensors,
one per variable, NORMALISED with the cube's stats ((x - mean) / std) and in the schema's dims
without `sample` (``rsdt`` is (lat,) in both forms; a preprocessed store keeps it broadcast over
longitude and the reader takes one column), plus ``lat`` (the item's latitudes, degrees),
``index`` (the item's row in the file), ``sample`` (the planet it belongs to; a tile of a
patched store maps back through `sample_<dim>`) and ``whole`` (True unless the item is a tile).
NaN is filled (``fill``: 0 = the mean, the default; None keeps NaN). Each read opens the file
lazily once per process, so DataLoader worker processes each read through their own handle, and
only the item asked for is read: memory does not grow with the file.

Per item, in the process that reads it (a DataLoader worker), the native kernels normalise and
fill raw values and apply the augmentations (:class:`Augment`): a latitude flip (the mirror
planet: data and `lat` flipped), a longitude roll (whole planets only: a tile is not periodic)
and Gaussian noise on the chosen variables; their randomness comes from torch's global RNG
(seeded per DataLoader worker, saved in training checkpoints).

No plugin is imported here, and torch only inside the functions that need it.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrobio_cli.errors import UsageError

KIND = "climate-cube"
SAMPLE_DIM = "sample"
STATS_FILE = "stats.json"
RECORD_FILE = "provenance.json"


@dataclass(frozen=True)
class Variable:
    """One variable of the schema: dims after `sample`, units, role."""

    name: str
    dims: tuple[str, ...]
    units: str
    role: str  # "input" (drawn by the generator), "forcing" (derived input), "output"


SCALARS = ("stellar_flux", "rotation_period", "obliquity", "greenhouse_factor", "surface_albedo")
SCHEMA: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable("stellar_flux", (), "W m-2", "input"),
        Variable("rotation_period", (), "day", "input"),
        Variable("obliquity", (), "degree", "input"),
        Variable("greenhouse_factor", (), "1", "input"),
        Variable("surface_albedo", (), "1", "input"),
        Variable("land_mask", ("lat", "lon"), "1", "input"),
        Variable("rsdt", ("lat",), "W m-2", "forcing"),
        Variable("ts", ("lat", "lon"), "K", "output"),
        Variable("ta", ("plev", "lat", "lon"), "K", "output"),
        Variable("hus", ("plev", "lat", "lon"), "kg kg-1", "output"),
    )
}
COORDS = {"plev": "Pa", "lat": "degrees_north", "lon": "degrees_east"}
GENERATOR_INPUTS = tuple(n for n, v in SCHEMA.items() if v.role == "input")
OUTPUTS = tuple(n for n, v in SCHEMA.items() if v.role == "output")
# What the climate models consume: every input and forcing; the 3-D outputs are their targets.
MODEL_INPUTS = tuple(n for n, v in SCHEMA.items() if v.role != "output")
MODEL_TARGETS = ("ta", "hus")


def schema_record() -> dict[str, Any]:
    """The schema as plain data (for run cards and checkpoints)."""
    return {
        "kind": KIND,
        "variables": {
            n: {"dims": [SAMPLE_DIM, *v.dims], "units": v.units, "role": v.role}
            for n, v in SCHEMA.items()
        },
        "coords": dict(COORDS),
    }


# -- augmentation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augment:
    """Per-item augmentations, run by the native kernels where the item is read.

    flip_lat: with probability 1/2, mirror the planet across the equator (every field's lat axis
        and the item's `lat`, reversed and negated);
    roll_lon: roll every field by a uniform random number of longitude points (whole planets
        only; tiles are left unrolled, their longitudes are not periodic);
    noise: standard deviation (normalised units) of Gaussian noise added to `noise_vars`
        (default: the model inputs, :data:`MODEL_INPUTS`).
    """

    flip_lat: bool = False
    roll_lon: bool = False
    noise: float = 0.0
    noise_vars: tuple[str, ...] = MODEL_INPUTS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise UsageError(f"augment noise must be a number >= 0, got {self.noise!r}")

    @property
    def active(self) -> bool:
        return self.flip_lat or self.roll_lon or self.noise > 0

    @classmethod
    def parse(cls, text: str | None, noise_vars: Sequence[str] = MODEL_INPUTS) -> Augment | None:
        """From text such as `flip,roll,noise=0.05` (`all` = flip,roll,noise=0.05)."""
        if not text:
            return None
        flip = roll = False
        noise = 0.0
        for part in (p.strip() for p in text.lower().split(",") if p.strip()):
            if part == "all":
                flip, roll, noise = True, True, 0.05
            elif part == "flip":
                flip = True
            elif part == "roll":
                roll = True
            elif part.startswith("noise"):
                _, _, val = part.partition("=")
                try:
                    noise = float(val) if val else 0.05
                except ValueError:
                    raise UsageError(f"augment: noise=STD needs a number, got {part!r}") from None
            else:
                raise UsageError(
                    f"augment: unknown {part!r}; use flip, roll, noise[=STD] or all, "
                    "comma-separated"
                )
        return cls(flip, roll, noise, tuple(noise_vars))

    def to_dict(self) -> dict[str, Any]:
        return {
            "flip_lat": self.flip_lat,
            "roll_lon": self.roll_lon,
            "noise": self.noise,
            "noise_vars": list(self.noise_vars),
        }


# -- the cube -----------------------------------------------------------------------------------


@dataclass
class ClimateCube:
    """What :func:`open_climate_cube` found: layout, split, stats. Holds no open file (it
    pickles into DataLoader workers); each process opens its own handle on first read."""

    path: Path
    form: str  # "raw" or "preprocessed"
    engine: str  # "zarr" or "netcdf"
    variables: tuple[str, ...]
    stats: Any  # datacube.Stats of `variables`, physical units
    splits: Any  # data.splits.Splits over samples (planets)
    item_sample: np.ndarray  # (items,) the sample of each item (row of the file)
    lat: np.ndarray  # (items, lat) or (lat,): latitudes of each item
    plev: np.ndarray  # (plev,) Pa
    grid_shape: tuple[int, int]  # (lat, lon) of one item
    patch: dict[str, Any] | None = None  # preprocess --patch options when the items are tiles
    record: dict[str, Any] = field(default_factory=dict)  # preprocess provenance, if any
    # tiles only: (items, 2) first (lat, lon) grid index of each tile (lat < 0 in the padding)
    # and the whole grid the tiles were cut from (degrees)
    origins: np.ndarray | None = None
    full_lat: np.ndarray | None = None
    full_lon: np.ndarray | None = None
    fill: float | None = 0.0
    notes: list[str] = field(default_factory=list)
    _reader: Any = field(default=None, repr=False, compare=False)

    # -- sizes and splits
    @property
    def n_samples(self) -> int:
        return self.splits.n

    @property
    def n_items(self) -> int:
        return int(self.item_sample.size)

    @property
    def tiled(self) -> bool:
        return self.patch is not None

    def items(self, split: str) -> np.ndarray:
        """Rows of the file whose sample is in `split` (all tiles of its samples), in order."""
        chosen = np.zeros(self.n_samples, dtype=bool)
        chosen[list(self.splits[split])] = True
        return np.flatnonzero(chosen[self.item_sample])

    def item_lat(self, item: int) -> np.ndarray:
        return self.lat if self.lat.ndim == 1 else self.lat[item]

    def sample_items(self, sample: int) -> np.ndarray:
        """Rows of the file that belong to `sample` (its tiles, in file order; or the one row)."""
        return np.flatnonzero(self.item_sample == int(sample))

    # -- reading
    def reader(self) -> _Reader:
        if self._reader is None or self._reader.pid != os.getpid():
            self._reader = _Reader(self.path, self.engine)  # a forked worker opens its own
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"] = None
        return state

    def read(
        self,
        item: int,
        variables: Sequence[str] | None = None,
        *,
        augment: Augment | None = None,
        native: bool | None = None,
    ) -> dict[str, Any]:
        """One item as NumPy: {variable: normalised float32 array, 'lat', 'index', 'sample',
        'whole'} (see the module docstring)."""
        from astrobio_cli import datacube as dc

        names = tuple(variables or self.variables)
        r = self.reader()
        out: dict[str, Any] = {}
        for name in names:
            raw = r.read(name, int(item))
            if self.form == "preprocessed" and name in SCHEMA and SCHEMA[name].dims == ("lat",):
                raw = raw[..., 0] if raw.ndim == 2 else raw  # stored broadcast over lon
            x = np.asarray(raw, dtype=np.float32).reshape(1, -1)
            if self.form == "raw":  # normalise (and fill) with the native kernel
                x = dc.normalize(
                    x,
                    self._stats1(name),
                    fill=None if self.fill is None else "mean",
                    native=native,
                    threads=1,
                )
            elif self.fill is not None and np.isnan(x).any():
                x = np.where(np.isnan(x), np.float32(self.fill), x)
            out[name] = x.reshape(np.shape(raw))
        lat = np.array(self.item_lat(int(item)), dtype=np.float64)
        if augment is not None and augment.active:
            lat = self._augment(out, lat, augment, native)
        out.update(
            lat=lat,
            index=int(item),
            sample=int(self.item_sample[item]),
            whole=not self.tiled,
        )
        return out

    def _stats1(self, name: str):
        cache = self.__dict__.setdefault("_stats_cache", {})
        if name not in cache:
            cache[name] = self.stats.select([name])
        return cache[name]

    def _augment(self, out: dict[str, Any], lat: np.ndarray, aug: Augment, native) -> np.ndarray:
        import torch

        from astrobio_cli import datacube as dc

        spatial = [n for n, v in out.items() if np.ndim(v) >= 1]
        if aug.flip_lat and bool(torch.rand(()) < 0.5):
            for n in spatial:
                a = out[n]
                a2 = a.reshape(-1, 1) if a.ndim == 1 else a  # (lat,) -> (lat, 1)
                out[n] = dc.flip_lat(a2, native=native, threads=1).reshape(a.shape)
            lat = -lat[::-1].copy()
        if aug.roll_lon and not self.tiled:
            shift = int(torch.randint(self.grid_shape[1], ()))
            for n in spatial:
                if out[n].ndim >= 2:  # fields with a lon axis
                    out[n] = dc.roll_lon(out[n], shift, native=native, threads=1)
        if aug.noise > 0:
            seed = int(torch.randint(2**62, ()))
            for j, n in enumerate(v for v in aug.noise_vars if v in out):
                a = out[n]
                noisy = dc.add_noise(
                    a.reshape(1, -1), float(aug.noise), seed + j, native=native, threads=1
                )
                out[n] = noisy.reshape(a.shape)
        return lat

    def dataset(
        self,
        split: str,
        variables: Sequence[str] | None = None,
        *,
        augment: Augment | None = None,
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> ClimateDataset:
        return ClimateDataset(self, split, variables, augment=augment, transform=transform)

    # -- what travels with a run (run card, checkpoint meta)
    def provenance(self, *, with_indices: bool = True) -> dict[str, Any]:
        """Plain data: path, form, schema, split, stats, grid: what eval and serving need
        without reopening the file."""
        rec: dict[str, Any] = {
            "path": str(self.path),
            "kind": KIND,
            "form": self.form,
            "samples": self.n_samples,
            "items": self.n_items,
            "variables": list(self.variables),
            "schema": schema_record(),
            "stats": self.stats.to_dict(),
            "grid": {
                "plev": self.plev.tolist(),
                "item_shape": list(self.grid_shape),
                "lat": self.lat.tolist() if self.lat.ndim == 1 else None,
                "full_lat": None if self.full_lat is None else self.full_lat.tolist(),
                "full_lon": None if self.full_lon is None else self.full_lon.tolist(),
            },
            "patch": self.patch,
            "fill": self.fill,
            "split_rule": self.record.get("split_rule", "seeded"),
            "notes": list(self.notes),
        }
        splits = self.splits
        rec["split"] = {
            "seed": splits.seed,
            "n": splits.n,
            "train": len(splits.train),
            "val": len(splits.val),
            "test": len(splits.test),
        }
        if with_indices:
            rec["split"].update(
                train=list(splits.train),
                val=list(splits.val),
                test=list(splits.test),
                sizes=[len(splits.train), len(splits.val), len(splits.test)],
            )
        if self.record:
            rec["preprocess"] = {k: self.record.get(k) for k in ("options", "train_samples")}
        return rec


class _Reader:
    """One process's handle on the file; reads one item of one variable at a time.

    Zarr format 2 arrays chunked along the first dim only (what `preprocess` and `fetch` write)
    are read straight from their chunk files (numcodecs decodes them), keeping the last chunk of
    each variable: per item that is one file read and one decompression of ~256 KiB at most,
    without zarr-python's per-call machinery. Other Zarr layouts go through zarr; NetCDF through
    netCDF4 (CF masking and scaling applied).
    """

    def __init__(self, path: Path, engine: str) -> None:
        self.pid = os.getpid()
        self.engine = engine
        self.path = path
        self.arrays: dict[str, Any] = {}
        self.last: dict[str, tuple[int, np.ndarray]] = {}
        if engine == "zarr":
            self.handle = None  # zarr group, opened when an array needs it
        else:
            import netCDF4

            self.handle = netCDF4.Dataset(str(path), "r")
            self.handle.set_auto_maskandscale(True)

    def read(self, name: str, item: int) -> np.ndarray:
        if self.engine != "zarr":
            v = self.handle.variables[name][item]
            return np.ma.filled(np.ma.asarray(v).astype(np.float64), np.nan)
        meta = self.arrays.get(name)
        if meta is None:
            meta = self.arrays[name] = self._meta(name)
        if meta["direct"]:
            return self._direct(name, meta, item)
        arr = meta["array"]
        a = np.asarray(arr[item])
        return _cf_decode(a, meta["attrs"])

    def _meta(self, name: str) -> dict[str, Any]:
        import json

        d = self.path / name
        try:
            zarray = json.loads((d / ".zarray").read_text(encoding="utf-8"))
            zattrs_path = d / ".zattrs"
            attrs = (
                json.loads(zattrs_path.read_text(encoding="utf-8")) if zattrs_path.exists() else {}
            )
        except (OSError, ValueError):
            zarray, attrs = None, {}
        direct = (
            zarray is not None
            and zarray.get("zarr_format") == 2
            and not zarray.get("filters")
            and zarray.get("order", "C") == "C"
            and list(zarray["chunks"][1:]) == list(zarray["shape"][1:])
        )
        if direct:
            import numcodecs

            comp = zarray.get("compressor")
            fill = zarray.get("fill_value")
            return {
                "direct": True,
                "attrs": attrs,
                "codec": numcodecs.get_codec(comp) if comp else None,
                "dtype": np.dtype(zarray["dtype"]),
                "chunks": tuple(zarray["chunks"]),
                "shape": tuple(zarray["shape"]),
                "sep": zarray.get("dimension_separator", "."),
                "fill": np.nan if fill in ("NaN", None) else fill,
            }
        if self.handle is None:
            import zarr

            self.handle = zarr.open_group(str(self.path), mode="r")
        arr = self.handle[name]
        return {"direct": False, "array": arr, "attrs": dict(arr.attrs)}

    def _direct(self, name: str, m: dict[str, Any], item: int) -> np.ndarray:
        if not 0 <= item < m["shape"][0]:
            raise IndexError(f"item {item} out of range for {name} ({m['shape'][0]})")
        c, off = divmod(item, m["chunks"][0])
        cached = self.last.get(name)
        if cached is None or cached[0] != c:
            key = m["sep"].join([str(c)] + ["0"] * (len(m["shape"]) - 1))
            try:
                raw = (self.path / name / key).read_bytes()
            except FileNotFoundError:  # never written: the fill value
                block = np.full(m["chunks"], m["fill"], dtype=np.float64)
            else:
                buf = m["codec"].decode(raw) if m["codec"] is not None else raw
                block = np.frombuffer(buf, dtype=m["dtype"]).reshape(m["chunks"])
            cached = self.last[name] = (c, block)
        return _cf_decode(np.array(cached[1][off]), m["attrs"])


def _cf_decode(a: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    fill = attrs.get("_FillValue")
    if isinstance(fill, int | float) and not math.isnan(fill):
        a = np.where(a == fill, np.nan, a.astype(np.float64))
    if "scale_factor" in attrs or "add_offset" in attrs:  # CF packing
        a = a * attrs.get("scale_factor", 1.0) + attrs.get("add_offset", 0.0)
    return a


class ClimateDataset:
    """Map-style dataset of one split of a :class:`ClimateCube` (items: see the module docs).

    `transform(item) -> anything` runs after reading and augmenting, in the reading process
    (e.g. a model stacking its input channels in the DataLoader worker).
    """

    def __init__(
        self,
        cube: ClimateCube,
        split: str,
        variables: Sequence[str] | None = None,
        *,
        augment: Augment | None = None,
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        missing = [v for v in variables or () if v not in cube.variables]
        if missing:
            raise UsageError(
                f"climate cube {cube.path} has no variable(s) {', '.join(missing)}; "
                f"it has {', '.join(cube.variables)}"
            )
        self.cube, self.split = cube, split
        self.variables = tuple(variables or cube.variables)
        self.augment, self.transform = augment, transform
        self.idx = cube.items(split)

    def __len__(self) -> int:
        return int(self.idx.size)

    def raw_item(self, k: int, *, augment: bool = True) -> dict[str, Any]:
        """Item k as NumPy, before `transform`."""
        if not -len(self) <= k < len(self):
            raise IndexError(f"item {k} out of range for the {self.split} split ({len(self)})")
        aug = self.augment if augment else None
        return self.cube.read(int(self.idx[k]), self.variables, augment=aug)

    def __getitem__(self, k: int) -> Any:
        import torch

        item = self.raw_item(k)
        item = {
            n: torch.from_numpy(np.require(v, requirements="C")) if isinstance(v, np.ndarray) else v
            for n, v in item.items()
        }
        return self.transform(item) if self.transform is not None else item

    def samples(self) -> np.ndarray:
        """The sample (planet) of each item, in item order."""
        return self.cube.item_sample[self.idx]


# -- opening ------------------------------------------------------------------------------------


def is_preprocessed(path: Path | str) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / STATS_FILE).is_file() or (p / RECORD_FILE).is_file())


def _open_xr(path: Path):
    import xarray as xr

    if not path.exists():
        raise UsageError(f"climate cube {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*multiple fill values.*")
            if path.is_dir() or path.suffix == ".zarr":
                return xr.open_zarr(path, consolidated=None, chunks=None), "zarr"
            return xr.open_dataset(path, engine="netcdf4", chunks=None, cache=False), "netcdf"
    except Exception as exc:
        raise UsageError(
            f"cannot read climate cube {path} as NetCDF or Zarr ({type(exc).__name__}: {exc})"
        ) from None


def open_climate_cube(
    path: Path | str,
    *,
    variables: Sequence[str] | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.2, 0.0),
    splits: Any = None,
    split_fn: Callable[[int], Any] | None = None,
    stats: Any = None,
    fill: float | None = 0.0,
    allow_seen: bool = False,
    native: bool | None = None,
) -> ClimateCube:
    """Open a raw ensemble or a preprocessed store (see the module docstring).

    variables: the ones needed (default: every schema variable the file has); a missing one
        is a UsageError naming what the file has.
    seed, fractions: the split of a raw file (and of a `--stats-from` store): `make_splits`.
    splits: a `Splits` to use instead (e.g. a run's saved one); checked against the samples.
    split_fn: `n -> Splits`, used instead of `make_splits` wherever the split is seeded (a raw
        file, a `--stats-from` store); never instead of a store's recorded train split.
    stats: a `datacube.Stats` (or its dict form) to normalise raw values with instead of
        computing them (e.g. the stats a checkpoint carries).
    allow_seen: read a `--split all` store anyway (re-split from the seed, with a warning).
    """
    from astrobio_cli import datacube as dc
    from astrobio_cli.data.lineage import read_json
    from astrobio_cli.data.splits import Splits, make_splits

    path = Path(path)
    ds, engine = _open_xr(path)
    try:
        pre = is_preprocessed(path)
        present = [n for n in SCHEMA if n in ds.data_vars]
        wanted = tuple(variables) if variables else tuple(present)
        missing = [v for v in wanted if v not in ds.data_vars]
        if missing:
            hint = (
                "; preprocess it without --vars (or name them) so it carries them"
                if pre
                else "; `astrobio fetch synthetic-climate` writes every one"
            )
            raise UsageError(
                f"{path} is not a synthetic-climate ensemble ({KIND}): it lacks "
                f"{', '.join(missing)} "
                f"(it has {', '.join(map(str, ds.data_vars))}){hint}"
            )
        if SAMPLE_DIM not in ds.dims:
            raise UsageError(
                f"{path} has no '{SAMPLE_DIM}' dimension (dims: {', '.join(map(str, ds.dims))}); "
                f"a {KIND} is an ensemble such as `astrobio fetch synthetic-climate` writes"
            )
        n_items = int(ds.sizes[SAMPLE_DIM])
        record = (read_json(path / RECORD_FILE) or {}) if pre else {}
        options = record.get("options") or {}
        patch = options.get("patch") if pre else None
        for name in wanted:
            _check_dims(ds, name, path, pre, tiled=patch is not None)

        # items -> samples
        if patch is not None:
            key = next((c for c in ds.coords if str(c).startswith("sample_")), None)
            if key is None:
                raise UsageError(f"{path}: a tiled store without a sample_<dim> coordinate")
            # samples numbered in the order they were written (preprocess keeps file order)
            _, first, inverse = np.unique(
                np.asarray(ds[key].values), return_index=True, return_inverse=True
            )
            rank = np.empty(first.size, dtype=np.int64)
            rank[np.argsort(first, kind="stable")] = np.arange(first.size)
            item_sample = rank[inverse.reshape(-1)]
        else:
            item_sample = np.arange(n_items, dtype=np.int64)
        n = int(item_sample.max()) + 1 if item_sample.size else 0
        if n < 2:
            raise UsageError(f"{path} has {n} sample(s); a train and a held-out split need 2+")

        # grid of one item
        plev = np.asarray(ds["plev"].values, dtype=np.float64) if "plev" in ds else np.ones(1)
        nlat, nlon = int(ds.sizes["lat"]), int(ds.sizes["lon"])
        origins = full_lat = full_lon = None
        if patch is not None:
            lat = _tile_lats(ds, nlat)
            origins = np.stack(
                [np.asarray(ds[f"patch_{a}0"].values, dtype=np.int64) for a in ("lat", "lon")],
                axis=1,
            )
            full_lat = np.asarray(ds["grid_lat"].values, dtype=np.float64)
            full_lon = np.asarray(ds["grid_lon"].values, dtype=np.float64)
        elif "lat" in ds.coords:
            lat = np.asarray(ds["lat"].values, dtype=np.float64)
        else:
            raise UsageError(f"{path} has no lat coordinate")

        # the split
        def seeded(count: int):
            if split_fn is not None:
                made = split_fn(count)
                made.check(count)
                return made
            return make_splits(count, seed, fractions, source=str(path))

        notes: list[str] = []
        split_rule = "seeded"
        if splits is not None:
            if isinstance(splits, dict):
                splits = Splits.from_dict(splits)
            splits.check(n)
            split_rule = "given"
        elif pre:
            train_n = record.get("train_samples")
            if options.get("stats_from"):
                splits = seeded(n)
                split_rule = "seeded (stats from another store: none of these samples seen)"
            elif options.get("split") == "train" and isinstance(train_n, int) and train_n > 0:
                if train_n >= n:
                    raise UsageError(
                        f"{path} was preprocessed with --split train --train-fraction "
                        f"{options.get('train_fraction')}: every sample is a training sample "
                        "and none is left to validate on; rerun preprocess with a fraction < 1"
                    )
                splits = Splits(
                    n,
                    -1,
                    (train_n / n, 1 - train_n / n, 0.0),
                    tuple(range(train_n)),
                    tuple(range(train_n, n)),
                    (),
                    source=str(path),
                )
                split_rule = "store: train = the samples its stats came from"
            else:
                msg = (
                    f"{path} was preprocessed with --split {options.get('split', '?')}: its "
                    "normalisation saw every sample, so no held-out sample is unseen; rerun "
                    "`astrobio preprocess IN OUT --split train` (stats from the first "
                    "--train-fraction of the samples, the rest held out)"
                )
                if not allow_seen:
                    raise UsageError(msg)
                warnings.warn(msg + "; re-split from the seed anyway", UserWarning, stacklevel=2)
                notes.append("stats saw every sample (preprocess --split all)")
                splits = seeded(n)
                split_rule = "seeded (stats saw every sample)"
        else:
            splits = seeded(n)
        if not splits.train or not (splits.val or splits.test):
            raise UsageError(f"{path}: the split leaves no train or no held-out sample")

        # the stats
        if stats is not None:
            st = stats if isinstance(stats, dc.Stats) else dc.Stats.from_dict(stats)
            st = st.select(wanted)
        elif pre:
            try:
                st = dc.Stats.load(path / STATS_FILE).select(wanted)
            except ValueError as exc:
                raise UsageError(f"{path}: {exc}") from None
        else:
            st = _train_stats(ds, wanted, splits.train, native)
        cube = ClimateCube(
            path=path,
            form="preprocessed" if pre else "raw",
            engine=engine,
            variables=wanted,
            stats=st,
            splits=splits,
            item_sample=item_sample,
            lat=lat,
            plev=plev,
            grid_shape=(nlat, nlon),
            patch=patch,
            record={**record, "split_rule": split_rule},
            origins=origins,
            full_lat=full_lat,
            full_lon=full_lon,
            fill=fill,
            notes=notes,
        )
    finally:
        ds.close()
    return cube


def _check_dims(ds, name: str, path: Path, pre: bool, tiled: bool) -> None:
    want = (SAMPLE_DIM, *SCHEMA[name].dims) if name in SCHEMA else None
    got = tuple(str(d) for d in ds[name].dims)
    ok = want is None or got == want
    if pre and name in SCHEMA and SCHEMA[name].dims == ("lat",):
        ok = ok or got == (SAMPLE_DIM, "lat", "lon")  # broadcast over lon by preprocess
    if not ok:
        raise UsageError(f"variable {name} of {path} has dims {got}; the {KIND} schema says {want}")


def _tile_lats(ds, nlat: int) -> np.ndarray:
    """(items, lat) latitudes of each tile, extrapolated linearly into the padding."""
    grid = np.asarray(ds["grid_lat"].values, dtype=np.float64)
    return tile_lats(grid, np.asarray(ds["patch_lat0"].values, dtype=np.int64), nlat)


def tile_lats(grid_lat: np.ndarray, lat0: np.ndarray, nlat: int) -> np.ndarray:
    """(tiles, nlat) latitudes of tiles whose first rows are `lat0` on `grid_lat`, extrapolated
    linearly into the padding (rows < 0 or past the last)."""
    grid = np.asarray(grid_lat, dtype=np.float64)
    rows = np.asarray(lat0, dtype=np.int64)[:, None] + np.arange(nlat)[None, :]
    step = grid[1] - grid[0] if grid.size > 1 else 0.0
    inside = np.clip(rows, 0, grid.size - 1)
    return grid[inside] + (rows - inside) * step


def cut_tiles(
    field: np.ndarray, patch: dict[str, Any], *, fill: float | None = 0.0, native=None
) -> tuple[np.ndarray, np.ndarray]:
    """The tiles `astrobio preprocess --patch` cuts from `field` (..., lat, lon), normalised
    values: (tiles, ..., plat, plon) float32, through the same kernel, with the padding rows
    set to `fill` as the reader sets them; and the (tiles, 2) (lat, lon) origins. Level
    tiles (`--patch LEVxLATxLON`) are not handled here."""
    from astrobio_cli import datacube as dc

    spec = dc.PatchSpec(**patch)
    if spec.lev:
        raise ValueError("level tiles (--patch LEVxLATxLON) cannot be cut here")
    x = np.asarray(field, dtype=np.float32)
    lead, (nlat, nlon) = x.shape[:-2], x.shape[-2:]
    cube = x.reshape(1, 1, -1, nlat, nlon)  # (sample, var, lev, lat, lon)
    out = dc.patches(cube, spec, pad_value=np.nan, native=native, threads=1)
    out = out.reshape(-1, *lead, spec.lat, spec.lon)  # (tiles, ..., plat, plon)
    if fill is not None:
        out = np.where(np.isnan(out), np.float32(fill), out)
    origins = spec.origins(cube.shape)[:, 1:]
    return out, origins


def stitch_tiles(
    tiles: np.ndarray, origins: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Tiles (tiles, ..., plat, plon) of one sample back onto its grid of `shape` (lat, lon):
    each grid cell is the mean of the tiles that cover it (tiles overlap when the stride is
    below the tile size), longitude wraps, padding rows are dropped, and a cell no tile covers
    is NaN. Returns the (..., lat, lon) float64 field and the (lat, lon) count of tiles per
    cell."""
    t = np.asarray(tiles, dtype=np.float64)
    nlat, nlon = (int(n) for n in shape)
    plat, plon = t.shape[-2:]
    total = np.zeros((*t.shape[1:-2], nlat, nlon))
    count = np.zeros((nlat, nlon))
    for tile, (lat0, lon0) in zip(t, np.asarray(origins, dtype=np.int64), strict=True):
        rows = int(lat0) + np.arange(plat)
        keep = (rows >= 0) & (rows < nlat)
        cols = (int(lon0) + np.arange(plon)) % nlon
        r = rows[keep]
        total[..., r[:, None], cols[None, :]] += tile[..., keep, :]
        count[r[:, None], cols[None, :]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan), count


def _train_stats(ds, names: Sequence[str], train: Sequence[int], native: bool | None):
    """Per-variable stats over the train samples (native kernels; blocks merged exactly)."""
    from astrobio_cli import datacube as dc

    idx = np.asarray(train, dtype=np.int64)
    per_sample_bytes = sum(int(np.prod(ds[n].shape[1:])) for n in names) * 8
    block = max(1, min(idx.size, (64 * 2**20) // max(1, per_sample_bytes)))
    parts = []
    for name in names:
        acc = None
        for a in range(0, idx.size, block):
            vals = np.asarray(ds[name].isel({SAMPLE_DIM: idx[a : a + block]}).values)
            x = np.ascontiguousarray(vals, dtype=np.float64).reshape(vals.shape[0], 1, 1, 1, -1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", dc.AllNaNWarning)
                s = dc.stats(x, names=(name,), native=native)
            acc = s if acc is None else acc.merge(s)
        if acc is None or acc.count[0] == 0:
            raise UsageError(f"variable {name} has no valid value in the training samples")
        std = acc.std if acc.std[0] > 0 else np.ones(1)  # a constant variable: std 1
        units = str(ds[name].attrs.get("units", ""))
        parts.append(
            dc.Stats(acc.count, acc.mean, std, acc.min, acc.max, (name,), {name: {"units": units}})
        )
    out = parts[0]
    for p in parts[1:]:
        out = dc.Stats(
            np.concatenate([out.count, p.count]),
            np.concatenate([out.mean, p.mean]),
            np.concatenate([out.std, p.std]),
            np.concatenate([out.min, p.min]),
            np.concatenate([out.max, p.max]),
            out.names + p.names,
            {**out.extra, **p.extra},
        )
    return out


def denormalize(name: str, x: Any, stats: Any) -> Any:
    """Physical values of variable `name` from normalised `x` (NumPy or torch)."""
    i = stats.names.index(name)
    return x * float(stats.std[i]) + float(stats.mean[i])


def stats_from_provenance(prov: dict[str, Any]):
    """The `datacube.Stats` a run's `data_provenance` (checkpoint meta) carries."""
    from astrobio_cli import datacube as dc

    return dc.Stats.from_dict(prov["stats"])


__all__ = [
    "COORDS",
    "GENERATOR_INPUTS",
    "KIND",
    "MODEL_INPUTS",
    "MODEL_TARGETS",
    "OUTPUTS",
    "SCALARS",
    "SCHEMA",
    "Augment",
    "ClimateCube",
    "ClimateDataset",
    "Variable",
    "cut_tiles",
    "denormalize",
    "is_preprocessed",
    "open_climate_cube",
    "schema_record",
    "stats_from_provenance",
    "stitch_tiles",
    "tile_lats",
]
