"""What kind of data a path holds, and the batch order the loop follows.

The order is a pure function of (seed, epoch, rank, world size): no sampler state to save, so
a resumed run finds its place from the number of micro-batches already consumed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from astrobio_cli.errors import UsageError

# Built-in data kinds and how to recognise them from a path. A plugin may accept others; then
# `--data` must be a path its `make_datasets` understands, and the kind is the plugin's own.
SUFFIX_KINDS = {
    ".nc": "climate-cube",
    ".nc4": "climate-cube",
    ".zarr": "climate-cube",
    ".xml": "metabolic-network",
    ".sbml": "metabolic-network",
    ".csv": "exoplanet-table",  # NASA archive, exoplanet.eu export, TEPCat (data/tables.py)
    ".tsv": "exoplanet-table",
    ".txt": "text-corpus",
    ".npz": "transmission-spectra",
    ".fasta": "sequences",
    ".fa": "sequences",
    ".faa": "sequences",
    ".fna": "sequences",
    ".gb": "sequences",
    ".gbk": "sequences",
}
COBRA_BUILTINS = ("textbook", "iJO1366", "salmonella")


def data_kind(data: str) -> str | None:
    """The kind of data at `data` (a path, or a cobra built-in model name), None if unknown."""
    if data in COBRA_BUILTINS or data.startswith("cobra:"):
        return "metabolic-network"
    p = Path(data)
    suffix = p.suffix.lower()
    if p.name.endswith(".zarr") or (p.is_dir() and (p / "zarr.json").exists()):
        return "climate-cube"
    if suffix == ".json" and p.is_file():
        head = p.read_text(encoding="utf-8", errors="replace")[:2000]
        return "metabolic-network" if '"reactions"' in head and '"metabolites"' in head else None
    if suffix == ".parquet" and p.is_file():
        return _parquet_kind(p)
    return SUFFIX_KINDS.get(suffix)


def _parquet_kind(path: Path) -> str | None:
    """A Parquet table with a `pl_name` column (what `astrobio fetch nasa-exoplanet` writes) is
    an exoplanet table; other Parquet files are not recognised here."""
    try:
        import pyarrow.parquet as pq

        names = {n.lower() for n in pq.read_schema(path).names}
    except Exception:
        return None
    if "pl_name" in names:
        return "exoplanet-table"
    if "wavelength" in names and names & {"flux", "depth", "transit_depth"}:
        return "transmission-spectra"  # astrobio fetch mast-jwst-spectrum
    if "time" in names and "flux" in names:
        return "light-curve"  # astrobio fetch mast-lightcurve
    return None


def check_data(model: str, accepted: tuple[str, ...], data: str | None) -> str | None:
    """Fail before training when `data` is not a kind the model accepts. Returns the kind."""
    if data is None:
        return None
    if not (data in COBRA_BUILTINS or data.startswith("cobra:")) and not Path(data).exists():
        raise UsageError(f"--data {data}: no such file or directory")
    kind = data_kind(data)
    if kind is None:
        raise UsageError(
            f"--data {data}: cannot tell what kind of data this is; model '{model}' accepts "
            f"{', '.join(accepted)} ({_hint(accepted)})"
        )
    if accepted and kind not in accepted:
        raise UsageError(
            f"model '{model}' cannot train on {kind} data ({data}); it accepts "
            f"{', '.join(accepted)} ({_hint(accepted)}){_producers(accepted)}; leave out --data "
            "for its built-in data"
        )
    return kind


def _producers(kinds: tuple[str, ...]) -> str:
    """'; `astrobio fetch nasa-exoplanet` writes exoplanet-table' from the installed sources."""
    try:
        from astrobio_cli.data.kinds import how_to_get
        from astrobio_cli.plugins import active_host

        text = how_to_get(active_host(), kinds)
    except Exception:  # a broken plugin must not hide the real message
        return ""
    return f"; {text}" if text else ""


def _hint(kinds: tuple[str, ...]) -> str:
    by_kind: dict[str, list[str]] = {}
    for suffix, k in SUFFIX_KINDS.items():
        by_kind.setdefault(k, []).append(suffix)
    parts = []
    for k in kinds:
        s = by_kind.get(k, [])
        if k == "metabolic-network":
            s = [*s, ".json", *COBRA_BUILTINS]
        parts.append(f"{k}: {' '.join(s)}" if s else k)
    return "; ".join(parts)


@dataclass(frozen=True)
class BatchOrder:
    """Which dataset indices each rank takes for micro-batch number `i`.

    Every epoch is one permutation of the whole dataset drawn from `seed + epoch`; it is cut into
    `world * batch` sized groups (the tail is dropped so every rank steps in lockstep) and rank r
    takes group[r::world] - so ranks never share a sample within an epoch.
    """

    n: int
    batch: int
    world: int = 1
    rank: int = 0
    seed: int = 0

    @property
    def per_epoch(self) -> int:
        """Micro-batches per rank per epoch."""
        return self.n // (self.batch * self.world)

    def indices(self, i: int) -> list[int]:
        if self.per_epoch == 0:
            raise UsageError(
                f"the training split has {self.n} samples, fewer than batch size {self.batch} x "
                f"{self.world} process(es); lower --batch-size or use more data"
            )
        epoch, j = divmod(i, self.per_epoch)
        perm = _permutation(self.n, self.seed, epoch)
        group = perm[j * self.batch * self.world : (j + 1) * self.batch * self.world]
        return group[self.rank :: self.world].tolist()


@functools.lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int):
    import torch

    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)
