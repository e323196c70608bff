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

Besides the lat-lon fields, two kinds of variables travel with the samples so that a store
keeps everything a model needs (e.g. the planet parameters of `synthetic-climate`):

- per-sample scalars, variables whose dims are exactly the sample dims (`stellar_flux
  (sample,)`): normalised with their own train stats (`kind: scalar` in stats.json) and, with
  `--patch`, repeated for every tile of their sample;
- zonal fields, `(samples..., lat)` (`rsdt`): broadcast over longitude first, so they regrid and
  tile with the grid; they come out as `(samples..., lat, lon)` with `astrobio_zonal = 1`.

Without `--vars` every lat-lon field, zonal field and per-sample scalar is taken.

Output: a Zarr store (format 2, consolidated metadata: readable by zarr 2 and 3 and
`xarray.open_zarr`). Without `--patch` every variable keeps its dims; with `--patch` the sample
dims and the tiles are flattened into one `sample` dim and the tile axes are named `lat`/`lon`
(so `astrobio_cli.data.datasets.CubeDataset` can read it), with `patch_lat0`/`patch_lon0` (first
grid index of each tile; negative inside the padding) and `sample_<dim>` coordinates. Units and
attributes are carried over; `astrobio_mean`/`astrobio_std` attributes say how to undo the
normalisation. The stats are written as `stats.json` inside the store, and `provenance.json`
records the options, the input and which samples the stats came from (`train_samples`: the first
that many of the first sample dim; all of them for `--split all`). Zarr chunks hold about
`READ_CHUNK_BYTES` along the first dim, so a training loader that reads one sample (or tile) at a
time decompresses little. Everything is written to
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
import threading
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
READ_CHUNK_BYTES = 256 * 2**10  # bytes per Zarr chunk of the output (cheap random reads)

Progress = Callable[[str, int, int], None]  # (description, done, total)


@dataclass
class Group:
    """Variables sharing (sample dims, level dim): processed as one cube."""

    sample_dims: tuple[str, ...]
    level_dim: str | None
    names: list[str] = field(default_factory=list)
    zonal: set[str] = field(default_factory=set)  # (samples..., lat): broadcast over lon

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
    """Group the chosen lat-lon and zonal variables by (sample dims, level dim); returns
    (groups, lat, lon). Per-sample scalars named in `names` are left to :func:`plan_scalars`."""
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
        grid_samples = {tuple(ds[v].dims[:-2]) for v in chosen}
        # zonal fields over the same leading (sample) dims as a surface field
        chosen += [
            v
            for v in data_vars
            if _is_zonal(ds, v, lat, lon) and tuple(ds[v].dims[:-1]) in grid_samples
        ]
    groups: dict[tuple, Group] = {}
    fields = [n for n in chosen if _is_zonal(ds, n, lat, lon) or ds[n].dims[-2:] == (lat, lon)]
    if names and not fields:
        raise UsageError(f"--vars names no variable with ({lat}, {lon}) as its last dims")
    for name in chosen:
        vdims = tuple(str(d) for d in ds[name].dims)
        if _is_zonal(ds, name, lat, lon):
            sample, level = vdims[:-1], None
        elif vdims[-2:] != (lat, lon):
            if names and not any(d in (lat, lon) for d in vdims):
                continue  # a per-sample scalar: plan_scalars checks it
            raise UsageError(
                f"variable {name} has dims {vdims}; its last two must be ({lat}, {lon})"
            )
        else:
            level = vdims[-3] if len(vdims) >= 3 and _is_level(ds, vdims[-3]) else None
            sample = vdims[: len(vdims) - 2 - (level is not None)]
        if len(sample) > 3:
            raise UsageError(f"variable {name} has {len(sample)} sample dims; at most 3")
        g = groups.setdefault((sample, level), Group(sample, level))
        g.names.append(name)
        if _is_zonal(ds, name, lat, lon):
            g.zonal.add(name)
    out = list(groups.values())
    sample_sets = {g.sample_dims for g in out}
    if len(sample_sets) > 1:
        raise UsageError(
            "the chosen variables have different sample dims "
            f"({'; '.join(str(s) for s in sample_sets)}); pick variables that agree with --vars"
        )
    return out, lat, lon


def _is_zonal(ds, name: str, lat: str, lon: str) -> bool:
    """(samples..., lat) with at least one sample dim and a float dtype: e.g. insolation."""
    da = ds[name]
    return len(da.dims) >= 2 and da.dims[-1] == lat and lon not in da.dims and da.dtype.kind == "f"


def plan_scalars(ds, names: Sequence[str] | None, sample_dims: tuple[str, ...]) -> list[str]:
    """Per-sample scalars: numeric variables whose dims are exactly `sample_dims`."""
    if not sample_dims:
        return []

    def fits(v: str) -> bool:
        return tuple(ds[v].dims) == sample_dims and ds[v].dtype.kind in "fiu"

    if names:
        out = []
        for n in names:
            da = ds[n]
            if any(str(d) in LAT_NAMES + LON_NAMES for d in da.dims) or _is_zonal_dims(da):
                continue
            if not fits(n):
                raise UsageError(
                    f"variable {n} has dims {tuple(da.dims)}: a per-sample scalar must have "
                    f"exactly the sample dims {sample_dims} (and a numeric dtype)"
                )
            out.append(n)
        return out
    return [str(v) for v in ds.data_vars if fits(str(v))]


def _is_zonal_dims(da) -> bool:
    return bool(da.dims) and str(da.dims[-1]).lower() in LAT_NAMES


def _float_dtype(ds, names: Sequence[str]) -> np.dtype:
    return np.dtype(np.float64 if any(ds[n].dtype == np.float64 for n in names) else np.float32)


def _read(da, name: str, src: Path, dtype: Any = None) -> np.ndarray:
    """The values of `da` (variable `name` of `src`); unreadable data is a one-line error."""
    try:
        return np.asarray(da.values, dtype=dtype)
    except MemoryError:
        raise
    except Exception as exc:
        raise UserError(
            f"cannot read variable {name} of {src} ({type(exc).__name__}: {exc}): the file is "
            "corrupt or truncated; fetch or write it again"
        ) from None


def _load(
    ds, g: Group, sl: slice | None, dtype: np.dtype, nlon: int, src: Path = Path("input")
) -> np.ndarray:
    """(samples..., var, lev, lat, lon) for the samples `sl` of the first sample dim."""
    arrays = []
    for name in g.names:
        da = ds[name]
        if sl is not None:
            da = da.isel({g.sample_dims[0]: sl})
        a = _read(da, name, src, dtype)
        if name in g.zonal:  # (samples..., lat) -> (samples..., lat, lon), constant in lon
            a = np.repeat(a[..., None], nlon, axis=-1)
        if g.level_dim is None:
            a = a[..., None, :, :]
        arrays.append(a)
    return np.stack(arrays, axis=-4)


def _prepared(
    ds, g: Group, sl: slice | None, dtype: np.dtype, src: Path, src_lat, src_lon,
    grid_lat, grid_lon, regrid: float | None, native: bool, threads: int,
) -> np.ndarray:  # fmt: skip
    """The cube of group `g` for the samples `sl`, read and (with `regrid`) regridded."""
    x = _load(ds, g, sl, dtype, src_lon.size, src)
    if regrid is not None:
        x = dc.regrid(x, src_lat, src_lon, grid_lat, grid_lon, native=native, threads=threads)
    return x


def _chunk_stats(x: np.ndarray, g: Group, native: bool, threads: int) -> dc.Stats:
    """The stats of one chunk of group `g` (pass 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dc.AllNaNWarning)
        return dc.stats(x, names=g.names, native=native, threads=threads)


def _merge_chunk_stats(parts: Sequence[dc.Stats]) -> dc.Stats:
    """The chunk stats of one group merged in chunk order (parallel Welford): the same order,
    so the same bits, whoever computed the parts (this process or Dask workers)."""
    acc = None
    for s in parts:
        acc = s if acc is None else acc.merge(s)
    if acc is None:
        raise AssertionError("no chunk stats to merge")
    return acc


def _chunk_dataset(
    ds, g: Group, sl: slice | None, x: np.ndarray, st: dc.Stats, patch, fill, native, threads,
    lat, lon, grid_lat, grid_lon, regrid,
):  # fmt: skip
    """Pass 2 for one chunk of group `g`: normalise -> fill -> patch, as a Dataset."""
    try:
        res = dc.pipeline(x, stats=st, fill=fill, patch=patch, native=native, threads=threads)
    except ValueError as exc:  # a patch that does not fit, stats that differ
        raise UsageError(f"{g.label} ({', '.join(g.names)}): {exc}") from None
    return _to_dataset(ds, g, sl, res.data, st, patch, fill, lat, lon, grid_lat, grid_lon, regrid)


def _clean_stale(out: Path) -> None:
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(p.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            continue  # a live run owns it
        shutil.rmtree(p, ignore_errors=True)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during a run."""


# Names a variable or coordinate of the output must not take: files preprocess writes into the
# store (and their temporary names), Zarr's own metadata files, and path separators.
RESERVED_FILES = ("stats.json", "provenance.json", "zarr.json")
POLL_S = 0.05  # how often the main thread looks for a signal while a worker computes


class _Stop:
    """SIGINT and SIGTERM during a run. The first one raises :class:`Interrupted` at once, except
    inside :meth:`deferred` (zarr writes from a background thread: stopping in the middle of a
    write would let that thread recreate files after the cleanup), where it is noted and raised
    by the next :meth:`checkpoint`. Later signals are only noted, so the cleanup runs to its
    end."""

    def __init__(self) -> None:
        self.caught: list[int] = []
        self.immediate = True
        self.raised = False

    def note(self, signum, frame) -> None:
        self.caught.append(signum)
        if self.immediate and not self.raised:
            self.raised = True
            raise Interrupted(f"signal {signum}")

    def checkpoint(self) -> None:
        if self.caught and not self.raised:
            self.raised = True
            raise Interrupted(f"signal {self.caught[0]}")

    @contextlib.contextmanager
    def deferred(self, immediate: bool = False):
        before, self.immediate = self.immediate, immediate
        try:
            yield
        finally:
            self.immediate = before


@contextlib.contextmanager
def _signals():
    """For the whole run, SIGINT and SIGTERM go to a :class:`_Stop`; yields it, and whether the
    handlers are installed (only the main thread can). Installed even where the parent ignored
    SIGINT (a job started with `&` from a script), as the write pass always did: a run stops at
    any phase, not only while it writes."""
    stop = _Stop()
    old = {}
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, stop.note)
    try:
        yield stop, bool(old)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _interruptible(fn: Callable[[], Any], stop: _Stop, watch: bool) -> Any:
    """`fn()` (reading, regridding, a native kernel: seconds for a large chunk) in a daemon
    thread while the main thread waits, ready for a signal: a run stops within a second even in
    the middle of a chunk. `fn` only reads and computes (the main thread writes), so leaving it
    running costs nothing but CPU until the process exits."""
    stop.checkpoint()
    if not watch:
        return fn()
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    t = threading.Thread(target=work, name="astrobio-preprocess", daemon=True)
    t.start()
    with stop.deferred(immediate=True):
        stop.checkpoint()
        while not done.wait(POLL_S):
            stop.checkpoint()
    stop.checkpoint()
    if "error" in box:
        raise box["error"]
    return box["value"]


def is_own_store(path: Path) -> bool:
    """A Zarr store written by `astrobio preprocess`: a directory with its `stats.json` and a
    `provenance.json` that says `"source": "preprocess"`."""
    import json

    record = path / lineage.STORE_RECORD
    if path.is_symlink() or not path.is_dir() or not (path / "stats.json").is_file():
        return False
    try:
        return json.loads(record.read_text(encoding="utf-8")).get("source") == "preprocess"
    except (OSError, ValueError, AttributeError):
        return False


def _check_out(src: Path, out: Path, overwrite: bool) -> None:
    """Before any work: OUT may not be the input, hold it or lie inside it, and only a store
    this tool wrote is replaced (with --overwrite)."""
    s, o = src.resolve(), out.resolve()
    if o == s:
        raise UsageError(f"OUT {out} is the input {src}; write to another path")
    if o in s.parents:
        raise UsageError(
            f"OUT {out} holds the input {src}: replacing it would delete the input; "
            "write to another path"
        )
    if s in o.parents:
        raise UsageError(f"OUT {out} lies inside the input {src}; write to a path outside it")
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it")
    if not is_own_store(out):
        raise UsageError(
            f"{out} exists and is not a store written by astrobio preprocess (no stats.json and "
            "provenance.json of preprocess in it): --overwrite replaces only such stores; "
            "remove it yourself or choose another OUT"
        )


def _check_names(
    variables: Sequence[str], coords: Sequence[str], generated: Sequence[str] = ()
) -> None:
    """Every variable and coordinate becomes a directory of the store: none may be named like
    a file preprocess or Zarr writes there or hold a path separator, and no variable may clash
    with a coordinate preprocess adds."""
    for name in [*variables, *coords]:
        if (
            not name
            or name.startswith(".")
            or name.startswith(RESERVED_FILES)
            or "/" in name
            or "\\" in name
            or (name in generated and name in variables)
        ):
            taken = ", ".join((*RESERVED_FILES, *generated))
            raise UsageError(
                f"variable or coordinate {name!r} of the input cannot be written: its name is "
                f"empty, starts with '.', holds a '/', or is taken by what preprocess writes "
                f"into OUT ({taken}); rename it in the input or leave it out with --vars"
            )


def _human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if nbytes < 1000 or unit == "PB":
            return f"{nbytes:.3g} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1000
    raise AssertionError


def _free_disk(out: Path) -> tuple[Path, int]:
    where = out.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    return where, shutil.disk_usage(where).free


def _memory_bound() -> int:
    """The memory one step may use: what the system has available now."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # no psutil, or no /proc: physical memory
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


@contextlib.contextmanager
def _atomic_dir(out: Path, overwrite: bool, checkpoint: Callable[[], None]):
    """Yields a temporary directory next to `out`; renames it to `out` on success (replacing
    `out` only where :func:`is_own_store` says it is a store of this tool)."""
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        checkpoint()
        if out.exists() or out.is_symlink():
            if not is_own_store(out):  # appeared or changed while this run worked
                raise UsageError(
                    f"{out} appeared during the run and is not a store written by astrobio "
                    "preprocess; it was left alone"
                )
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    scheduler: str | None = None,
) -> PreprocessResult:
    """Preprocess `src` into the Zarr store `out` (see the module docstring). With `scheduler`
    (a dask.distributed address or `local:N`) the chunks run as Dask tasks
    (:mod:`astrobio_cli.preprocess_dask`); the store is the same, bit for bit."""
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
    task_threads = threads  # --scheduler: kernel threads per Dask task (default: per worker)
    try:
        threads = dc.thread_count(threads)
    except ValueError as exc:  # over the bound, from the argument or the setting
        raise UsageError(str(exc)) from None
    try:
        given = dc.Stats.load(stats_from) if stats_from is not None else None
        target = None if regrid is None else dc.regular_grid(regrid)
    except ValueError as exc:
        raise UsageError(
            f"--{'regrid' if 'grid step' in str(exc) else 'stats-from'}: {exc}"
        ) from None

    _check_out(src, out, overwrite)  # before any work
    if scheduler is not None:
        from astrobio_cli import preprocess_dask

        preprocess_dask.check(scheduler)  # the dask extra, a well-formed address
    with _signals() as (stop, watch), contextlib.ExitStack() as stack:
        ds = _open(src)
        groups, lat, lon = plan_groups(ds, variables)
        scalars = plan_scalars(ds, variables, groups[0].sample_dims)
        src_lat = _read(ds[lat], lat, src, np.float64)
        src_lon = _read(ds[lon], lon, src, np.float64)
        grid_lat, grid_lon = (src_lat, src_lon) if target is None else target
        sample_dims = groups[0].sample_dims
        n = int(ds.sizes[sample_dims[0]]) if sample_dims else 1
        n_train = max(1, math.ceil(train_fraction * n)) if split == "train" else n

        all_names = [v for g in groups for v in g.names]
        dtype = _float_dtype(ds, all_names)
        # (samples..., nscalar) in memory: one number per sample and variable
        scalar_values = (
            np.stack([_read(ds[v], v, src, np.float64) for v in scalars], axis=-1)
            if scalars
            else None
        )
        if patch is not None and patch.lev and len(groups) > 1:
            raise UsageError(
                "level tiles (--patch LEVxLATxLON) need variables that share one level dim; "
                f"these have {', '.join(g.label for g in groups)}: choose them with --vars"
            )
        level_dims = [g.level_dim for g in groups if g.level_dim]
        _check_names(
            [*all_names, *scalars],
            [*sample_dims, lat, lon, *level_dims],
            _generated_names(sample_dims, level_dims) if patch is not None else (),
        )
        # Samples per step: about CHUNK_BYTES of input (after regridding) per step.
        grow = max(1.0, grid_lat.size * grid_lon.size / max(1, src_lat.size * src_lon.size))
        per_sample = sum(ds[v].size for v in all_names) // max(n, 1) * dtype.itemsize * grow
        step = chunk or max(1, int(CHUNK_BYTES // max(per_sample, 1)))
        step = _check_sizes(
            ds, groups, scalars, sample_dims, n, src_lat, src_lon, grid_lat, grid_lon, patch,
            dtype, step, chunk, out,
        )  # fmt: skip
        stop.checkpoint()
        chunks = [slice(a, min(a + step, n)) for a in range(0, n, step)] if sample_dims else [None]
        train_chunks = (
            [slice(a, min(a + step, n_train)) for a in range(0, n_train, step)]
            if sample_dims
            else [None]
        )

        def prepared(g: Group, sl: slice | None) -> np.ndarray:
            return _prepared(
                ds, g, sl, dtype, src, src_lat, src_lon, grid_lat, grid_lon, regrid, native,
                threads,
            )  # fmt: skip

        cluster = None
        if scheduler is not None:  # connected (or started) before anything is written
            from astrobio_cli import preprocess_dask

            job = preprocess_dask.Job(
                src, dtype, lat, lon, src_lat, src_lon, grid_lat, grid_lon, regrid, patch, fill,
                native, task_threads, sample_dims, tuple(scalars),
            )  # fmt: skip
            cluster = stack.enter_context(preprocess_dask.connect(scheduler, job, out))

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
            if cluster is not None:  # the same chunks on the Dask workers, merged here
                parts, done = cluster.stats(g, train_chunks, say, done, total, stop)
                stats[g.label] = _merge_chunk_stats(parts)
                continue
            parts = []
            for sl in train_chunks:
                say(f"stats {g.label}", done, total)

                def chunk_stats(g=g, sl=sl) -> dc.Stats:
                    return _chunk_stats(prepared(g, sl), g, native, threads)

                parts.append(_interruptible(chunk_stats, stop, watch))
                done += 1
            stats[g.label] = _merge_chunk_stats(parts)
        if scalar_values is not None:
            if given is not None:
                try:
                    stats[SCALAR_LABEL] = given.select(scalars)
                except ValueError as exc:
                    raise UsageError(f"--stats-from {stats_from}: {exc}") from None
            else:
                train_scalars = scalar_values[:n_train].reshape(-1, len(scalars), 1, 1, 1)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", dc.AllNaNWarning)
                    stats[SCALAR_LABEL] = dc.stats(
                        train_scalars, names=scalars, native=native, threads=threads
                    )
        checked = [(g.label, g.names) for g in groups]
        if scalar_values is not None:
            checked.append((SCALAR_LABEL, scalars))
        for label, names in checked:
            s = stats[label]
            for v, name in enumerate(names):
                if s.count[v] == 0:
                    raise UserError(
                        f"variable {name} has no valid (finite) values in the training samples; "
                        "drop it with --vars"
                    )
                if not s.std[v] > 0:
                    raise UserError(
                        f"variable {name} is constant (std 0) in the training samples: it cannot "
                        "be normalised; drop it with --vars"
                    )

        # -- pass 2: normalise -> fill -> patch, chunk by chunk, into a temporary store ---------
        shapes: dict[str, tuple[int, ...]] = {}
        with stop.deferred(), _atomic_dir(out, overwrite, stop.checkpoint) as tmp:
            if cluster is not None:  # the workers write every chunk of every array
                done = cluster.write(
                    tmp, ds, groups, chunks, stats, scalar_values, say, done, total, stop
                )
            for i, sl in enumerate(chunks if cluster is None else ()):
                parts = []
                for g in groups:
                    stop.checkpoint()
                    say(f"write {g.label}", done, total)

                    def chunk_dataset(g=g, sl=sl):
                        return _chunk_dataset(
                            ds, g, sl, prepared(g, sl), stats[g.label], patch, fill, native,
                            threads, lat, lon, grid_lat, grid_lon, regrid,
                        )  # fmt: skip

                    parts.append(_interruptible(chunk_dataset, stop, watch))
                    done += 1
                if scalar_values is not None:
                    parts.append(
                        _scalars_dataset(
                            ds,
                            scalars,
                            groups[0].sample_dims,
                            scalar_values if sl is None else scalar_values[sl],
                            stats[SCALAR_LABEL],
                            patch,
                            _tiles_per_sample(groups, patch, grid_lat, grid_lon),
                            native,
                        )
                    )
                chunk_ds = _merge(parts, ds.attrs, src)
                _write(chunk_ds, tmp, first=i == 0, append_dim=_append_dim(sample_dims, patch))
            import xarray as xr
            import zarr

            zarr.consolidate_metadata(str(tmp))
            with xr.open_zarr(tmp, consolidated=True, chunks=None) as check:
                shapes = {v: tuple(check[v].shape) for v in [*all_names, *scalars]}
            # After consolidating: zarr warns about files it does not know while it lists a store.
            merged = _merge_stats(groups, stats, ds, scalars)
            merged.save(tmp / "stats.json")
            lineage.write_store_record(
                tmp,
                {
                    "source": "preprocess",
                    "options": {
                        "variables": [*all_names, *scalars],
                        "stats_from": str(stats_from) if stats_from else None,
                        "split": split,
                        "train_fraction": train_fraction,
                        "regrid": regrid,
                        "patch": dataclasses.asdict(patch) if patch else None,
                        "fill": fill,
                    },
                    "scalars": list(scalars),
                    "zonal": sorted(v for g in groups for v in g.zonal),
                    "sample_dims": list(sample_dims),
                    "samples": n,
                    # the samples the stats came from: the first `train_samples` of the first
                    # sample dim (given stats: none of this store's samples)
                    "train_samples": 0 if given is not None else n_train,
                    "input": lineage.input_record(src, kind="climate-cube"),
                    "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            )
            say("done", total, total)
        return PreprocessResult(
            out, out / "stats.json", groups, merged, shapes, time.perf_counter() - started, native
        )


def _generated_names(sample_dims: Sequence[str], level_dims: Sequence[str]) -> list[str]:
    """The coordinates `--patch` adds to the store."""
    return [
        "sample",
        "patch_lat0",
        "patch_lon0",
        "grid_lat",
        "grid_lon",
        *(f"sample_{d}" for d in sample_dims),
        *(f"patch_{d}0" for d in level_dims),
    ]


def _check_sizes(
    ds, groups, scalars, sample_dims, n, src_lat, src_lon, grid_lat, grid_lon, patch, dtype,
    step, chunk, out,
) -> int:  # fmt: skip
    """Before any work: the output must fit the free disk and one step the available memory.

    Estimates in exact integer arithmetic (a padding of 10**12 rows is a number here, not an
    allocation). Returns the samples per step, lowered where memory needs it."""
    size = dtype.itemsize
    inner = math.prod(int(ds.sizes[d]) for d in sample_dims[1:])
    nlat, nlon = int(grid_lat.size), int(grid_lon.size)
    src_pts = int(src_lat.size) * int(src_lon.size)
    out_per, peak_per, tiles = 0, 0, 1
    for g in groups:
        nvar = len(g.names)
        nlev = int(ds.sizes[g.level_dim]) if g.level_dim else 1
        grid = nvar * nlev * nlat * nlon * size
        if patch is None:
            field_out, padded = grid, 0
        else:
            try:
                lt, yt, xt, lev_size = patch.grid((1, nvar, nlev, nlat, nlon))
            except ValueError as exc:
                raise UsageError(f"{g.label} ({', '.join(g.names)}): {exc}") from None
            tiles = lt * yt * xt
            field_out = tiles * nvar * lev_size * patch.lat * patch.lon * size
            padded = nvar * nlev * (nlat + 2 * patch.lat_pad) * nlon * size
        out_per += field_out
        # the input as read, regridded, padded, normalised and cut, and its copy for writing
        peak_per += nvar * nlev * src_pts * size + 2 * grid + padded + 2 * field_out
    out_per += len(scalars) * tiles * 8
    out_per *= inner
    peak_per *= inner
    total = out_per * max(n, 1)
    where, free = _free_disk(out)
    if total > free:
        raise UserError(
            f"the output would be about {_human(total)} ({max(n, 1) * inner} samples of "
            f"{_human(out_per)}, uncompressed), more than the {_human(free)} free on {where}: "
            "choose a coarser --regrid, a smaller --pad or --patch stride, or fewer --vars"
        )
    bound = _memory_bound()
    if peak_per > bound:
        raise UserError(
            f"one sample needs about {_human(peak_per)} of memory to process, more than the "
            f"{_human(bound)} available: choose a coarser --regrid, a smaller --pad or fewer "
            "--vars"
        )
    if step * peak_per > bound:
        if chunk:
            raise UserError(
                f"--chunk {chunk} needs about {_human(step * peak_per)} of memory per step, "
                f"more than the {_human(bound)} available: use --chunk "
                f"{max(1, bound // peak_per)} or less"
            )
        step = max(1, bound // peak_per)
    return step


def _append_dim(sample_dims: tuple[str, ...], patch: dc.PatchSpec | None) -> str | None:
    if patch is not None:
        return "sample"
    return sample_dims[0] if sample_dims else None


SCALAR_LABEL = "\0scalars"  # the key of the per-sample scalars' stats (no level dim is named so)


def _merge_stats(
    groups: list[Group], stats: dict[str, dc.Stats], ds, scalars: Sequence[str] = ()
) -> dc.Stats:
    merged = None
    parts = [(g.label, g.names, g.level_dim, g.zonal) for g in groups]
    if scalars:
        parts.append((SCALAR_LABEL, list(scalars), None, set()))
    for label, names, level_dim, zonal in parts:
        s = stats[label]
        extra = {
            n: {
                "units": str(ds[n].attrs.get("units", "")),
                "long_name": str(ds[n].attrs.get("long_name", "")),
                "level_dim": level_dim,
                "kind": "scalar" if label == SCALAR_LABEL else "zonal" if n in zonal else "field",
            }
            for n in names
        }
        s = dc.Stats(s.count, s.mean, s.std, s.min, s.max, tuple(names), extra)
        merged = s if merged is None else _concat(merged, s)
    return merged


def _tiles_per_sample(groups, patch, grid_lat, grid_lon) -> int:
    if patch is None:
        return 1
    g = groups[0]
    return len(patch.origins((len(g.names), 1, grid_lat.size, grid_lon.size)))


def _scalars_dataset(ds, names, sample_dims, values, st, patch, ntiles, native):
    """The per-sample scalars of one chunk, normalised; repeated per tile with `--patch`."""
    import xarray as xr

    lead = values.shape[:-1]
    x = values.reshape(-1, len(names), 1, 1, 1)
    y = dc.normalize(x, st, native=native, threads=1).reshape(*lead, len(names))
    out = {}
    for v, name in enumerate(names):
        attrs = dict(ds[name].attrs)
        attrs.update(
            astrobio_mean=float(st.mean[v]),
            astrobio_std=float(st.std[v]),
            astrobio_normalization="(x - astrobio_mean) / astrobio_std",
            astrobio_fill="none",
        )
        a = y[..., v].astype(ds[name].dtype if ds[name].dtype.kind == "f" else np.float64)
        if patch is None:
            out[name] = xr.Variable(list(sample_dims), a, attrs)
        else:
            out[name] = xr.Variable(["sample"], np.repeat(a.reshape(-1), ntiles), attrs)
    return xr.Dataset(out)


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
        if name in g.zonal:
            attrs["astrobio_zonal"] = 1  # broadcast over longitude from (samples..., lat)
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


def _read_chunks(da, append_dim: str | None) -> tuple[int, ...]:
    """About READ_CHUNK_BYTES per chunk along the first dim (the append dim), whole fields."""
    shape = tuple(da.shape)
    if not shape or append_dim is None or da.dims[0] != append_dim:
        return shape
    per_item = max(1, math.prod(shape[1:]) * da.dtype.itemsize)
    return (max(1, min(shape[0], READ_CHUNK_BYTES // per_item)), *shape[1:])


def _write(chunk_ds, tmp: Path, first: bool, append_dim: str | None) -> None:
    if first:
        encoding = {
            v: {"chunks": _read_chunks(chunk_ds[v], append_dim)} for v in chunk_ds.data_vars
        }
        chunk_ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=False, encoding=encoding)
    else:
        if append_dim is None:
            raise AssertionError("several chunks need a sample dim")
        keep = [v for v in chunk_ds.variables if append_dim in chunk_ds[v].dims]
        chunk_ds[keep].to_zarr(tmp, append_dim=append_dim, zarr_format=2, consolidated=False)
