"""`astrobio preprocess ... --scheduler ADDRESS`: the same pipeline as tasks on a Dask cluster.

`ADDRESS` is a dask.distributed scheduler (`tcp://host:8786`) or `local:N`, a LocalCluster of
N worker processes with one thread each on loopback, shut down at the end. Everything that
decides the result is shared with the single-node run in :mod:`astrobio_cli.preprocess`: the
plan (groups, dtype, chunk list), the kernels (:func:`~astrobio_cli.preprocess._prepared`,
:func:`~astrobio_cli.preprocess._chunk_stats`, :func:`~astrobio_cli.preprocess._chunk_dataset`)
and the fixed-order Welford merge of the chunk stats
(:func:`~astrobio_cli.preprocess._merge_chunk_stats`), so the store is bit-identical to the
single-node run's:

- pass 1: one task per (group, chunk of the train samples), the single-node chunk list; the
  client gathers the chunk stats and merges them in chunk order;
- the client writes the store's skeleton into the temporary directory: metadata of every
  array (the same Zarr chunks as the single-node run) and the coordinates;
- pass 2: one task per (group, run of samples whose rows start and end on a Zarr chunk boundary
  of every array of the group): the worker reads, regrids, normalises and cuts its samples and
  writes them with a region write, so every Zarr chunk is written by exactly one task;
- the client consolidates the metadata, writes stats.json and provenance.json and renames the
  temporary directory into place, as the single-node run does.

The workers read IN and write next to OUT by path: on a cluster of several machines both must
be on a filesystem every worker shares (checked before any work).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astrobio_cli import datacube as dc
from astrobio_cli import preprocess as pp
from astrobio_cli.errors import UsageError, UserError

DASK_EXTRA = "--scheduler needs the dask extra: pip install 'astrobio[dask]'"
POLL_S = 0.05  # how often the client looks at its futures (and for a signal)
DRAIN_S = 60.0  # after a failure: how long to wait for tasks still writing into the temp store


def check(scheduler: str) -> str | int:
    """Before any work: the dask extra is installed and `scheduler` is `local:N` (returns N) or
    a scheduler address (returned as given)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError(DASK_EXTRA) from None
    text = scheduler.strip()
    if text == "local" or text.startswith("local:"):
        n = text.partition(":")[2]
        if not n.isdigit() or int(n) < 1:
            raise UsageError(
                f"--scheduler {scheduler!r}: local:N needs a number of worker processes N >= 1, "
                "e.g. local:2"
            )
        return int(n)
    from distributed.comm import parse_address

    try:
        proto, loc = parse_address(text)
    except ValueError as exc:
        raise UsageError(
            f"--scheduler {scheduler!r}: {exc}; e.g. tcp://host:8786 or local:2"
        ) from None
    from distributed.comm.registry import get_backend

    try:
        get_backend(proto)
    except ValueError:
        raise UsageError(
            f"--scheduler {scheduler!r}: unknown protocol {proto!r}; e.g. tcp://host:8786 or "
            "local:2"
        ) from None
    if proto in ("tcp", "tls") and not loc.rpartition(":")[2].isdigit():
        raise UsageError(
            f"--scheduler {scheduler!r} has no port: give the scheduler's address with its "
            "port, e.g. tcp://host:8786, or local:N"
        )
    return text


@dataclass(frozen=True)
class Job:
    """What a worker needs besides the chunk: picklable, small (coordinates, not data)."""

    src: Path
    dtype: np.dtype
    lat: str
    lon: str
    src_lat: np.ndarray
    src_lon: np.ndarray
    grid_lat: np.ndarray
    grid_lon: np.ndarray
    regrid: float | None
    patch: dc.PatchSpec | None
    fill: str | float | None
    native: bool
    threads: int | None  # kernel threads per task (None: see connect)
    sample_dims: tuple[str, ...]
    scalars: tuple[str, ...]

    def prepared(self, ds, g: pp.Group, sl: slice | None) -> np.ndarray:
        return pp._prepared(
            ds, g, sl, self.dtype, self.src, self.src_lat, self.src_lon, self.grid_lat,
            self.grid_lon, self.regrid, self.native, self.threads,
        )  # fmt: skip

    @property
    def append_dim(self) -> str | None:
        return pp._append_dim(self.sample_dims, self.patch)

    @property
    def tiles(self) -> int:
        return 1 if self.patch is None else len(self.patch.origins((1, 1, 1, *self.grid_shape)))

    @property
    def grid_shape(self) -> tuple[int, int]:
        return int(self.grid_lat.size), int(self.grid_lon.size)


# -- on the workers ----------------------------------------------------------------------------

_OPEN: dict[tuple[str, int], Any] = {}  # one open input per worker process


def _dataset(src: Path):
    key = (str(src), os.stat(src).st_mtime_ns)
    if key not in _OPEN:
        for old in _OPEN.values():
            with contextlib.suppress(Exception):
                old.close()
        _OPEN.clear()
        _OPEN[key] = pp._open(src)
    return _OPEN[key]


def task_stats(job: Job, g: pp.Group, sl: slice | None) -> dc.Stats:
    """Pass 1, one chunk of one group: its stats (merged by the client, in chunk order)."""
    ds = _dataset(job.src)
    return pp._chunk_stats(job.prepared(ds, g, sl), g, job.native, job.threads)


def task_write(
    job: Job, tmp: str, g: pp.Group | None, sl: slice | None, rows: slice | None, st: dc.Stats,
    values: np.ndarray | None = None,
) -> int:  # fmt: skip
    """Pass 2, the samples `sl` of group `g` (None: the per-sample scalars, `values`):
    normalise -> fill -> patch and write rows `rows` of its arrays. Returns the bytes read."""
    ds = _dataset(job.src)
    if g is None:
        part = pp._scalars_dataset(
            ds, list(job.scalars), job.sample_dims, values, st, job.patch, job.tiles, job.native
        )
        names, nbytes = list(job.scalars), 0
    else:
        x = job.prepared(ds, g, sl)
        part = pp._chunk_dataset(
            ds, g, sl, x, st, job.patch, job.fill, job.native, job.threads, job.lat, job.lon,
            job.grid_lat, job.grid_lon, job.regrid,
        )  # fmt: skip
        names, nbytes = list(g.names), int(x.nbytes)
    _write_region(part, names, Path(tmp), job.append_dim, rows)
    return nbytes


def _write_region(part, names: Sequence[str], tmp: Path, append_dim, rows) -> None:
    """Rows `rows` (whole Zarr chunks, or up to the end of the array) of the arrays `names`,
    encoded by xarray exactly as the single-node run's appends encode them."""
    import xarray as xr

    sub = xr.Dataset({n: part[n].variable for n in names})
    region = None if rows is None else {append_dim: rows}
    sub.to_zarr(tmp, region=region, mode="r+", zarr_format=2, consolidated=False)


def _can_see(paths: Sequence[str]) -> list[str]:
    return [p for p in paths if not os.path.exists(p)]


def _busy(prefix: str, dask_worker=None) -> int:
    """Tasks of this run still running on a worker (a cancelled task runs to its end)."""
    return sum(1 for ts in dask_worker.state.executing if str(ts.key).startswith(prefix))


# -- on the client -----------------------------------------------------------------------------


@contextlib.contextmanager
def connect(scheduler: str, job: Job, out: Path) -> Iterator[Cluster]:
    """A client of `scheduler` (a LocalCluster for `local:N`, closed at the end). Fails with
    one line, before anything is written, when the scheduler cannot be reached or a worker
    cannot see IN or the directory of OUT."""
    import logging

    from distributed import Client, LocalCluster

    target = check(scheduler)
    if job.threads is None:  # local:N shares this machine's cores; a worker elsewhere: 1 slot
        cores = dc.max_threads() // dc.THREADS_PER_CORE
        job = dataclasses.replace(
            job, threads=max(1, cores // target) if isinstance(target, int) else 1
        )
    with contextlib.ExitStack() as stack:
        if isinstance(target, int):
            try:
                local = LocalCluster(
                    n_workers=target,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            except Exception as exc:
                raise UserError(
                    f"cannot start a local Dask cluster of {target} workers "
                    f"({type(exc).__name__}: {exc})"
                ) from None
            stack.callback(local.close)
            client = Client(local)
        else:
            try:
                client = Client(target)
            except (OSError, TimeoutError) as exc:
                raise UserError(
                    f"cannot reach the Dask scheduler at {target} ({type(exc).__name__}: {exc}): "
                    "start it (`dask scheduler`, then `dask worker ADDRESS` on each machine) or "
                    "check the address; nothing was written"
                ) from None
        stack.callback(client.close)
        if not client.scheduler_info().get("workers"):
            with contextlib.suppress(Exception):
                client.wait_for_workers(1, timeout=30)
        parent = out.resolve().parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent  # the run creates the rest
        where = [str(job.src.resolve()), str(parent)]
        try:
            blind = client.run(_can_see, where)
        except Exception as exc:
            raise UserError(
                f"the Dask workers of {scheduler} cannot run astrobio ({type(exc).__name__}: "
                f"{exc}): install the same astrobio[dask] on every worker"
            ) from None
        if not blind:
            raise UserError(f"the Dask scheduler {scheduler} has no workers: start some")
        for worker, missing in blind.items():
            if missing:
                raise UserError(
                    f"Dask worker {worker} cannot see {', '.join(missing)}: --scheduler needs IN "
                    "and the directory of OUT on a filesystem every worker shares"
                )
        yield Cluster(client, job)


class Cluster:
    """Runs the passes of one preprocess run as Dask tasks and waits for them."""

    def __init__(self, client, job: Job) -> None:
        self.client, self.job = client, job
        self.prefix = f"astrobio-preprocess-{uuid.uuid4().hex[:12]}"

    def stats(
        self, g: pp.Group, train_chunks: Sequence[slice | None], say, done: int, total: int,
        stop,
    ) -> tuple[list[dc.Stats], int]:  # fmt: skip
        """Pass 1 of group `g`: the stats of each train chunk, in chunk order."""
        futures = [
            self.client.submit(
                task_stats, self.job, g, sl, key=f"{self.prefix}-stats-{g.label}-{i}", pure=False
            )
            for i, sl in enumerate(train_chunks)
        ]
        done = self._wait(futures, f"stats {g.label}", say, done, total, stop)
        return [f.result() for f in futures], done

    def write(
        self, tmp: Path, ds, groups: Sequence[pp.Group], chunks: Sequence[slice | None],
        stats: dict[str, dc.Stats], scalar_values: np.ndarray | None, say, done: int,
        total: int, stop,
    ) -> int:  # fmt: skip
        """Pass 2: the skeleton (client), then every Zarr chunk of every array (workers)."""
        job = self.job
        _skeleton(job, tmp, ds, groups, chunks, stats, scalar_values)
        n = chunks[-1].stop if chunks[0] is not None else None
        step = chunks[0].stop - chunks[0].start if chunks[0] is not None else None
        units: list[tuple[pp.Group | None, list[str]]] = [(g, list(g.names)) for g in groups]
        if scalar_values is not None:
            units.append((None, list(job.scalars)))
        futures = []
        for g, names in units:
            label = pp.SCALAR_LABEL if g is None else g.label
            for i, (sl, rows) in enumerate(_aligned(tmp, names, n, step)):
                values = None
                if g is None and scalar_values is not None:
                    values = scalar_values if sl is None else scalar_values[sl]
                key = f"{self.prefix}-write-{'scalars' if g is None else g.label}-{i}"
                futures.append(
                    self.client.submit(
                        task_write,
                        job,
                        str(tmp),
                        g,
                        sl,
                        rows,
                        stats[label],
                        values,
                        key=key,
                        pure=False,
                    )
                )
        # a group's chunks count as the single-node run's do: one step per group and chunk
        share = len(groups) * len(chunks) / max(1, len(futures))
        start = done
        self._wait(futures, "write", say, done, total, stop, scale=share)
        return start + len(groups) * len(chunks)

    def _wait(self, futures, desc, say, done, total, stop, scale: float = 1.0) -> int:
        """Until every future is done; any error (a task's, a worker lost, a signal) cancels
        the rest and waits for the tasks still running, so none writes after the client has
        removed the temporary store."""
        from distributed.scheduler import KilledWorker

        start = done
        try:
            pending = list(futures)
            while pending:
                stop.checkpoint()
                still = []
                for f in pending:
                    if not f.done():
                        still.append(f)
                    elif f.status != "finished":
                        try:
                            f.result()
                        except KilledWorker as exc:
                            raise UserError(
                                f"a Dask worker died while running {exc.task} (it was killed or "
                                "ran out of memory); nothing was written to OUT; run again"
                            ) from None
                        raise UserError(f"Dask task {f.key} was {f.status}") from None
                if len(still) != len(pending):
                    pending = still
                    done = start + int((len(futures) - len(pending)) * scale)
                    say(desc, done, total)
                    continue
                time.sleep(POLL_S)
        except BaseException:
            self._drain(futures)
            raise
        return done

    def _drain(self, futures) -> None:
        with contextlib.suppress(Exception):
            self.client.cancel(futures)
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            try:
                busy = self.client.run(_busy, self.prefix, on_error="ignore")
            except Exception:
                return
            if not any(isinstance(b, int) and b for b in busy.values()):
                return
            time.sleep(POLL_S)


def _skeleton(job: Job, tmp: Path, ds, groups, chunks, stats, scalar_values) -> None:
    """The store as the single-node run leaves it after its writes, without the data: the
    first chunk's Dataset written with the same encoding (Zarr chunks), then the rest appended,
    with lazy (never computed) data variables, so only metadata and coordinates are written."""

    def template(sl: slice | None):
        import dask.array as da

        parts = []
        for g in groups:
            lead: tuple[int, ...] = ()
            if job.sample_dims:
                lead = (sl.stop - sl.start, *(int(ds.sizes[d]) for d in job.sample_dims[1:]))
            nlev = int(ds.sizes[g.level_dim]) if g.level_dim else 1
            shape = (*lead, len(g.names), nlev, *job.grid_shape)
            if job.patch is not None:
                shape = job.patch.out_shape(shape)
            y = da.zeros(shape, dtype=job.dtype, chunks=-1)
            parts.append(
                pp._to_dataset(
                    ds,
                    g,
                    sl,
                    y,
                    stats[g.label],
                    job.patch,
                    job.fill,
                    job.lat,
                    job.lon,
                    job.grid_lat,
                    job.grid_lon,
                    job.regrid,
                )
            )
        if scalar_values is not None:
            part = pp._scalars_dataset(
                ds, list(job.scalars), job.sample_dims,
                scalar_values if sl is None else scalar_values[sl], stats[pp.SCALAR_LABEL],
                job.patch, job.tiles, job.native,
            )  # fmt: skip
            parts.append(part.chunk())  # lazy: the workers write it
        return pp._merge(parts, ds.attrs, job.src)

    first = template(chunks[0])
    append_dim = job.append_dim
    encoding = {v: {"chunks": pp._read_chunks(first[v], append_dim)} for v in first.data_vars}
    first.to_zarr(
        tmp, mode="w", zarr_format=2, consolidated=False, encoding=encoding, compute=False,
        safe_chunks=False,
    )  # fmt: skip
    if len(chunks) > 1:
        rest = template(slice(chunks[1].start, chunks[-1].stop))
        keep = [v for v in rest.variables if append_dim in rest[v].dims]
        rest[keep].to_zarr(
            tmp, append_dim=append_dim, zarr_format=2, consolidated=False, compute=False,
            safe_chunks=False,
        )  # fmt: skip


def _aligned(
    tmp: Path, names: Sequence[str], n: int | None, step: int | None
) -> list[tuple[slice | None, slice | None]]:
    """(samples, rows) of each write task of the arrays `names`: about `step` samples each,
    starting and ending on a Zarr chunk boundary of every one of these arrays (or at the end)."""
    import zarr

    if n is None:
        return [(None, None)]
    root = zarr.open_group(str(tmp), mode="r", zarr_format=2)
    arrays = [root[name] for name in names]
    rows = int(arrays[0].shape[0])
    per = rows // n  # rows per sample (tiles x inner sample dims with --patch, else 1)
    unit = 1  # samples per task must be a multiple of this
    for a in arrays:
        c = int(a.chunks[0])
        unit = math.lcm(unit, c // math.gcd(c, per))
    size = max(unit, step // unit * unit)
    return [
        (slice(a, min(a + size, n)), slice(a * per, min(a + size, n) * per))
        for a in range(0, n, size)
    ]


# -- `astrobio bench preprocess --scheduler ...`: end-to-end throughput -----------------------

BENCH_GRID = (4, 8, 128, 256)  # var, lev, lat, lon: the cube of `astrobio bench preprocess`


def write_bench_cube(
    path: Path, size: int, nan_fraction: float, dtype: str = "float32", seed: int = 0
) -> tuple[int, ...]:
    """A NetCDF cube of about `size` bytes for the end-to-end benchmark: variables v0..v3
    `(time, lev, lat, lon)` = `(samples, 8, 128, 256)` drawn as the kernel benchmark draws its
    cube (normal, 250 +- 10, a fraction NaN), written one sample at a time (bounded memory) to
    a temporary name and renamed into place. Returns the shape `(samples, var, lev, lat, lon)`."""
    import netCDF4

    dt = np.dtype(dtype)
    nvar, nlev, nlat, nlon = BENCH_GRID
    samples = max(2, round(size / (math.prod(BENCH_GRID) * dt.itemsize)))
    rng = np.random.default_rng(seed)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with netCDF4.Dataset(tmp, "w") as nc:
            for name, n in (("time", samples), ("lev", nlev), ("lat", nlat), ("lon", nlon)):
                nc.createDimension(name, n)
            coords = {
                "time": np.arange(samples, dtype=np.float64),
                "lev": np.linspace(1000.0, 100.0, nlev),
                "lat": np.linspace(-89.3, 89.3, nlat),
                "lon": np.arange(nlon) * (360 / nlon),
            }
            for name, values in coords.items():
                nc.createVariable(name, "f8", (name,))[:] = values
            nc["lev"].units = "hPa"
            fields = [
                nc.createVariable(
                    f"v{v}", dt, ("time", "lev", "lat", "lon"), chunksizes=(1, nlev, nlat, nlon)
                )
                for v in range(nvar)
            ]
            for s in range(samples):
                x = rng.standard_normal(BENCH_GRID, dtype=np.float32) * 10 + 250
                x[rng.random(BENCH_GRID) < nan_fraction] = np.nan
                for v, var in enumerate(fields):
                    var[s] = x[v].astype(dt)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return (samples, *BENCH_GRID)


def store_digest(store: Path) -> str:
    """sha256 over the names and bytes of every file of a store but provenance.json (which
    holds the time it was written): equal digests, the same store bit for bit."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in store.rglob("*") if p.is_file()):
        rel = str(f.relative_to(store))
        if rel == "provenance.json":
            continue
        h.update(rel.encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def measure_throughput(
    src: Path,
    schedulers: Sequence[str],
    workdir: Path,
    *,
    chunk: int | None = None,
    threads: int | None = None,
    progress=None,
) -> list[dict[str, Any]]:
    """`astrobio preprocess src OUT --split train` once on this node and once per scheduler
    (`local:N` or an address); wall time of the whole call (a LocalCluster's start and
    shutdown included), MB/s of input (the file's size over that time), and whether the store
    is the single-node one bit for bit. Each store is removed after it is hashed."""
    import shutil

    say = progress or (lambda msg: None)
    nbytes = src.stat().st_size
    rows: list[dict[str, Any]] = []
    for i, scheduler in enumerate([None, *schedulers]):
        label = scheduler or "single node"
        out = workdir / f"bench-{i}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        say(f"preprocess on {label}")
        t = time.perf_counter()
        res = pp.preprocess(
            src, out, split="train", chunk=chunk, threads=threads, scheduler=scheduler
        )
        seconds = time.perf_counter() - t
        say(f"hashing the store of {label}")
        digest = store_digest(out)
        shutil.rmtree(out, ignore_errors=True)
        rows.append(
            {
                "scheduler": label,
                "seconds": seconds,
                "mb_s": nbytes / seconds / 1e6,
                "input_bytes": nbytes,
                "digest": digest,
                "identical": digest == rows[0]["digest"] if rows else True,
                "backend": "rust" if res.native else "numpy",
            }
        )
    return rows
