"""What `astrobio env` reports: everything a bug report needs, as plain data."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from astrobio_cli import __version__

# (display name, distribution name)
LIBRARIES = (
    ("torch", "torch"),
    ("triton", "triton"),
    ("flash-attn", "flash-attn"),
    ("xformers", "xformers"),
    ("transformers", "transformers"),
    ("peft", "peft"),
    ("torch-geometric", "torch-geometric"),
    ("accelerate", "accelerate"),
    ("numpy", "numpy"),
)


def dist_version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def torch_info() -> dict[str, Any]:
    """torch's version and build, and every accelerator it sees (imports torch)."""
    try:
        import torch
    except Exception as exc:  # not installed, or a broken install: report, do not crash
        return {"installed": False, "error": str(exc), "accelerators": []}
    cuda_build = torch.version.cuda
    info: dict[str, Any] = {
        "installed": True,
        "version": torch.__version__,
        "build": f"CUDA {cuda_build}"
        if cuda_build
        else ("ROCm " + str(torch.version.hip) if torch.version.hip else "CPU"),
        "cuda_available": False,
        "accelerators": [],
        "threads": torch.get_num_threads(),
    }
    try:
        available = torch.cuda.is_available()
    except Exception as exc:
        available = False
        info["cuda_error"] = str(exc)
    info["cuda_available"] = available
    if available:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["accelerators"].append(
                {
                    "index": i,
                    "name": p.name,
                    "compute_capability": f"{p.major}.{p.minor}",
                    "memory_gb": round(p.total_memory / 2**30, 2),
                }
            )
    return info


def native_info() -> dict[str, Any]:
    try:
        from astrobio_cli import _native
    except ImportError as exc:
        return {"present": False, "error": str(exc)}
    return {
        "present": True,
        "version": _native.__version__,
        "build_profile": _native.build_profile(),
    }


def collect(host=None) -> dict[str, Any]:
    """The whole report. Imports torch (to ask about CUDA) and the native module."""
    from astrobio_cli import settings as settings_mod
    from astrobio_cli.plugins import get_host

    host = host or get_host()
    mem = memory_bytes()
    report: dict[str, Any] = {
        "astrobio": __version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
        },
        "cpu": {"cores": os.cpu_count(), "memory_gb": round(mem / 2**30, 1) if mem else None},
        "torch": torch_info(),
        "libraries": {name: dist_version(dist) or "not installed" for name, dist in LIBRARIES},
        "native": native_info(),
    }
    try:
        ls = settings_mod.loaded()
        s = ls.settings
        report["settings"] = {
            "config_file": str(ls.config_path),
            "config_file_exists": ls.config_exists,
            "data_dir": str(s.data_dir),
            "cache_dir": str(s.cache_dir),
            "runs_dir": str(s.runs_dir),
        }
    except Exception as exc:  # a bad setting must not hide the rest of the report
        report["settings"] = {"error": str(exc)}
    report["plugins"] = host.counts()
    report["plugins_broken"] = [
        {"name": r["name"], "distribution": r["distribution"], "error": r["reason"]}
        for r in host.rows()
        if r["status"] == "broken"
    ]
    return report
