"""`astrobio bench preprocess`: every datacube operation, Rust against its NumPy twin.

One synthetic cube `(samples, 4 var, 8 lev, 128 lat, 256 lon)` of the requested size with a
fraction of NaNs; each operation runs on that same array with preallocated outputs (so page
faults of fresh memory are not timed), and the same run measures `numpy.copyto` of the array
into a second one: the memory-copy bandwidth, the ceiling for a one-pass operation that reads
and writes the array. GB/s is always the input's bytes over the time.
"""

import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from astrobio_cli.errors import UsageError, UserError

OPS = ("stats", "normalize", "pipeline", "patches", "regrid", "flip_lat", "roll_lon", "noise")
GRID = (4, 8, 128, 256)  # var, lev, lat, lon
TARGETS = {"pipeline_speedup": 20.0, "copy_fraction": 0.6}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)\s*", text.lower())
    if not m:
        raise UsageError(f"--size must look like 1GB, 512MB or 64MiB, got {text!r}")
    value, unit = float(m.group(1)), m.group(2).rstrip("b")
    scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
    scale.update({"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40})
    return int(value * scale[unit])


def _median_time(
    fn: Callable[[], Any], repeat: int, warm_up: bool = True
) -> tuple[float, list[float]]:
    if warm_up:
        fn()  # thread pools, caches
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    import statistics

    return statistics.median(times), times


def machine() -> dict[str, Any]:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def measure(
    size: int,
    nan_fraction: float,
    threads: list[int],
    repeat: int,
    ops: list[str],
    dtype: str = "float32",
    twin_repeat: int = 1,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Runs the benchmark; returns plain data (see the module docstring)."""
    import numpy as np

    from astrobio_cli import datacube as dc

    say = progress or (lambda msg: None)
    dt = np.dtype(dtype)
    per_sample = int(np.prod(GRID)) * dt.itemsize
    samples = max(1, round(size / per_sample))
    shape = (samples, *GRID)
    say(f"building a {samples * per_sample / 1e9:.2f} GB {dtype} cube {shape}")
    rng = np.random.default_rng(seed)
    x = np.empty(shape, dtype=dt)
    for s in range(samples):  # one sample at a time: no float64 temporary of the whole cube
        x[s] = rng.standard_normal(GRID, dtype=np.float32) * 10 + 250
        x[s][rng.random(GRID) < nan_fraction] = np.nan
    out = np.empty_like(x)
    out.fill(0)  # touch every page once, outside the timings
    nbytes = x.nbytes
    st = dc.stats(x)
    spec = dc.PatchSpec(32, 32)  # non-overlapping tiles: the output is as large as the input
    patched = np.empty(spec.out_shape(x.shape), dtype=dt)
    patched.fill(0)
    lat, lon = np.linspace(-89.3, 89.3, GRID[2]), np.arange(GRID[3]) * (360 / GRID[3])
    dst_lat, dst_lon = lat + 0.7, lon + 0.7  # a shifted grid of the same size

    def op(name: str, native: bool, threads: int | None) -> Callable[[], Any]:
        kw = {"native": native, "threads": threads}
        return {
            "stats": lambda: dc.stats(x, **kw),
            "normalize": lambda: dc.normalize(x, st, fill="mean", out=out, **kw),
            "pipeline": lambda: dc.pipeline(x, fill="mean", patch=spec, out=patched, **kw),
            "patches": lambda: dc.patches(x, spec, out=patched, **kw),
            "regrid": lambda: dc.regrid(x, lat, lon, dst_lat, dst_lon, out=out, **kw),
            "flip_lat": lambda: dc.flip_lat(x, **kw),
            "roll_lon": lambda: dc.roll_lon(x, 3, **kw),
            "noise": lambda: dc.add_noise(x, 0.1, 7, **kw),
        }[name]

    copy_times: list[float] = []

    def copy_bw() -> None:
        _, times = _median_time(lambda: np.copyto(out, x), repeat)
        copy_times.extend(times)

    rows = []
    for name in ops:
        say(f"{name}: numpy twin")
        copy_bw()
        # The twin has no pool to warm up and is slow: fewer runs, no warm-up.
        med, times = _median_time(op(name, False, None), twin_repeat, warm_up=False)
        rows.append({"op": name, "impl": "numpy", "threads": 1, "median_s": med, "times_s": times})
        for t in threads:
            say(f"{name}: rust, {t} thread(s)")
            med, times = _median_time(op(name, True, t), repeat)
            rows.append(
                {"op": name, "impl": "rust", "threads": t, "median_s": med, "times_s": times}
            )
    import statistics

    copy_s = statistics.median(copy_times)
    copy_gbs = nbytes / copy_s / 1e9
    twin = {r["op"]: r["median_s"] for r in rows if r["impl"] == "numpy"}
    for r in rows:
        r["gb_s"] = nbytes / r["median_s"] / 1e9
        r["speedup_vs_numpy"] = twin[r["op"]] / r["median_s"]
        r["fraction_of_copy"] = r["gb_s"] / copy_gbs
    best = {}
    for r in rows:
        if r["impl"] == "rust" and (
            r["op"] not in best or r["median_s"] < best[r["op"]]["median_s"]
        ):
            best[r["op"]] = r
    checks = {}
    if "pipeline" in best:
        checks["pipeline >= 20x numpy"] = best["pipeline"]["speedup_vs_numpy"]
    for name in ("stats", "normalize"):
        if name in best:
            checks[f"{name} >= 60% of copy"] = best[name]["fraction_of_copy"]
    return {
        "command": " ".join(["astrobio", *sys.argv[1:]]) if sys.argv else "",
        "machine": machine(),
        "shape": list(shape),
        "dtype": dtype,
        "bytes": nbytes,
        "nan_fraction": nan_fraction,
        "repeat": repeat,
        "twin_repeat": twin_repeat,
        "copy": {
            "impl": "numpy.copyto",
            "median_s": copy_s,
            "gb_s": copy_gbs,
            "times_s": copy_times,
        },
        "results": rows,
        "targets": {
            k: {
                "measured": v,
                "target": TARGETS["pipeline_speedup" if "20x" in k else "copy_fraction"],
                "met": v >= TARGETS["pipeline_speedup" if "20x" in k else "copy_fraction"],
            }
            for k, v in checks.items()
        },
    }


def register(group: typer.Typer) -> None:
    @group.command("preprocess")
    def bench_preprocess(
        size: Annotated[str, typer.Option(help="Cube size: 1GB, 256MB, 64MiB...")] = "1GB",
        nan_fraction: Annotated[
            float, typer.Option(min=0.0, max=1.0, help="Fraction of NaN values.")
        ] = 0.05,
        threads: Annotated[
            str, typer.Option(help="Rust thread counts to run, comma-separated.")
        ] = "1,2",
        repeat: Annotated[int, typer.Option(min=1, help="Timed Rust runs per case (median).")] = 3,
        twin_repeat: Annotated[
            int, typer.Option(min=1, help="Timed NumPy-twin runs per case (median).")
        ] = 1,
        ops: Annotated[
            str, typer.Option(help=f"Operations, comma-separated: {','.join(OPS)}.")
        ] = ",".join(OPS),
        dtype: Annotated[str, typer.Option(help="float32 or float64.")] = "float32",
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Write the results as JSON here.")
        ] = None,
        scheduler: Annotated[
            str | None,
            typer.Option(
                metavar="ADDRESSES",
                help="End to end instead of the kernels: `astrobio preprocess` of a NetCDF cube "
                "of --size on this node, then with each of these comma-separated --scheduler "
                "values (local:1,local:2 or tcp://host:8786): MB/s of input, and whether the "
                "store is the single-node one bit for bit.",
            ),
        ] = None,
        cube: Annotated[
            Path | None,
            typer.Option(
                help="With --scheduler: the NetCDF cube to use; written there (and kept) if it "
                "does not exist. Default: a temporary one."
            ),
        ] = None,
        chunk: Annotated[
            int | None,
            typer.Option(min=1, help="With --scheduler: preprocess --chunk (samples per step)."),
        ] = None,
    ) -> None:
        """Rust kernels against the NumPy twin on one cube: median time, GB/s, speed-up and
        the fraction of the same run's memory-copy bandwidth."""
        from rich.console import Console
        from rich.table import Table

        try:
            counts = [int(t) for t in threads.split(",") if t.strip()]
        except ValueError:
            raise UsageError(f"--threads takes integers, e.g. 1,2; got {threads!r}") from None
        if not counts or min(counts) < 1:
            raise UsageError(f"--threads takes positive integers, got {threads!r}")
        from astrobio_cli import datacube as dc

        if max(counts) > (bound := dc.max_threads()):
            raise UsageError(
                f"--threads {max(counts)} is more than the maximum of {bound} "
                f"({dc.THREADS_PER_CORE}x the {bound // dc.THREADS_PER_CORE} logical cores)"
            )
        names = [o.strip() for o in ops.split(",") if o.strip()]
        bad = [o for o in names if o not in OPS]
        if bad:
            raise UsageError(f"unknown operation {', '.join(bad)}; choose from {', '.join(OPS)}")
        if dtype not in ("float32", "float64"):
            raise UsageError(f"--dtype must be float32 or float64, got {dtype!r}")
        nbytes = parse_size(size)
        err = Console(stderr=True)
        if scheduler is not None:
            _end_to_end(scheduler, cube, nbytes, nan_fraction, dtype, chunk, json_path, err)
            return
        res = measure(
            nbytes,
            nan_fraction,
            counts,
            repeat,
            names,
            dtype,
            progress=lambda m: err.print(f"[dim]{m}[/]"),
        )
        m = res["machine"]
        table = Table(
            title=f"bench preprocess: {res['bytes'] / 1e9:.2f} GB {dtype} {tuple(res['shape'])}, "
            f"{nan_fraction:.0%} NaN, median of {repeat} (twin: {twin_repeat})\n"
            f"{m['cpu']}, {m['cores']} cores, load {m['load_average'][0]}"
        )
        for col in ("operation", "impl", "threads", "median s", "GB/s", "x numpy", "of copy"):
            table.add_column(col, justify="left" if col in ("operation", "impl") else "right")
        c = res["copy"]
        table.add_row(
            "memcpy", "numpy.copyto", "1", f"{c['median_s']:.4f}", f"{c['gb_s']:.2f}", "", "100%"
        )
        for r in res["results"]:
            table.add_row(
                r["op"],
                r["impl"],
                str(r["threads"]),
                f"{r['median_s']:.4f}",
                f"{r['gb_s']:.2f}",
                f"{r['speedup_vs_numpy']:.1f}x",
                f"{r['fraction_of_copy']:.0%}",
            )
        out = Console(soft_wrap=True)
        out.print(table)
        for name, t in res["targets"].items():
            shown = f"{t['measured']:.1f}x" if "20x" in name else f"{t['measured']:.0%}"
            verdict = "[green]met[/]" if t["met"] else "[red]missed[/]"
            out.print(f"target {name}: {shown} {verdict}")
        if json_path:
            tmp = json_path.with_name(f".{json_path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, json_path)
            out.print(f"wrote {json_path}", highlight=False)


def _end_to_end(schedulers, cube, nbytes, nan_fraction, dtype, chunk, json_path, err) -> None:
    """`bench preprocess --scheduler ...`: the whole command, single node against Dask."""
    import shutil
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from astrobio_cli import preprocess_dask as pdk

    names = [s.strip() for s in schedulers.split(",") if s.strip()]
    if not names:
        raise UsageError("--scheduler takes comma-separated addresses, e.g. local:1,local:2")
    for name in names:
        pdk.check(name)
    workdir = Path(tempfile.mkdtemp(prefix="astrobio-bench-"))
    try:
        src = cube or workdir / "cube.nc"
        if not src.exists():
            err.print(f"[dim]writing a {nbytes / 1e9:.2f} GB {dtype} NetCDF cube to {src}[/]")
            src.parent.mkdir(parents=True, exist_ok=True)
            pdk.write_bench_cube(src, nbytes, nan_fraction, dtype)
        import xarray as xr

        with xr.open_dataset(src) as ds:
            shape = {str(d): int(n) for d, n in ds.sizes.items()}
            variables = [str(v) for v in ds.data_vars]
        load_before = os.getloadavg()
        rows = pdk.measure_throughput(
            src, names, workdir, chunk=chunk, progress=lambda m: err.print(f"[dim]{m}[/]")
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    m = machine()
    res = {
        "command": " ".join(["astrobio", *sys.argv[1:]]) if sys.argv else "",
        "machine": {**m, "load_average_before": [round(x, 2) for x in load_before]},
        "cube": str(cube) if cube else None,
        "dims": shape,
        "variables": variables,
        "input_bytes": rows[0]["input_bytes"],
        "chunk": chunk,
        "results": rows,
    }
    table = Table(
        title=f"bench preprocess end to end: {rows[0]['input_bytes'] / 1e9:.2f} GB NetCDF "
        f"{len(variables)} variables {shape}\n{m['cpu']}, {m['cores']} cores, load {load_before[0]:.1f} -> "
        f"{m['load_average'][0]}"
    )
    for col in ("run", "seconds", "MB/s of input", "x single node", "same store"):
        table.add_column(col, justify="left" if col == "run" else "right")
    base = rows[0]["seconds"]
    for r in rows:
        table.add_row(
            r["scheduler"],
            f"{r['seconds']:.2f}",
            f"{r['mb_s']:.0f}",
            f"{base / r['seconds']:.2f}x",
            "yes" if r["identical"] else "[red]NO[/]",
        )
    out = Console(soft_wrap=True)
    out.print(table)
    if json_path:
        tmp = json_path.with_name(f".{json_path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, json_path)
        out.print(f"wrote {json_path}", highlight=False)
    if not all(r["identical"] for r in rows):
        raise UserError("a --scheduler run wrote a store that differs from the single-node one")
