"""Type stub for the private Rust extension `astrobio_cli._native` (built by maturin)."""

import numpy as np
import numpy.typing as npt

__version__: str

def build_profile() -> str:
    """"release" or "debug": the Cargo profile the extension was compiled with."""

def nanmean(x: npt.NDArray[np.float64]) -> float:
    """Mean of the non-NaN values of a 1-D float64 array (NaN when there are none)."""
