"""Climate datacube preprocessing: statistics, normalisation, regridding, patches, augmentations.

Every operation has two implementations with the same contract:

- the Rust extension (`astrobio_cli._native`, rayon-parallel, GIL released), used by default;
- a NumPy twin written for clarity, the oracle of the tests and the fallback that
  `ASTROBIO_NATIVE=0` (setting `native = false`) or `native=False` selects.

Layout. Arrays are float32 or float64 with 2 to 7 axes; the last four are `(var, lev, lat, lon)`
and any axes in front are samples (time, ensemble, batch). Fewer than four axes are
right-aligned: a 3-D array is `(lev, lat, lon)` of one variable, a 2-D array one `(lat, lon)`
field. Surface fields with several variables need a length-1 level axis:
`x[..., None, :, :]` turns `(time, var, lat, lon)` into `(time, var, 1, lat, lon)`.

Input that is not C-contiguous or not native-endian is copied once (to a C-contiguous,
native-endian array of the same float type) before the native code sees it; results are
always new C-contiguous native-endian arrays (or the `out` array given).

Missing data: non-finite values (NaN, +inf, -inf) are missing, in both implementations. Stats
skip them (count, mean, std, min and max are those of the finite values), normalisation and the
pipeline fill them like NaN (and the mask is False there), regridding drops them like a NaN
neighbour. Tiling (`patches`) and the augmentations copy values as they are.

Threads: `threads=` or the `threads` setting (`ASTROBIO_THREADS`); default all cores. At most
:func:`max_threads` (4x the logical cores): more is a ValueError, raised before a thread starts
(the kernels are memory-bound, so more threads than cores only add scheduling).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FloatArray = np.ndarray
FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))
STATS_FORMAT = "astrobio-stats/1"


class AllNaNWarning(RuntimeWarning):
    """A variable has no valid (finite) value: its statistics are NaN."""


# -- settings ---------------------------------------------------------------------------------


def use_native(native: bool | None = None) -> bool:
    """Whether to run the Rust extension: `native`, else the `native` setting (default true)."""
    if native is not None:
        return bool(native)
    from astrobio_cli.settings import get_settings

    return get_settings().native


THREADS_PER_CORE = 4


def max_threads() -> int:
    """The most threads an operation accepts: 4x the logical cores this process may use.

    The extension's own bound (Rust's `available_parallelism`, which counts the CPU affinity
    and a cgroup quota), so the wrapper and the binding agree; it is asked even when the NumPy
    twin runs (a query, no kernel), so both implementations accept the same `threads`.
    """
    try:
        from astrobio_cli import _native as ext

        return int(ext.max_threads())
    except ImportError:  # no extension: the NumPy twin runs, bounded alike
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return THREADS_PER_CORE * max(1, cores or os.cpu_count() or 1)


def thread_count(threads: int | None = None) -> int:
    """Threads for the native code: `threads`, else the `threads` setting, else 0 (all cores).

    ValueError for a negative count or one above :func:`max_threads`, naming where it came from.
    """
    what = "threads"
    if threads is None:
        from astrobio_cli.settings import get_settings

        threads = get_settings().threads or 0
        what = "the threads setting (ASTROBIO_THREADS)"
    if not isinstance(threads, int | np.integer) or threads < 0:
        raise ValueError(f"{what} must be a positive integer (or 0 for all cores), got {threads!r}")
    bound = max_threads()
    if threads > bound:
        said = f"threads={threads}" if what == "threads" else f"{what} is {threads},"
        raise ValueError(
            f"{said} is more than the maximum of {bound} ({THREADS_PER_CORE}x the "
            f"{bound // THREADS_PER_CORE} logical cores); use 0 for one thread per core"
        )
    return int(threads)


def _native():
    from astrobio_cli import _native

    return _native


# -- validation -------------------------------------------------------------------------------


def cube_dims(shape: Sequence[int]) -> tuple[int, int, int, int, int]:
    """(samples, var, lev, lat, lon) of an array of `shape` (right-aligned, see module docs)."""
    n = len(shape)
    if not 2 <= n <= 7:
        raise ValueError(
            f"data must have 2 to 7 dimensions (..., var, lev, lat, lon), got {n} "
            f"(shape {tuple(shape)}); add a length-1 axis where one is missing"
        )
    full = (1,) * (4 - min(n, 4)) + tuple(shape[-4:])
    return (math.prod(shape[:-4]), *full)  # type: ignore[return-value]


def as_float_array(data: Any, name: str = "data", min_dims: int = 2) -> np.ndarray:
    """`data` as a C-contiguous native-endian float32/float64 array (copied only if needed)."""
    if not isinstance(data, np.ndarray):
        raise TypeError(
            f"{name} must be a NumPy array of float32 or float64, got {type(data).__name__}"
        )
    if data.dtype.kind != "f" or data.dtype.itemsize not in (4, 8):
        raise TypeError(
            f"{name} must be float32 or float64, got dtype {data.dtype}; "
            f"convert it with {name}.astype(np.float32)"
        )
    if data.ndim < min_dims:
        raise ValueError(
            f"{name} must have at least {min_dims} dimensions, got {data.ndim} (shape {data.shape})"
        )
    native_dtype = data.dtype.newbyteorder("=")
    # Strided or big-endian input: one copy here, so the kernels read memory front to back.
    return np.ascontiguousarray(data, dtype=native_dtype)


def _check_cube(data: Any, name: str = "data") -> np.ndarray:
    data = as_float_array(data, name)
    cube_dims(data.shape)
    return data


def _check_fill(fill: Any) -> str | float | None:
    if fill is None or fill == "mean":
        return fill
    if isinstance(fill, str):
        try:
            fill = float(fill)
        except ValueError:
            raise ValueError(f"fill must be None, 'mean' or a number, got {fill!r}") from None
    if not isinstance(fill, int | float | np.number) or not math.isfinite(float(fill)):
        raise ValueError(f"fill must be None, 'mean' or a finite number, got {fill!r}")
    return float(fill)


# -- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Per-variable statistics of the finite values (NaN and ±inf are missing; population std,
    ddof=0), accumulated in float64."""

    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    names: tuple[str, ...] = ()
    extra: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "count", np.asarray(self.count, dtype=np.int64).reshape(-1))
        for k in ("mean", "std", "min", "max"):
            object.__setattr__(self, k, np.asarray(getattr(self, k), dtype=np.float64).reshape(-1))
        n = len(self.count)
        if any(len(getattr(self, k)) != n for k in ("mean", "std", "min", "max")):
            raise ValueError(
                "stats: count, mean, std, min and max must have one entry per variable"
            )
        if self.names and len(self.names) != n:
            raise ValueError(f"stats: {len(self.names)} names for {n} variables")

    @property
    def nvars(self) -> int:
        return len(self.count)

    def name(self, v: int) -> str:
        return self.names[v] if self.names else f"#{v}"

    def merge(self, other: Stats) -> Stats:
        """Statistics of the union of two disjoint samples (Chan et al.'s parallel merge)."""
        if other.nvars != self.nvars:
            raise ValueError(f"cannot merge stats of {self.nvars} and {other.nvars} variables")
        na, nb = self.count.astype(np.float64), other.count.astype(np.float64)
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            ma, mb = np.where(na > 0, self.mean, 0.0), np.where(nb > 0, other.mean, 0.0)
            delta = mb - ma
            mean = ma + delta * nb / n
            m2 = (
                np.where(na > 0, self.std**2 * na, 0.0)
                + np.where(nb > 0, other.std**2 * nb, 0.0)
                + delta**2 * na * nb / n
            )
            std = np.sqrt(m2 / n)
        empty = n == 0
        return Stats(
            count=self.count + other.count,
            mean=np.where(empty, np.nan, mean),
            std=np.where(empty, np.nan, std),
            min=np.fmin(self.min, other.min),
            max=np.fmax(self.max, other.max),
            names=self.names or other.names,
            extra=self.extra or other.extra,
        )

    def to_dict(self) -> dict[str, Any]:
        names = self.names or tuple(f"var{v}" for v in range(self.nvars))

        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "format": STATS_FORMAT,
            "ddof": 0,
            "variables": {
                name: {
                    "count": int(self.count[v]),
                    "mean": num(self.mean[v]),
                    "std": num(self.std[v]),
                    "min": num(self.min[v]),
                    "max": num(self.max[v]),
                    **self.extra.get(name, {}),
                }
                for v, name in enumerate(names)
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "stats") -> Stats:
        if d.get("format") != STATS_FORMAT or not isinstance(d.get("variables"), dict):
            raise ValueError(f"{source} is not an astrobio stats file (format {STATS_FORMAT!r})")
        names, cols = [], {k: [] for k in ("count", "mean", "std", "min", "max")}
        extra = {}
        for name, row in d["variables"].items():
            names.append(name)
            for k in cols:
                v = row.get(k)
                cols[k].append(np.nan if v is None else v)
            extra[name] = {k: v for k, v in row.items() if k not in cols}
        return cls(names=tuple(names), extra=extra, **cols)

    def save(self, path: str | Path) -> None:
        """Writes JSON to a temporary name and renames it into place."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> Stats:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # missing, not UTF-8, not JSON
            raise ValueError(f"cannot read stats file {path}: {exc}") from None
        return cls.from_dict(d, str(path))

    def select(self, names: Sequence[str]) -> Stats:
        """The stats of `names`, in that order."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ValueError(
                f"stats have no variable {', '.join(missing)} (they have {', '.join(self.names)})"
            )
        idx = [self.names.index(n) for n in names]
        return Stats(
            self.count[idx],
            self.mean[idx],
            self.std[idx],
            self.min[idx],
            self.max[idx],
            tuple(names),
            {n: self.extra.get(n, {}) for n in names},
        )


def _stats_numpy(x: np.ndarray) -> tuple[np.ndarray, ...]:
    samples, nvar, nlev, nlat, nlon = cube_dims(x.shape)
    per_var = x.reshape(samples, nvar, nlev * nlat * nlon)
    cols: list[list[float]] = [[], [], [], [], []]
    for v in range(nvar):
        vals = per_var[:, v, :].astype(np.float64).ravel()
        vals = vals[np.isfinite(vals)]  # NaN and +-inf are missing
        n = vals.size
        cols[0].append(n)
        if n == 0:
            for c in cols[1:]:
                c.append(np.nan)
            continue
        mean = vals.mean()
        cols[1].append(mean)
        cols[2].append(np.sqrt(np.mean((vals - mean) ** 2)))
        cols[3].append(vals.min())
        cols[4].append(vals.max())
    return tuple(np.asarray(c) for c in cols)


def stats(
    data: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    native: bool | None = None,
    threads: int | None = None,
) -> Stats:
    """Per-variable count, mean, std (ddof=0), min and max of the finite values, in float64.

    Non-finite values (NaN, +inf, -inf) are missing and skipped. A variable without a finite
    value gets count 0, NaN statistics and an :class:`AllNaNWarning` naming it.
    """
    data = _check_cube(data)
    nvar = cube_dims(data.shape)[1]
    if names is not None and len(names) != nvar:
        raise ValueError(f"names has {len(names)} entries but data has {nvar} variables")
    threads = thread_count(threads)  # checked for the twin too
    cols = _native().stats(data, threads) if use_native(native) else _stats_numpy(data)
    out = Stats(*cols, names=tuple(names or ()))
    for v in np.flatnonzero(out.count == 0):
        warnings.warn(
            f"variable {out.name(int(v))} has no valid (finite) values: its stats are NaN",
            AllNaNWarning,
            stacklevel=2,
        )
    return out


_compute_stats = stats  # for functions whose `stats` argument shadows this one


def _check_stats(st: Stats, nvar: int, name: str = "stats") -> None:
    if not isinstance(st, Stats):
        raise TypeError(f"{name} must be a datacube.Stats, got {type(st).__name__}")
    if st.nvars != nvar:
        raise ValueError(
            f"{name} has {st.nvars} variables but data has {nvar} on its var axis (axis -4)"
        )
    for key in ("mean", "std"):
        vals = getattr(st, key)
        bad = np.flatnonzero(~np.isfinite(vals) | ((vals <= 0) if key == "std" else False))
        if bad.size:
            v = int(bad[0])
            want = "finite and > 0" if key == "std" else "finite"
            raise ValueError(
                f"{name}.{key}[{v}] (variable {st.name(v)}) is {vals[v]}, expected {want}; "
                "an all-NaN or constant variable cannot be normalised: drop it"
            )


# -- normalisation ----------------------------------------------------------------------------


def _shape5(x: np.ndarray) -> np.ndarray:
    return x.reshape(cube_dims(x.shape))


def _normalize_numpy(
    x: np.ndarray, st: Stats, fill: str | float | None, inverse: bool
) -> tuple[np.ndarray, np.ndarray]:
    x5 = _shape5(x).astype(np.float64)
    mean = st.mean[None, :, None, None, None]
    std = st.std[None, :, None, None, None]
    missing = ~np.isfinite(x5)  # NaN and +-inf
    if fill == "mean":
        filled = np.where(missing, 0.0 if inverse else mean, x5)
    elif fill is not None:
        filled = np.where(missing, fill, x5)
    else:
        filled = np.where(missing, np.nan, x5)  # an infinity is missing too: NaN
    y = filled * std + mean if inverse else (filled - mean) / std
    return y.astype(x.dtype).reshape(x.shape), ~missing.reshape(x.shape)


def _finish(
    result: np.ndarray, valid: np.ndarray | None, mask: bool, out: np.ndarray | None
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    if out is not None:
        np.copyto(out, result)
        result = out
    return (result, valid) if mask else result


def _alloc(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"out must be an array of shape {tuple(shape)} and dtype {dtype}")
    return out


def _normalize(data, st, fill, mask, out, native, threads, inverse):
    data = _check_cube(data)
    _check_stats(st, cube_dims(data.shape)[1])
    fill = _check_fill(fill)
    threads = thread_count(threads)  # checked for the twin too
    if use_native(native):
        res = _alloc(out, data.shape, data.dtype)
        valid = np.empty(data.shape, dtype=bool) if mask else None
        _native().normalize(
            data,
            res,
            st.mean.tolist(),
            st.std.tolist(),
            fill,
            inverse,
            valid,
            threads,
        )
        return (res, valid) if mask else res
    if out is not None:
        _alloc(out, data.shape, data.dtype)
    res, valid = _normalize_numpy(data, st, fill, inverse)
    return _finish(res, valid, mask, out)


def normalize(
    data: np.ndarray,
    stats: Stats,
    *,
    fill: str | float | None = None,
    mask: bool = False,
    out: np.ndarray | None = None,
    native: bool | None = None,
    threads: int | None = None,
):
    """`(x - mean) / std` per variable, one pass, missing values filled.

    Missing means non-finite: NaN, +inf and -inf. `fill`: None leaves them NaN; 'mean' puts the
    variable mean (0 after normalising); a number is a value in the input's (physical) units,
    normalised like the data. With `mask=True` returns `(normalised, valid)` where `valid` is
    True where the input was finite.
    """
    return _normalize(data, stats, fill, mask, out, native, threads, inverse=False)


def denormalize(
    data: np.ndarray,
    stats: Stats,
    *,
    fill: str | float | None = None,
    mask: bool = False,
    out: np.ndarray | None = None,
    native: bool | None = None,
    threads: int | None = None,
):
    """`x * std + mean` per variable; missing (non-finite) values get `fill`, in normalised
    units ('mean' gives the mean; None leaves NaN)."""
    return _normalize(data, stats, fill, mask, out, native, threads, inverse=True)


# -- patches ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchSpec:
    """Tiles of `lat x lon` (and optionally `lev` levels) with strides and latitude padding.

    Longitude is periodic: there are `ceil(nlon / lon_stride)` lon tiles and the last ones wrap
    across the date line. Latitude gets `lat_pad` rows of padding on both sides (NaN, i.e.
    missing, in the pipeline). `lev=0` takes all levels in every tile.
    """

    lat: int
    lon: int
    lat_stride: int = 0  # 0: the tile size (no overlap)
    lon_stride: int = 0
    lat_pad: int = 0
    lev: int = 0
    lev_stride: int = 0

    def __post_init__(self) -> None:
        for k in ("lat", "lon", "lat_stride", "lon_stride", "lat_pad", "lev", "lev_stride"):
            v = getattr(self, k)
            if not isinstance(v, int | np.integer) or v < 0:
                raise ValueError(f"patch {k} must be an integer >= 0, got {v!r}")
        if self.lat < 1 or self.lon < 1:
            raise ValueError(f"patch size must be at least 1x1, got {self.lat}x{self.lon}")
        object.__setattr__(self, "lat_stride", self.lat_stride or self.lat)
        object.__setattr__(self, "lon_stride", self.lon_stride or self.lon)
        object.__setattr__(self, "lev_stride", self.lev_stride or self.lev or 1)

    @classmethod
    def parse(cls, size: str, stride: str | None = None, pad: int = 0) -> PatchSpec:
        """From CLI text: size 'LATxLON' or 'LEVxLATxLON', stride 'N' or 'LATxLON'."""

        def ints(text: str, what: str) -> list[int]:
            try:
                vals = [int(p) for p in text.lower().split("x")]
            except ValueError:
                vals = []
            if not vals or any(v < 1 for v in vals):
                raise ValueError(f"{what} must look like 32x32 (positive integers), got {text!r}")
            return vals

        sz = ints(size, "--patch")
        if len(sz) not in (2, 3):
            raise ValueError(f"--patch must be LATxLON or LEVxLATxLON, got {size!r}")
        lev, lat, lon = ([0, *sz] if len(sz) == 2 else sz)[:3]
        st = ints(stride, "--stride") if stride else []
        if len(st) == 1:
            st = [st[0], st[0]]
        if len(st) not in (0, 2):
            raise ValueError(f"--stride must be N or LATxLON, got {stride!r}")
        sy, sx = st or (0, 0)
        return cls(lat, lon, sy, sx, pad, lev, lev or 0)

    def as_tuple(self) -> tuple[int, ...]:
        return (
            self.lev,
            self.lev_stride,
            self.lat,
            self.lon,
            self.lat_stride,
            self.lon_stride,
            self.lat_pad,
        )

    def grid(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        """(lev_tiles, lat_tiles, lon_tiles, lev_size) for data of `shape`."""
        _, _, nlev, nlat, nlon = cube_dims(shape)
        lev_size = self.lev or nlev
        if lev_size > nlev:
            raise ValueError(f"patch of {lev_size} levels does not fit {nlev} levels")
        padded = nlat + 2 * self.lat_pad
        if self.lat > padded:
            raise ValueError(
                f"patch of {self.lat} latitudes does not fit {nlat} latitudes "
                f"plus {self.lat_pad} padding rows each side; use --pad or a smaller patch"
            )
        if self.lon > nlon:
            raise ValueError(f"patch of {self.lon} longitudes is wider than the {nlon} of the grid")
        lev_tiles = 1 if not self.lev or nlev == 0 else (nlev - lev_size) // self.lev_stride + 1
        return (
            lev_tiles,
            (padded - self.lat) // self.lat_stride + 1,
            -(-nlon // self.lon_stride),
            lev_size,
        )

    def out_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of the patches of data of `shape`: (..., tiles, var, lev, lat, lon)."""
        lt, yt, xt, lev_size = self.grid(shape)
        nvar = cube_dims(shape)[1]
        out = (*tuple(shape[:-4]), lt * yt * xt, nvar, lev_size, self.lat, self.lon)
        if math.prod(out) * 8 > np.iinfo(np.intp).max:
            raise ValueError(
                f"patches of shape {out} would be too large ({math.prod(out)} elements); "
                "check the padding and strides"
            )
        return out

    def origins(self, shape: Sequence[int]) -> np.ndarray:
        """(tiles, 3) array of each tile's first (lev, lat, lon) index in the unpadded grid."""
        lt, yt, xt, _ = self.grid(shape)
        lev, lat, lon = np.meshgrid(np.arange(lt), np.arange(yt), np.arange(xt), indexing="ij")
        return np.stack(
            [
                lev.ravel() * self.lev_stride,
                lat.ravel() * self.lat_stride - self.lat_pad,
                lon.ravel() * self.lon_stride,
            ],
            axis=1,
        )


def _patches_numpy(x: np.ndarray, spec: PatchSpec, pad_value: float) -> np.ndarray:
    out_shape = spec.out_shape(x.shape)
    lt, yt, xt, lev_size = spec.grid(x.shape)
    x5 = _shape5(x)
    nlon = x5.shape[-1]
    pad = spec.lat_pad
    padded = np.pad(x5, ((0, 0), (0, 0), (0, 0), (pad, pad), (0, 0)), constant_values=pad_value)
    tiles = []
    for k in range(lt):
        levs = slice(k * spec.lev_stride, k * spec.lev_stride + lev_size)
        for i in range(yt):
            rows = slice(i * spec.lat_stride, i * spec.lat_stride + spec.lat)
            for j in range(xt):
                cols = (j * spec.lon_stride + np.arange(spec.lon)) % nlon  # periodic
                tiles.append(padded[:, :, levs, rows][..., cols])
    out = np.stack(tiles, axis=1) if tiles else np.empty((x5.shape[0], 0), x.dtype)
    return out.reshape(out_shape)


def patches(
    data: np.ndarray,
    spec: PatchSpec,
    *,
    pad_value: float = np.nan,
    out: np.ndarray | None = None,
    native: bool | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Tiles of `data`: shape (..., tiles, var, lev_size, lat, lon); tiles ordered
    (lev tile, lat tile, lon tile); see :class:`PatchSpec`."""
    data = _check_cube(data)
    shape = spec.out_shape(data.shape)
    threads = thread_count(threads)  # checked for the twin too
    if use_native(native):
        res = _alloc(out, shape, data.dtype)
        _native().patches(data, res, spec.as_tuple(), float(pad_value), threads)
        return res
    if out is not None:
        _alloc(out, shape, data.dtype)
    return _finish(_patches_numpy(data, spec, pad_value), None, False, out)


# -- regridding -------------------------------------------------------------------------------


def _axis(values: Any, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values")
    return a


def lat_weights(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, w1) per target latitude; beyond the outermost source rows: that row."""
    src, dst = _axis(src, "src_lat"), _axis(dst, "dst_lat")
    d = np.diff(src)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise ValueError("src_lat must be strictly increasing or strictly decreasing")
    n = src.size
    ascending = n == 1 or d[0] > 0
    asc = src if ascending else src[::-1]
    j = np.clip(np.searchsorted(asc, dst, side="right") - 1, 0, max(n - 2, 0))
    i0, i1 = j.copy(), np.minimum(j + 1, n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = (dst - asc[i0]) / (asc[i1] - asc[i0])
    below, above = dst <= asc[0], dst >= asc[-1]
    i0[below], i1[below], w[below] = 0, 0, 0.0
    i0[above], i1[above], w[above] = n - 1, n - 1, 0.0
    if not ascending:
        i0, i1 = n - 1 - i0, n - 1 - i1
    return i0, i1, w


def lon_weights(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, w1) per target longitude, periodic with period 360 degrees."""
    src, dst = _axis(src, "src_lon"), _axis(dst, "dst_lon")
    if np.any(np.diff(src) <= 0) or src[-1] - src[0] >= 360:
        raise ValueError("src_lon must be strictly increasing and span less than 360 degrees")
    n = src.size
    offsets = src - src[0]
    u = np.mod(dst - src[0], 360.0)
    u[u >= 360.0] = 0.0
    i0 = np.searchsorted(offsets, u, side="right") - 1
    last = i0 == n - 1
    i1 = np.where(last, 0, np.minimum(i0 + 1, n - 1))
    nxt = np.where(last, 360.0, offsets[i1])
    w = (u - offsets[i0]) / (nxt - offsets[i0]) if n > 1 else np.zeros_like(u)
    return i0, i1, w


def _regrid_numpy(x, src_lat, src_lon, dst_lat, dst_lon) -> np.ndarray:
    y0, y1, wy = lat_weights(src_lat, dst_lat)
    x0, x1, wx = lon_weights(src_lon, dst_lon)
    fields = x.reshape(-1, x.shape[-2], x.shape[-1])
    out = np.empty((fields.shape[0], wy.size, wx.size), dtype=x.dtype)
    corners = [
        (y0, x0, np.outer(1 - wy, 1 - wx)),
        (y0, x1, np.outer(1 - wy, wx)),
        (y1, x0, np.outer(wy, 1 - wx)),
        (y1, x1, np.outer(wy, wx)),
    ]
    step = 64  # fields per slab: bounds the float64 temporaries
    for a in range(0, fields.shape[0], step):
        f = fields[a : a + step].astype(np.float64)
        num = np.zeros((f.shape[0], wy.size, wx.size))
        den = np.zeros_like(num)
        for rows, cols, w in corners:
            v = f[:, rows][:, :, cols]
            ok = np.isfinite(v) & (w > 0)  # a missing neighbour drops out; its weight too
            num += np.where(ok, v, 0.0) * w
            den += np.where(ok, w, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[a : a + step] = np.where(den > 0, num / den, np.nan)
    return out.reshape((*x.shape[:-2], wy.size, wx.size))


def regrid(
    data: np.ndarray,
    src_lat: Any,
    src_lon: Any,
    dst_lat: Any,
    dst_lon: Any,
    *,
    out: np.ndarray | None = None,
    native: bool | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Bilinear regridding of (..., lat, lon) in degrees, periodic in longitude, NaN-aware.

    Missing (non-finite: NaN, ±inf) neighbours drop out and the other weights are renormalised;
    a target point whose weighted neighbours are all missing is NaN. Target latitudes beyond the outermost source row
    take that row's value (e.g. the poles of a 2.5-degree grid from a Gaussian grid).
    """
    data = as_float_array(data)
    for name, ax, n in (("src_lat", src_lat, data.shape[-2]), ("src_lon", src_lon, data.shape[-1])):
        if np.size(ax) != n:
            raise ValueError(f"{name} has {np.size(ax)} points but data has {n} on that axis")
    lat_weights(src_lat, dst_lat)  # validates, with the argument names
    lon_weights(src_lon, dst_lon)
    shape = (*data.shape[:-2], np.size(dst_lat), np.size(dst_lon))
    threads = thread_count(threads)  # checked for the twin too
    if use_native(native):
        res = _alloc(out, shape, data.dtype)
        _native().regrid(
            data,
            res,
            *(_axis(a, "axis").tolist() for a in (src_lat, src_lon, dst_lat, dst_lon)),
            threads,
        )
        return res
    if out is not None:
        _alloc(out, shape, data.dtype)
    return _finish(_regrid_numpy(data, src_lat, src_lon, dst_lat, dst_lon), None, False, out)


def regular_grid(step: float) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of a regular grid: lat -90..90 and lon 0..360-step, every `step` degrees."""
    if not (isinstance(step, int | float) and 0 < step <= 90) or not math.isclose(
        180 / step, round(180 / step)
    ):
        raise ValueError(f"grid step must divide 180 degrees (e.g. 2.5), got {step!r}")
    nlat, nlon = round(180 / step) + 1, round(360 / step)
    return np.linspace(-90.0, 90.0, nlat), np.arange(nlon) * float(step)


# -- augmentations ----------------------------------------------------------------------------


def flip_lat(data: np.ndarray, *, native: bool | None = None, threads: int | None = None):
    """Reverses the latitude axis (the second to last)."""
    data = as_float_array(data)
    threads = thread_count(threads)  # checked for the twin too
    if use_native(native):
        res = np.empty_like(data)
        _native().flip_lat(data, res, threads)
        return res
    return np.ascontiguousarray(data[..., ::-1, :])


def roll_lon(
    data: np.ndarray, shift: int, *, native: bool | None = None, threads: int | None = None
):
    """Rolls the longitude axis by `shift` points, like `np.roll(data, shift, axis=-1)`."""
    data = as_float_array(data)
    if not isinstance(shift, int | np.integer):
        raise TypeError(f"shift must be an integer, got {shift!r}")
    threads = thread_count(threads)  # checked for the twin too
    if use_native(native):
        res = np.empty_like(data)
        _native().roll_lon(data, res, int(shift), threads)
        return res
    return np.roll(data, int(shift), axis=-1)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: np.ndarray) -> np.ndarray:
    # SplitMix64's output function on uint64 arrays (wrapping arithmetic).
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def normal_deviates(seed: int, start: int, count: int) -> np.ndarray:
    """The standard normal deviates of flat indices start..start+count for `seed`.

    Counter-based: deviate i depends only on (seed, i), so any split gives the same numbers.
    SplitMix64 hashes (seed, i); a Box-Muller transform turns its two 32-bit halves into N(0, 1).
    """
    with np.errstate(over="ignore"):
        key = _mix64(np.array([seed], dtype=np.uint64) + _GOLDEN)
        idx = np.arange(start + 1, start + count + 1, dtype=np.uint64)
        h = _mix64(key + idx * _GOLDEN)
    u1 = ((h >> np.uint64(32)).astype(np.float64) + 0.5) / 2.0**32
    u2 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2.0**32
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def add_noise(
    data: np.ndarray,
    std: float,
    seed: int,
    *,
    native: bool | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """`data + std * N(0, 1)`, the same whatever the thread count; NaN stays NaN."""
    data = as_float_array(data)
    if not isinstance(seed, int | np.integer) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    if not (isinstance(std, int | float) and math.isfinite(std) and std >= 0):
        raise ValueError(f"noise std must be a finite number >= 0, got {std!r}")
    threads = thread_count(threads)  # checked for the twin too
    if use_native(native):
        res = np.empty_like(data)
        _native().add_noise(data, res, float(std), int(seed), threads)
        return res
    flat = data.reshape(-1)
    out = np.empty_like(flat)
    step = 1 << 22  # bounds the uint64 temporaries
    for a in range(0, flat.size, step):
        x = flat[a : a + step].astype(np.float64)
        out[a : a + step] = x + std * normal_deviates(int(seed), a, x.size)
    return out.reshape(data.shape)


# -- pipeline ---------------------------------------------------------------------------------


@dataclass
class PipelineResult:
    stats: Stats
    data: np.ndarray
    mask: np.ndarray | None = None


def pipeline(
    data: np.ndarray,
    *,
    stats: Stats | None = None,
    train: np.ndarray | None = None,
    fill: str | float | None = None,
    patch: PatchSpec | None = None,
    mask: bool = False,
    names: Sequence[str] | None = None,
    out: np.ndarray | None = None,
    native: bool | None = None,
    threads: int | None = None,
) -> PipelineResult:
    """stats-from-train -> normalise -> fill -> patch, in two passes over memory.

    Pass 1 reads `train` (default: `data`) for the statistics unless `stats` is given; pass 2
    reads `data` once and writes the normalised, filled tiles (or the whole cube without
    `patch`). Non-finite values (NaN, ±inf) and latitude padding are missing: they get the fill
    value (NaN without one) and mask False.
    """
    data = _check_cube(data)
    nvar = cube_dims(data.shape)[1]
    fill = _check_fill(fill)
    if stats is None:
        src = data if train is None else _check_cube(train, "train")
        if cube_dims(src.shape)[1:] != cube_dims(data.shape)[1:]:
            raise ValueError(
                f"train has shape {src.shape} but data has {data.shape}: "
                "they must agree on (var, lev, lat, lon)"
            )
        stats = _compute_stats(src, names=names, native=native, threads=threads)
    _check_stats(stats, nvar)
    shape = data.shape if patch is None else patch.out_shape(data.shape)
    threads = thread_count(threads)  # checked for the twin too
    if use_native(native):
        res = _alloc(out, shape, data.dtype)
        valid = np.empty(shape, dtype=bool) if mask else None
        _native().pipeline(
            data,
            res,
            stats.mean.tolist(),
            stats.std.tolist(),
            fill,
            None if patch is None else patch.as_tuple(),
            valid,
            threads,
        )
        return PipelineResult(stats, res, valid)
    if out is not None:
        _alloc(out, shape, data.dtype)
    if patch is None:
        res, valid = _normalize_numpy(data, stats, fill, inverse=False)
    else:
        # Pad latitude with NaN first, so padding is filled like any missing value.
        p = patch.lat_pad
        x5 = np.pad(_shape5(data), ((0, 0),) * 3 + ((p, p), (0, 0)), constant_values=np.nan)
        x5 = x5.reshape((*data.shape[:-2], *x5.shape[-2:]))
        normed, valid_full = _normalize_numpy(x5, stats, fill, inverse=False)
        unpadded = PatchSpec(**{**patch.__dict__, "lat_pad": 0})
        res = _patches_numpy(normed, unpadded, np.nan)
        valid = _patches_numpy(valid_full.astype(np.float32), unpadded, 0.0) > 0
    if out is not None:
        np.copyto(out, res)
        res = out
    return PipelineResult(stats, res, valid if mask else None)
