"""The transmission-spectra kind: one 1-D spectrum from a Parquet table, put onto a model's grid.

`read_spectrum(path)` reads what `astrobio fetch mast-jwst-spectrum` writes (columns
`wavelength`, `flux`, `flux_error`, optional `dq`; units in each field's `unit` metadata) or a
transmission spectrum table (`wavelength` with `depth`/`transit_depth` and `depth_error`/`error`).
Wavelengths are converted to micrometres; rows with a non-zero `dq` flag, a non-finite value or a
non-positive error are dropped (and counted).

`resample(spectrum, grid)` bins the samples onto the target grid's bins (edges halfway between
grid points in log wavelength) with inverse-variance weights, propagating the errors::

    value_b = sum_i w_i v_i / sum_i w_i,   error_b = 1 / sqrt(sum_i w_i),   w_i = 1 / sigma_i^2

(the weighted mean of independent measurements and its standard error). A grid bin with no
sample is a gap; `resample` refuses a spectrum that leaves a gap, naming the wavelength range it
covers, rather than invent values.

No torch, no plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrobio_cli.errors import UsageError

VALUE_COLUMNS = ("depth", "transit_depth", "flux")
ERROR_COLUMNS = ("depth_error", "error", "flux_error")
TO_MICRON = {"um": 1.0, "micron": 1.0, "micrometer": 1.0, "nm": 1e-3, "angstrom": 1e-4,
             "aa": 1e-4, "m": 1e6}  # fmt: skip


@dataclass
class Spectrum:
    wavelength_um: np.ndarray  # (n,) float64, increasing
    value: np.ndarray  # (n,)
    error: np.ndarray  # (n,) one-sigma
    quantity: str  # the column the values came from: depth, transit_depth or flux
    unit: str
    dropped: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def _unit(field: Any) -> str:
    md = field.metadata or {}
    raw = md.get(b"unit") or md.get("unit") or b""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def read_spectrum(path: Path | str) -> Spectrum:
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise UsageError(f"spectrum {path} does not exist") from None
    except Exception as exc:
        raise UsageError(
            f"cannot read {path} as Parquet ({type(exc).__name__}: {exc}); "
            "`astrobio fetch mast-jwst-spectrum` writes one"
        ) from None
    names = table.schema.names
    value_col = next((c for c in VALUE_COLUMNS if c in names), None)
    error_col = next((c for c in ERROR_COLUMNS if c in names), None)
    if "wavelength" not in names or value_col is None or error_col is None:
        raise UsageError(
            f"{path} is not a spectrum table: it needs a wavelength column, one of "
            f"{', '.join(VALUE_COLUMNS)} and one of {', '.join(ERROR_COLUMNS)}; it has "
            f"{', '.join(names)} (`astrobio fetch mast-jwst-spectrum` writes one)"
        )
    wl_unit = _unit(table.schema.field("wavelength")).strip().lower() or "um"
    if wl_unit not in TO_MICRON:
        raise UsageError(
            f"{path}: wavelength unit {wl_unit!r} is not one of {', '.join(TO_MICRON)}"
        )
    wl = table.column("wavelength").to_numpy(zero_copy_only=False).astype(np.float64)
    wl = wl * TO_MICRON[wl_unit]
    val = table.column(value_col).to_numpy(zero_copy_only=False).astype(np.float64)
    err = table.column(error_col).to_numpy(zero_copy_only=False).astype(np.float64)
    keep = np.isfinite(wl) & np.isfinite(val) & np.isfinite(err) & (err > 0)
    if "dq" in names:
        dq = table.column("dq").to_numpy(zero_copy_only=False)
        keep &= np.asarray(dq) == 0
    order = np.argsort(wl[keep], kind="stable")
    if not keep.any():
        raise UsageError(f"{path}: no usable sample (finite, error > 0, dq == 0)")
    return Spectrum(
        wavelength_um=wl[keep][order],
        value=val[keep][order],
        error=err[keep][order],
        quantity=value_col,
        unit=_unit(table.schema.field(value_col)),
        dropped=int((~keep).sum()),
        meta={"path": str(path), "rows": table.num_rows},
    )


def bin_edges(grid_um: np.ndarray) -> np.ndarray:
    """(W + 1,) bin edges around grid points: geometric midpoints, the outer ones mirrored."""
    g = np.asarray(grid_um, dtype=np.float64)
    mid = np.sqrt(g[1:] * g[:-1])
    first = g[0] ** 2 / mid[0]
    last = g[-1] ** 2 / mid[-1]
    return np.concatenate([[first], mid, [last]])


def resample(spec: Spectrum, grid_um: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance weighted means (and their errors) of the samples in each grid bin."""
    edges = bin_edges(grid_um)
    b = np.searchsorted(edges, spec.wavelength_um, side="right") - 1
    inside = (b >= 0) & (b < len(grid_um))
    w = 1.0 / spec.error[inside] ** 2
    nb = len(grid_um)
    sw = np.bincount(b[inside], weights=w, minlength=nb)
    swv = np.bincount(b[inside], weights=w * spec.value[inside], minlength=nb)
    gaps = np.flatnonzero(sw == 0)
    if gaps.size:
        lo, hi = spec.wavelength_um[0], spec.wavelength_um[-1]
        raise UsageError(
            f"the spectrum covers {lo:.3g}-{hi:.3g} um and leaves {gaps.size} of the model's "
            f"{nb} wavelength bins ({grid_um[0]:.3g}-{grid_um[-1]:.3g} um) empty, e.g. at "
            f"{grid_um[gaps[0]]:.3g} um; give a spectrum that covers the model's grid"
        )
    return swv / sw, 1.0 / np.sqrt(sw)
