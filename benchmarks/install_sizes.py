"""Download size of each install tier, from the locked wheels (uv.lock), for one platform.

    uv run python benchmarks/install_sizes.py            # CPython 3.11, Linux x86-64
    uv run python benchmarks/install_sizes.py --json

For each tier, `uv export` lists the packages the lock resolves (markers evaluated for this
interpreter); the size is the sum of each package's wheel for this platform as uv.lock records
it, i.e. what `pip install` downloads with an empty cache. Installed sizes are larger
(measure with `du -sh` of a fresh venv).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIERS = {
    "core": [],
    "core + plot": ["--extra", "plot"],
    "train": ["--extra", "train"],
    "serve": ["--extra", "serve"],
    "all": ["--extra", "all"],
}
PY = f"cp{sys.version_info.major}{sys.version_info.minor}"


def _wheel_size(pkg: dict) -> tuple[int, str]:
    wheels = pkg.get("wheels", [])

    def ok(name: str) -> bool:
        tags = name.removesuffix(".whl").split("-")[-3:]
        py, abi, plat = tags
        plat_ok = plat == "any" or ("x86_64" in plat and "linux" in plat)
        py_ok = any(
            t in (PY, "py3", "py2.py3", "cp3") or t.startswith("py3") for t in py.split(".")
        )
        abi_ok = abi in ("none", "abi3", PY)
        return plat_ok and (py_ok or abi == "abi3") and abi_ok

    for w in wheels:
        name = w["url"].rsplit("/", 1)[-1]
        if ok(name):
            return int(w.get("size", 0)), name
    sdist = pkg.get("sdist", {})
    return int(sdist.get("size", 0)), "sdist"


def tier(args: list[str], lock: dict) -> tuple[int, int]:
    out = subprocess.run(
        ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-workspace", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    by_name = {}
    for p in lock["package"]:
        by_name.setdefault(p["name"], []).append(p)
    total, n = 0, 0
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    for line in out.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^ ;]+)(?: ; (.*))?$", line.strip())
        if not m:
            continue
        name, version, marker = m.groups()
        if marker and not _marker_ok(marker, py):
            continue
        pkgs = [p for p in by_name.get(name.lower(), []) if p.get("version") == version]
        if not pkgs:
            continue
        total += _wheel_size(pkgs[0])[0]
        n += 1
    return total, n


def _marker_ok(marker: str, py: str) -> bool:
    from packaging.markers import Marker

    return Marker(marker).evaluate({"python_full_version": py + ".0", "python_version": py})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    rows = {name: tier(args, lock) for name, args in TIERS.items()}
    if a.json:
        print(json.dumps({k: {"bytes": b, "packages": n} for k, (b, n) in rows.items()}))
        return
    print(f"{'tier':<12} {'packages':>8} {'download':>12}   ({PY}, Linux x86-64, from uv.lock)")
    for name, (b, n) in rows.items():
        print(f"{name:<12} {n:>8} {b / 2**20:>9.1f} MiB")


if __name__ == "__main__":
    main()
