"""The light-curve kind: photometric time series as `astrobio fetch mast-lightcurve` writes them.

`read_light_curve(path)` reads the Parquet table of that command (TESS SPOC and Kepler pipeline
light curves, one row per cadence, several sectors/quarters concatenated):

| column | type | meaning |
| --- | --- | --- |
| `time` | float64 | barycentric time in days from the mission's zero point (unit in the field's `unit` metadata, e.g. `BJD - 2457000, days` = BTJD for TESS, `BJD - 2454833, days` = BKJD for Kepler) |
| `flux`, `flux_err` | float64 | PDCSAP (default) or SAP flux and its one-sigma error (unit in the metadata, `e-/s`) |
| `quality` | int64 | the pipeline's quality bitmask, 0 = no flag |
| `mission` | string | TESS or Kepler |
| `sector`, `quarter` | int64 or null | TESS sector, Kepler quarter (the other is null) |
| `cadence` | float64 | seconds between exposures (TIMEDEL) |
| `target` | string, optional | the OBJECT header keyword, e.g. `TIC 261136679` |
| `time_unit` | string, optional | per row, when the table mixes time systems |

It returns a `LightCurve`: `time`, `flux`, `flux_err` (float64 NumPy), `quality` (int64), per-point
`sector`, `quarter` (int64, -1 where none) and `cadence_s`, and the metadata: `mission`, `target`,
`sectors`, `quarters`, `cadences_s` (distinct, sorted), `time_system` (the time unit as written)
with `time_offset` (BJD_TDB = time + time_offset; NaN when the unit does not say), `flux_unit`.

Options: `drop_bad=True` drops flagged points (quality != 0) and points whose time, flux or error is
not finite (`dropped` counts them); `mission="TESS"` keeps one mission's rows. A table that mixes
time systems (TESS and Kepler rows: different zero points) is refused unless `mission` picks one.
`lc.normalized()` divides flux and error by the median flux (`per_segment=True`: each sector or
quarter by its own median). A missing file, a file that is not Parquet, or a table that lacks
columns is a `UsageError` naming the file, the missing columns and the command that writes one.
No torch, no plugin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from astrobio_cli.errors import UsageError

WRITER = "`astrobio fetch mast-lightcurve TARGET` writes one"
REQUIRED = ("time", "flux", "flux_err", "quality", "mission", "cadence")
PERIODS = ("sector", "quarter")  # at least one of them
_BJD_OFFSET = re.compile(r"BJD\s*-\s*(\d+(?:\.\d*)?)", re.I)


@dataclass
class LightCurve:
    time: np.ndarray  # (n,) float64, days in `time_system`
    flux: np.ndarray  # (n,) float64
    flux_err: np.ndarray  # (n,) float64, one sigma
    quality: np.ndarray  # (n,) int64 bitmask, 0 = good
    sector: np.ndarray  # (n,) int64 TESS sector, -1 where none
    quarter: np.ndarray  # (n,) int64 Kepler quarter, -1 where none
    cadence_s: np.ndarray  # (n,) float64 seconds
    mission: str  # "TESS", "Kepler" or "Kepler+TESS"
    target: str  # distinct targets, comma-separated ("" when the table has none)
    time_system: str  # the time unit as written, e.g. "BJD - 2457000, days"
    time_offset: float  # BJD_TDB = time + time_offset; NaN when the unit does not tell
    flux_unit: str
    dropped: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.time)

    @property
    def sectors(self) -> tuple[int, ...]:
        return tuple(int(s) for s in np.unique(self.sector) if s >= 0)

    @property
    def quarters(self) -> tuple[int, ...]:
        return tuple(int(q) for q in np.unique(self.quarter) if q >= 0)

    @property
    def cadences_s(self) -> tuple[float, ...]:
        return tuple(float(c) for c in np.unique(self.cadence_s[np.isfinite(self.cadence_s)]))

    def segments(self) -> np.ndarray:
        """(n,) int64 label of each point's sector or quarter (the pair, for mixed tables)."""
        _, labels = np.unique(np.stack([self.sector, self.quarter], 1), axis=0, return_inverse=True)
        return labels.reshape(-1).astype(np.int64)

    def normalized(self, *, per_segment: bool = False) -> LightCurve:
        """A copy with flux and flux_err divided by the median flux: that of the finite, unflagged
        points (all finite points when none is unflagged); `per_segment`: per sector/quarter."""
        flux, err = self.flux.copy(), self.flux_err.copy()
        groups = self.segments() if per_segment else np.zeros(len(self), np.int64)
        for g in np.unique(groups):
            sel = groups == g
            medians = [
                _median(self.flux[sel & np.isfinite(self.flux) & (self.quality == 0)]),
                _median(self.flux[sel & np.isfinite(self.flux)]),
            ]
            med = next((m for m in medians if m is not None), None)
            if med is None or med == 0:
                where = self.meta.get("path", "the light curve")
                raise UsageError(
                    f"{where}: cannot normalise the flux: its median is "
                    f"{'undefined (no finite flux)' if med is None else 0}"
                )
            flux[sel] /= med
            err[sel] /= abs(med)
        return replace(self, flux=flux, flux_err=err, flux_unit="", meta=dict(self.meta))


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def _unit(schema: Any, name: str) -> str:
    md = schema.field(name).metadata or {}
    raw = md.get(b"unit") or md.get("unit") or b""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _floats(table: Any, name: str, path: Path) -> np.ndarray:
    col = table.column(name)
    try:
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"{path}: column {name} is {col.type}, not numbers; {WRITER}") from None


def _ints(table: Any, name: str, path: Path, null: int | None = -1) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name)
    if not (pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
        raise UsageError(f"{path}: column {name} is {col.type}, not integers; {WRITER}")
    if col.null_count:
        if null is None:
            raise UsageError(f"{path}: column {name} has {col.null_count} empty values; {WRITER}")
        col = pc.fill_null(col.cast(pa.int64()), null)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


def _strings(table: Any, name: str) -> np.ndarray:
    if name not in table.schema.names:
        return np.full(table.num_rows, "", dtype=object)
    return np.array(["" if v is None else str(v) for v in table.column(name).to_pylist()], object)


def _offset(time_system: str) -> float:
    m = _BJD_OFFSET.search(time_system)
    return float(m.group(1)) if m else float("nan")


def read_light_curve(
    path: Path | str, *, drop_bad: bool = False, mission: str | None = None
) -> LightCurve:
    """Read a light-curve Parquet table (what `astrobio fetch mast-lightcurve` writes)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise UsageError(f"light curve {path} does not exist; {WRITER}")
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise UsageError(
            f"cannot read {path} as Parquet ({type(exc).__name__}: {exc}); {WRITER}"
        ) from None
    names = table.schema.names
    missing = [c for c in REQUIRED if c not in names]
    if not any(p in names for p in PERIODS):
        missing.append(" or ".join(PERIODS))
    if missing:
        raise UsageError(
            f"{path} is not a light curve: it lacks {', '.join(missing)} (it has "
            f"{', '.join(names) or 'no columns'}); {WRITER}"
        )
    if table.num_rows == 0:
        raise UsageError(f"{path}: the light curve has no rows; {WRITER}")
    missions = _strings(table, "mission")
    keep = np.ones(table.num_rows, dtype=bool)
    if mission is not None:
        keep = np.char.lower(missions.astype(str)) == mission.lower()
        if not keep.any():
            raise UsageError(
                f"{path}: no {mission} rows (missions: {', '.join(sorted(set(missions)))})"
            )
    time_unit = _unit(table.schema, "time")
    if "time_unit" in names:
        per_row = _strings(table, "time_unit")
        systems = sorted({u for u in per_row[keep] if u} or {time_unit})
    else:
        systems = [time_unit]
    if len(systems) > 1:
        raise UsageError(
            f"{path} mixes time systems ({'; '.join(systems)}: e.g. TESS and Kepler, which "
            f"count from different zero points); read one mission with mission="
            f"{'|'.join(sorted(set(missions)))!r}"
        )
    n_rows = table.num_rows
    cols: dict[str, np.ndarray] = {
        "time": _floats(table, "time", path),
        "flux": _floats(table, "flux", path),
        "flux_err": _floats(table, "flux_err", path),
        "quality": _ints(table, "quality", path, null=None),
        "cadence_s": _floats(table, "cadence", path),
    }
    for p in PERIODS:
        cols[p] = _ints(table, p, path) if p in names else np.full(n_rows, -1, np.int64)
    targets = _strings(table, "target")
    selected = int(keep.sum())
    if drop_bad:
        keep &= cols["quality"] == 0
        for c in ("time", "flux", "flux_err"):
            keep &= np.isfinite(cols[c])
        if not keep.any():
            raise UsageError(
                f"{path}: no usable point (quality == 0 and finite time, flux, flux_err) "
                f"of {selected}"
            )
    cols = {k: v[keep] for k, v in cols.items()}
    return LightCurve(
        **cols,
        mission="+".join(sorted({m for m in missions[keep] if m})),
        target=", ".join(sorted({t for t in targets[keep] if t})),
        time_system=systems[0],
        time_offset=_offset(systems[0]),
        flux_unit=_unit(table.schema, "flux"),
        dropped=selected - int(keep.sum()),
        meta={"path": str(path), "rows": n_rows},
    )
