"""`astrobio preprocess`: a NetCDF/Zarr datacube in, normalised training tensors (Zarr) out.

Steps, per group of variables (below): optional bilinear regridding onto a regular grid, stats
from the training samples (or a stats JSON from an earlier run), then one fused pass
normalise -> fill -> cut patches (:func:`astrobio_cli.datacube.pipeline`). Samples are read and
written in chunks along the first sample dimension (e.g. `time`), so a cube larger than memory
goes through with bounded memory: pass 1 merges per-chunk stats exactly (parallel Welford
merge), pass 2 appends each chunk to the store.

Variables with different level coordinates (NCEP: `T` on 17 levels `lev`, `SHUM` on 8 levels
`lev2`) are processed in separate groups: one group per (sample dims, level dim). Each group is
a cube `(samples..., var, lev, lat, lon)`; surface fields `(time, lat, lon)` get a length-1 level
axis internally and come out with their own dims again. The stats are per variable (over all its
levels, samples and grid points).

Output: a Zarr store (format 2, consolidated metadata: readable by zarr 2 and 3 and
`xarray.open_zarr`). Without `--patch` every variable keeps its dims; with `--patch` the sample
dims and the tiles are flattened into one `sample` dim and the tile axes are named `lat`/`lon`
(so `astrobio_cli.data.datasets.CubeDataset` can read it), with `patch_lat0`/`patch_lon0` (first
grid index of each tile; negative inside the padding) and `sample_<dim>` coordinates. Units and
attributes are carried over; `astrobio_mean`/`astrobio_std` attributes say how to undo the
normalisation. The stats are written as `stats.json` inside the store. Everything is written to
a temporary directory next to OUT and renamed into place at the end: an interrupted run leaves
nothing at OUT.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrobio_cli import datacube as dc
from astrobio_cli.data import lineage
from astrobio_cli.errors import UsageError, UserError

LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "longitude")
LEVEL_PREFIXES = ("lev", "plev", "level", "pressure", "isobaric", "depth", "height", "alt")
LEVEL_UNITS = {"pa", "hpa", "mb", "mbar", "millibar", "millibars", "m", "km"}
CHUNK_BYTES = 256 * 2**20  # input bytes per processing step (bounds memory)

Progress = Callable[[str, int, int], None]  # (description, done, total)


@dataclass
class Group:
    """Variables sharing (sample dims, level dim): processed as one cube."""

    sample_dims: tuple[str, ...]
    level_dim: str | None
    names: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.level_dim or "surface"


@dataclass
class PreprocessResult:
    out: Path
    stats_path: Path
    groups: list[Group]
    stats: dc.Stats
    shapes: dict[str, tuple[int, ...]]
    seconds: float
    native: bool


def _open(path: Path):
    import xarray as xr

    if not path.exists():
        raise UsageError(f"input {path} does not exist")
    try:
        with warnings.catch_warnings():
            # NCEP-style files declare two fill values; xarray masks both, which is right.
            warnings.filterwarnings("ignore", message=".*multiple fill values.*")
            if path.is_dir() or path.suffix == ".zarr":
                return xr.open_zarr(path, consolidated=None, chunks=None)
            return xr.open_dataset(path, chunks=None, cache=False)
    except Exception as exc:
        raise UserError(
            f"cannot read {path} as NetCDF or Zarr ({type(exc).__name__}: {exc})"
        ) from None


def _is_level(ds, dim: str) -> bool:
    name = dim.lower()
    if name.startswith(LEVEL_PREFIXES):
        return True
    if dim in ds.coords:
        attrs = ds[dim].attrs
        units = str(attrs.get("units", "")).lower()
        return "positive" in attrs or units in LEVEL_UNITS
    return False


def plan_groups(ds, names: Sequence[str] | None) -> tuple[list[Group], str, str]:
    """Group the chosen variables by (sample dims, level dim); returns (groups, lat, lon)."""
    dims = [str(d) for d in ds.dims]
    lat = next((d for d in dims if d.lower() in LAT_NAMES), None)
    lon = next((d for d in dims if d.lower() in LON_NAMES), None)
    if lat is None or lon is None:
        raise UsageError(
            f"input has no latitude/longitude dimensions (dims: {', '.join(dims)}); "
            f"expected one of {LAT_NAMES} and one of {LON_NAMES}"
        )
    data_vars = [str(v) for v in ds.data_vars]
    if names:
        missing = [n for n in names if n not in ds.data_vars]
        if missing:
            raise UsageError(
                f"no variable {', '.join(missing)} in the input; it has {', '.join(data_vars)}"
            )
        chosen = list(names)
    else:
        chosen = [v for v in data_vars if ds[v].dims[-2:] == (lat, lon)]
        if not chosen:
            raise UsageError(f"no variable of the input has ({lat}, {lon}) as its last dims")
    groups: dict[tuple, Group] = {}
    for name in chosen:
        vdims = tuple(str(d) for d in ds[name].dims)
        if vdims[-2:] != (lat, lon):
            raise UsageError(
                f"variable {name} has dims {vdims}; its last two must be ({lat}, {lon})"
            )
        level = vdims[-3] if len(vdims) >= 3 and _is_level(ds, vdims[-3]) else None
        sample = vdims[: len(vdims) - 2 - (level is not None)]
        if len(sample) > 3:
            raise UsageError(f"variable {name} has {len(sample)} sample dims; at most 3")
        groups.setdefault((sample, level), Group(sample, level)).names.append(name)
    out = list(groups.values())
    sample_sets = {g.sample_dims for g in out}
    if len(sample_sets) > 1:
        raise UsageError(
            "the chosen variables have different sample dims "
            f"({'; '.join(str(s) for s in sample_sets)}); pick variables that agree with --vars"
        )
    return out, lat, lon


def _float_dtype(ds, names: Sequence[str]) -> np.dtype:
    return np.dtype(np.float64 if any(ds[n].dtype == np.float64 for n in names) else np.float32)


def _load(ds, g: Group, sl: slice | None, dtype: np.dtype) -> np.ndarray:
    """(samples..., var, lev, lat, lon) for the samples `sl` of the first sample dim."""
    arrays = []
    for name in g.names:
        da = ds[name]
        if sl is not None:
            da = da.isel({g.sample_dims[0]: sl})
        a = np.asarray(da.values, dtype=dtype)
        if g.level_dim is None:
            a = a[..., None, :, :]
        arrays.append(a)
    return np.stack(arrays, axis=-4)


def _clean_stale(out: Path) -> None:
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(p.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            continue  # a live run owns it
        shutil.rmtree(p, ignore_errors=True)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while the store was being written."""


@contextlib.contextmanager
def _atomic_dir(out: Path, overwrite: bool):
    """Yields (temporary directory next to `out`, checkpoint); renames it to `out` on success.

    While it is open, SIGINT and SIGTERM are only noted, and `checkpoint()` (called between
    chunks) raises :class:`Interrupted`: zarr writes from a background thread, so stopping in
    the middle of a write would let that thread recreate files after the cleanup.
    """
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    caught: list[int] = []

    def note(signum, frame):
        caught.append(signum)

    def checkpoint() -> None:
        if caught:
            raise Interrupted(f"signal {caught[0]}")

    old = {}
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, note)
    try:
        yield tmp, checkpoint
        checkpoint()
        if out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def preprocess(
    src: Path | str,
    out: Path | str,
    *,
    variables: Sequence[str] | None = None,
    stats_from: Path | str | None = None,
    split: str = "all",
    train_fraction: float = 0.8,
    regrid: float | None = None,
    patch: dc.PatchSpec | None = None,
    fill: str | float | None = None,
    threads: int | None = None,
    chunk: int | None = None,
    overwrite: bool = False,
    native: bool | None = None,
    progress: Progress | None = None,
) -> PreprocessResult:
    """Preprocess `src` into the Zarr store `out` (see the module docstring)."""
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    say = progress or (lambda desc, done, total: None)
    if split not in ("all", "train"):
        raise UsageError(f"--split must be 'train' or 'all', got {split!r}")
    if not 0 < train_fraction <= 1:
        raise UsageError(f"--train-fraction must be in (0, 1], got {train_fraction}")
    if stats_from is not None and split == "train":
        raise UsageError("give either --stats-from or --split train, not both")
    try:
        fill = dc._check_fill(fill)
    except ValueError as exc:
        raise UsageError(f"--fill: {exc}") from None
    native = dc.use_native(native)
    threads = dc.thread_count(threads)
    try:
        given = dc.Stats.load(stats_from) if stats_from is not None else None
        target = None if regrid is None else dc.regular_grid(regrid)
    except ValueError as exc:
        raise UsageError(
            f"--{'regrid' if 'grid step' in str(exc) else 'stats-from'}: {exc}"
        ) from None

    ds = _open(src)
    groups, lat, lon = plan_groups(ds, variables)
    src_lat = np.asarray(ds[lat].values, dtype=np.float64)
    src_lon = np.asarray(ds[lon].values, dtype=np.float64)
    grid_lat, grid_lon = (src_lat, src_lon) if target is None else target
    sample_dims = groups[0].sample_dims
    n = int(ds.sizes[sample_dims[0]]) if sample_dims else 1
    n_train = max(1, math.ceil(train_fraction * n)) if split == "train" else n

    all_names = [v for g in groups for v in g.names]
    dtype = _float_dtype(ds, all_names)
    if patch is not None and patch.lev and len(groups) > 1:
        raise UsageError(
            "level tiles (--patch LEVxLATxLON) need variables that share one level dim; "
            f"these have {', '.join(g.label for g in groups)}: choose them with --vars"
        )
    # Samples per step: about CHUNK_BYTES of input (after regridding) per step.
    grow = max(1.0, grid_lat.size * grid_lon.size / max(1, src_lat.size * src_lon.size))
    per_sample = sum(ds[v].size for v in all_names) // max(n, 1) * dtype.itemsize * grow
    step = chunk or max(1, int(CHUNK_BYTES // max(per_sample, 1)))
    chunks = [slice(a, min(a + step, n)) for a in range(0, n, step)] if sample_dims else [None]
    train_chunks = (
        [slice(a, min(a + step, n_train)) for a in range(0, n_train, step)]
        if sample_dims
        else [None]
    )

    def prepared(g: Group, sl: slice | None) -> np.ndarray:
        x = _load(ds, g, sl, dtype)
        if regrid is not None:
            x = dc.regrid(x, src_lat, src_lon, grid_lat, grid_lon, native=native, threads=threads)
        return x

    # -- pass 1: statistics ----------------------------------------------------------------
    stats: dict[str, dc.Stats] = {}
    total = (0 if given is not None else len(groups) * len(train_chunks)) + len(groups) * len(
        chunks
    )
    done = 0
    for g in groups:
        if given is not None:
            try:
                stats[g.label] = given.select(g.names)
            except ValueError as exc:
                raise UsageError(f"--stats-from {stats_from}: {exc}") from None
            continue
        acc = None
        for sl in train_chunks:
            say(f"stats {g.label}", done, total)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", dc.AllNaNWarning)
                s = dc.stats(prepared(g, sl), names=g.names, native=native, threads=threads)
            acc = s if acc is None else acc.merge(s)
            done += 1
        stats[g.label] = acc
    for g in groups:
        s = stats[g.label]
        for v, name in enumerate(g.names):
            if s.count[v] == 0:
                raise UserError(
                    f"variable {name} has no valid (non-NaN) values in the training samples; "
                    "drop it with --vars"
                )
            if not s.std[v] > 0:
                raise UserError(
                    f"variable {name} is constant (std 0) in the training samples: it cannot "
                    "be normalised; drop it with --vars"
                )

    # -- pass 2: normalise -> fill -> patch, chunk by chunk, into a temporary store ---------
    shapes: dict[str, tuple[int, ...]] = {}
    with _atomic_dir(out, overwrite) as (tmp, checkpoint):
        for i, sl in enumerate(chunks):
            parts = []
            for g in groups:
                checkpoint()
                say(f"write {g.label}", done, total)
                try:
                    res = dc.pipeline(
                        prepared(g, sl),
                        stats=stats[g.label],
                        fill=fill,
                        patch=patch,
                        native=native,
                        threads=threads,
                    )
                except ValueError as exc:  # a patch that does not fit, stats that do not match
                    raise UsageError(f"{g.label} ({', '.join(g.names)}): {exc}") from None
                parts.append(
                    _to_dataset(
                        ds,
                        g,
                        sl,
                        res.data,
                        stats[g.label],
                        patch,
                        fill,
                        lat,
                        lon,
                        grid_lat,
                        grid_lon,
                        regrid,
                    )
                )
                done += 1
            chunk_ds = _merge(parts, ds.attrs, src)
            _write(chunk_ds, tmp, first=i == 0, append_dim=_append_dim(sample_dims, patch))
        import xarray as xr
        import zarr

        zarr.consolidate_metadata(str(tmp))
        with xr.open_zarr(tmp, consolidated=True, chunks=None) as check:
            shapes = {v: tuple(check[v].shape) for v in all_names}
        # After consolidating: zarr warns about files it does not know while it lists a store.
        merged = _merge_stats(groups, stats, ds)
        merged.save(tmp / "stats.json")
        lineage.write_store_record(
            tmp,
            {
                "source": "preprocess",
                "options": {
                    "variables": list(all_names),
                    "stats_from": str(stats_from) if stats_from else None,
                    "split": split,
                    "train_fraction": train_fraction,
                    "regrid": regrid,
                    "patch": dataclasses.asdict(patch) if patch else None,
                    "fill": fill,
                },
                "input": lineage.input_record(src, kind="climate-cube"),
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        say("done", total, total)
    return PreprocessResult(
        out, out / "stats.json", groups, merged, shapes, time.perf_counter() - started, native
    )


def _append_dim(sample_dims: tuple[str, ...], patch: dc.PatchSpec | None) -> str | None:
    if patch is not None:
        return "sample"
    return sample_dims[0] if sample_dims else None


def _merge_stats(groups: list[Group], stats: dict[str, dc.Stats], ds) -> dc.Stats:
    merged = None
    for g in groups:
        s = stats[g.label]
        extra = {
            n: {
                "units": str(ds[n].attrs.get("units", "")),
                "long_name": str(ds[n].attrs.get("long_name", "")),
                "level_dim": g.level_dim,
            }
            for n in g.names
        }
        s = dc.Stats(s.count, s.mean, s.std, s.min, s.max, tuple(g.names), extra)
        merged = s if merged is None else _concat(merged, s)
    return merged


def _concat(a: dc.Stats, b: dc.Stats) -> dc.Stats:
    return dc.Stats(
        np.concatenate([a.count, b.count]),
        np.concatenate([a.mean, b.mean]),
        np.concatenate([a.std, b.std]),
        np.concatenate([a.min, b.min]),
        np.concatenate([a.max, b.max]),
        a.names + b.names,
        {**a.extra, **b.extra},
    )


def _to_dataset(ds, g, sl, y, st, patch, fill, lat, lon, grid_lat, grid_lon, regrid):
    import xarray as xr

    sample_dims = list(g.sample_dims)
    coords: dict[str, Any] = {}
    lead_shape = y.shape[: len(sample_dims)]
    sample_coords = {}
    for d in sample_dims:
        if d in ds.coords:
            c = ds[d] if (sl is None or d != sample_dims[0]) else ds[d].isel({d: sl})
            sample_coords[d] = c
    variables = {}
    for v, name in enumerate(g.names):
        attrs = dict(ds[name].attrs)
        attrs.update(
            astrobio_mean=float(st.mean[v]),
            astrobio_std=float(st.std[v]),
            astrobio_normalization="(x - astrobio_mean) / astrobio_std",
            astrobio_fill="none" if fill is None else str(fill),
        )
        if patch is None:
            a = y[..., v, :, :, :]  # (samples..., lev, lat, lon)
            if g.level_dim is None:
                a = a[..., 0, :, :]
            dims = [*sample_dims, *([g.level_dim] if g.level_dim else []), lat, lon]
        else:
            a = y[..., v, :, :, :]  # (samples..., tiles, lev, plat, plon)
            a = a.reshape(-1, *a.shape[-3:])  # (sample, lev, plat, plon)
            if g.level_dim is None:
                a = a[:, 0]
            dims = ["sample", *([g.level_dim] if g.level_dim else []), "lat", "lon"]
        variables[name] = xr.Variable(dims, a, attrs)
    if patch is None:
        coords.update({d: c.values for d, c in sample_coords.items()})
        coords[lat] = (
            lat,
            grid_lat if regrid is not None else ds[lat].values,
            dict(ds[lat].attrs) if regrid is None else {"units": "degrees_north"},
        )
        coords[lon] = (
            lon,
            grid_lon if regrid is not None else ds[lon].values,
            dict(ds[lon].attrs) if regrid is None else {"units": "degrees_east"},
        )
        if g.level_dim and g.level_dim in ds.coords:
            coords[g.level_dim] = (g.level_dim, ds[g.level_dim].values, dict(ds[g.level_dim].attrs))
    else:
        origins = patch.origins((*lead_shape, len(g.names), 1, grid_lat.size, grid_lon.size))
        ntiles = len(origins)
        nsamples = math.prod(lead_shape)
        coords["patch_lat0"] = ("sample", np.tile(origins[:, 1], nsamples))
        coords["patch_lon0"] = ("sample", np.tile(origins[:, 2], nsamples))
        for d, c in sample_coords.items():
            k = sample_dims.index(d)
            idx = np.indices(lead_shape)[k].reshape(-1)
            coords[f"sample_{d}"] = ("sample", np.repeat(np.asarray(c.values)[idx], ntiles))
        if g.level_dim and g.level_dim in ds.coords:
            if patch.lev:
                coords[f"patch_{g.level_dim}0"] = ("sample", np.tile(origins[:, 0], nsamples))
            else:
                coords[g.level_dim] = (
                    g.level_dim,
                    ds[g.level_dim].values,
                    dict(ds[g.level_dim].attrs),
                )
        coords["grid_lat"] = ("grid_lat", grid_lat, {"units": "degrees_north"})
        coords["grid_lon"] = ("grid_lon", grid_lon, {"units": "degrees_east"})
    return xr.Dataset(variables, coords=coords)


def _merge(parts, attrs, src: Path):
    import xarray as xr

    merged = xr.merge(parts, compat="override", join="outer", combine_attrs="override")
    merged.attrs = dict(attrs)
    history = str(attrs.get("history", ""))
    merged.attrs["history"] = (
        history + "\n" if history else ""
    ) + f"astrobio preprocess {src.name}"
    return merged


def _write(chunk_ds, tmp: Path, first: bool, append_dim: str | None) -> None:
    if first:
        encoding = {v: {"chunks": chunk_ds[v].shape} for v in chunk_ds.data_vars}
        chunk_ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=False, encoding=encoding)
    else:
        if append_dim is None:
            raise AssertionError("several chunks need a sample dim")
        keep = [v for v in chunk_ds.variables if append_dim in chunk_ds[v].dims]
        chunk_ds[keep].to_zarr(tmp, append_dim=append_dim, zarr_format=2, consolidated=False)
