"""How long `astrobio --help` takes, against a bare interpreter start.

    uv run python benchmarks/startup.py [--runs 20]

Prints the median and the best wall time of N runs of each, after one warm-up run (which also
writes the plugin registry cache). Run it on a quiet machine: a loaded one measures the load.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def measure(argv: list[str], runs: int) -> list[float]:
    subprocess.run(argv, capture_output=True, check=True)  # warm-up
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    exe = shutil.which("astrobio") or "astrobio"
    for label, argv in (
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("astrobio --help", [exe, "--help"]),
        ("astrobio fetch --help", [exe, "fetch", "--help"]),
    ):
        t = measure(argv, a.runs)
        print(
            f"{label:<24} median {statistics.median(t) * 1000:6.0f} ms   best {min(t) * 1000:6.0f} ms"
        )


if __name__ == "__main__":
    main()
