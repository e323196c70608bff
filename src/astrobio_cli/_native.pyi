"""Type stub for the private Rust extension `astrobio_cli._native` (built by maturin).

Call it through `astrobio_cli.datacube`, which validates arguments, copies strided or
big-endian input and allocates outputs. Here, arrays must be C-contiguous native-endian
float32/float64 and `out` (same dtype as `data`) is written in place. Errors are ValueError
(bad shape or value, including an int out of range: never OverflowError) or TypeError (bad
type); the GIL is released while the kernels run. Every size is computed in checked arithmetic.
`threads=0` uses all cores; otherwise a rayon pool of that size (kept for reuse), at most
`max_threads()` (4x the logical cores; more is a ValueError before any thread starts).
Non-finite values (NaN, ±inf) are missing in stats, normalize, pipeline and regrid.
"""

from typing import Literal

import numpy as np
import numpy.typing as npt

__version__: str

Float = npt.NDArray[np.float32] | npt.NDArray[np.float64]
Fill = None | Literal["mean"] | float
# (lev, lev_stride, lat, lon, lat_stride, lon_stride, lat_pad); lev 0 = all levels
Spec = tuple[int, int, int, int, int, int, int]

def build_profile() -> str:
    """ "release" or "debug": the Cargo profile the extension was compiled with."""

def max_threads() -> int:
    """The most threads an operation accepts: 4x the logical cores this process may use."""

def nanmean(x: npt.NDArray[np.float64]) -> float:
    """Mean of the non-NaN values of a 1-D float64 array (NaN when there are none)."""

def stats(
    data: Float, threads: int = 0
) -> tuple[list[int], list[float], list[float], list[float], list[float]]:
    """Per-variable (count, mean, std ddof=0, min, max) of the finite values (NaN, ±inf
    skipped), f64 accumulation."""

def normalize(
    data: Float,
    out: Float,
    mean: list[float],
    std: list[float],
    fill: Fill = None,
    inverse: bool = False,
    mask: npt.NDArray[np.bool_] | None = None,
    threads: int = 0,
) -> None:
    """(x - mean) / std per variable (inverse: x * std + mean); non-finite (NaN, ±inf) -> fill
    (None: NaN), mask = finite."""

def pipeline(
    data: Float,
    out: Float,
    mean: list[float],
    std: list[float],
    fill: Fill = None,
    spec: Spec | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    threads: int = 0,
) -> None:
    """Normalise + fill + cut patches (out: (..., tiles, var, lev, lat, lon)) in one pass."""

def patches(data: Float, out: Float, spec: Spec, pad_value: float = ..., threads: int = 0) -> None:
    """Tiles of (lev, lat, lon), periodic in longitude, latitude padded with pad_value."""

def regrid(
    data: Float,
    out: Float,
    src_lat: list[float],
    src_lon: list[float],
    dst_lat: list[float],
    dst_lon: list[float],
    threads: int = 0,
) -> None:
    """Bilinear (lat, lon) regridding, periodic longitude; non-finite neighbours dropped."""

def flip_lat(data: Float, out: Float, threads: int = 0) -> None:
    """Reverse the latitude (second to last) axis."""

def roll_lon(data: Float, out: Float, shift: int, threads: int = 0) -> None:
    """np.roll(data, shift, axis=-1)."""

def add_noise(data: Float, out: Float, std: float, seed: int, threads: int = 0) -> None:
    """data + std * N(0, 1); deviate i depends only on (seed, flat index i)."""
