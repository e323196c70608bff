"""`astrobio bench loader DATA`: stream a climate cube's training split through the real loader.

The reader is :func:`astrobio_cli.data.climate.open_climate_cube` (raw NetCDF/Zarr or an
`astrobio preprocess` store), its items go through a `torch.utils.data.DataLoader` with
`--workers` worker processes (each opens its own handle; normalisation, NaN fill and, with
`--augment`, flips, rolls and noise run in the native kernels there) and default collation into
batches, shuffled, for `--epochs` passes (or `--limit` items). Nothing is trained: this is the
data path alone.

Reported: items/s (samples or tiles) and MB/s of float32 delivered; the peak memory of the whole
process tree, sampled every `--interval` seconds by a background thread: RSS summed over the
main process and its workers (counts shared pages, e.g. torch's libraries, once per process) and
PSS summed (shared pages split between the processes: the memory the tree really holds), and the
main process's own peak RSS; the RSS before the loader started; the size of DATA on disk. Peak
memory that stays flat as DATA grows is the point: measure a small and a large store.
"""

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer


def register(group: typer.Typer) -> None:
    group.command("loader")(bench_loader)


class MemorySampler:
    """Peak RSS / PSS of this process and its children, sampled in a background thread."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak_rss = self.peak_pss = self.peak_main = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _measure(self) -> None:
        import psutil

        procs = [self.proc]
        with contextlib.suppress(psutil.Error):
            procs += self.proc.children(recursive=True)
        rss = pss = 0
        for p in procs:
            try:
                info = p.memory_full_info()
            except (psutil.Error, OSError):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
            if p.pid == self.proc.pid:
                self.peak_main = max(self.peak_main, info.rss)
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._measure()

    def __enter__(self) -> "MemorySampler":
        self._measure()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._measure()


def disk_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def data_bytes(path: Path) -> int:
    """Bytes of the data variables' values (uncompressed), read from the metadata only."""
    from astrobio_cli.data.climate import _open_xr

    ds, _ = _open_xr(Path(path))
    with ds:
        return int(sum(ds[v].size * ds[v].dtype.itemsize for v in ds.data_vars))


def measure(
    data: Path,
    *,
    workers: int = 2,
    batch: int = 16,
    augment: bool = False,
    epochs: int = 1,
    limit: int | None = None,
    interval: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    import psutil
    import torch
    from torch.utils.data import DataLoader

    from astrobio_cli.cli.bench_preprocess import machine
    from astrobio_cli.data.climate import Augment, open_climate_cube

    rss_before = psutil.Process().memory_info().rss
    t_open = time.perf_counter()
    cube = open_climate_cube(data, allow_seen=True, seed=seed)
    t_open = time.perf_counter() - t_open
    aug = Augment(flip_lat=True, roll_lon=True, noise=0.05) if augment else None
    ds = cube.dataset("train", augment=aug)
    if len(ds) == 0:
        raise typer.BadParameter(f"{data} has no training items")
    torch.manual_seed(seed)
    items = delivered = 0
    batches = 0
    first_batch_s = None
    with MemorySampler(interval) as mem:
        t0 = time.perf_counter()
        for _ in range(epochs):
            loader = DataLoader(
                ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=False
            )
            for b in loader:
                if first_batch_s is None:
                    first_batch_s = time.perf_counter() - t0
                n = int(b["index"].shape[0])
                items += n
                batches += 1
                delivered += sum(
                    v.numel() * 4
                    for k, v in b.items()
                    if k in cube.variables and v.is_floating_point()
                )
                if limit is not None and items >= limit:
                    break
            if limit is not None and items >= limit:
                break
        seconds = time.perf_counter() - t0
    return {
        "data": str(data),
        "form": cube.form,
        "engine": cube.engine,
        "disk_bytes": disk_bytes(Path(data)),
        "data_bytes": data_bytes(Path(data)),
        "samples": cube.n_samples,
        "items_in_file": cube.n_items,
        "train_items": len(ds),
        "item_shape": {n: list(ds.raw_item(0, augment=False)[n].shape) for n in cube.variables},
        "workers": workers,
        "batch": batch,
        "augment": aug.to_dict() if aug else None,
        "items": items,
        "batches": batches,
        "seconds": seconds,
        "open_seconds": t_open,
        "first_batch_seconds": first_batch_s,
        "items_per_s": items / max(seconds, 1e-9),
        "mb_per_s": delivered / 1e6 / max(seconds, 1e-9),
        "rss_before_bytes": rss_before,
        "peak_rss_main_bytes": mem.peak_main,
        "peak_rss_tree_bytes": mem.peak_rss,
        "peak_pss_tree_bytes": mem.peak_pss,
        "memory_samples": mem.samples,
        "threads_env": os.environ.get("ASTROBIO_THREADS"),
        "machine": machine(),
    }


def bench_loader(
    data: Annotated[Path, typer.Argument(help="Raw ensemble (.nc/.zarr) or preprocessed store.")],
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 2,
    batch: Annotated[int, typer.Option(min=1, help="Items per batch.")] = 16,
    augment: Annotated[
        bool, typer.Option(help="Flip lat, roll lon, noise 0.05 (native kernels).")
    ] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training split.")] = 1,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many items (default: all).")
    ] = None,
    interval: Annotated[float, typer.Option(help="Memory sampling period, seconds.")] = 0.1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
) -> None:
    """Items/s and peak memory (RSS, PSS; main + workers) of the training data loader."""
    from astrobio_cli.errors import UsageError

    if not data.exists():
        raise UsageError(f"{data} does not exist")
    r = measure(
        data,
        workers=workers,
        batch=batch,
        augment=augment,
        epochs=epochs,
        limit=limit,
        interval=interval,
    )
    if json_out is not None:
        json_out.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    mib = 2**20
    typer.echo(
        f"{r['data']} ({r['form']}, {r['data_bytes'] / 1e9:.2f} GB of data, "
        f"{r['disk_bytes'] / 1e9:.3f} GB on disk, {r['samples']} "
        f"samples, {r['train_items']} training items)\n"
        f"  {r['items']} items in {r['seconds']:.2f} s: {r['items_per_s']:.1f} items/s, "
        f"{r['mb_per_s']:.1f} MB/s float32 (workers {workers}, batch {batch}, "
        f"augment {'on' if augment else 'off'})\n"
        f"  peak memory: RSS main {r['peak_rss_main_bytes'] / mib:.0f} MiB, RSS main+workers "
        f"{r['peak_rss_tree_bytes'] / mib:.0f} MiB, PSS main+workers "
        f"{r['peak_pss_tree_bytes'] / mib:.0f} MiB (before the loader: "
        f"{r['rss_before_bytes'] / mib:.0f} MiB)\n"
        f"  machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, load "
        f"{r['machine']['load_average'][0]}"
    )
