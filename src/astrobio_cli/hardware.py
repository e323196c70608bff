"""What accelerators this machine has, asked without importing torch.

Availability checks run for `astrobio plugins list`, which must stay fast and must not import
torch; so CUDA is asked through the driver library (libcuda) with ctypes. The answer can differ
from `torch.cuda.is_available()` only when torch was built without CUDA; commands that run on
the GPU ask torch as well.
"""

from __future__ import annotations

import ctypes
import functools
import os


@functools.lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports (0 without a driver or device)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return 0
            count = ctypes.c_int(0)
            if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return int(count.value)
        except (AttributeError, OSError):
            return 0
    return 0


def has_cuda() -> bool:
    return cuda_device_count() > 0


def need_cuda() -> tuple[bool, str]:
    """An availability check for plugins that run only on a CUDA device."""
    return (True, "") if has_cuda() else (False, "needs a CUDA device (none found)")


def need_module(module: str, pip_name: str | None = None) -> tuple[bool, str]:
    """An availability check: is `module` importable? (Does not import it.)"""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return False, f"{pip_name or module} is not installed"
    return True, ""
