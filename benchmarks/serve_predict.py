"""Latency and throughput of `astrobio serve cube-unet` for batches of 1, 8 and 64 planets.

    astrobio train cube-unet --quick-smoke --out runs/quick
    astrobio serve cube-unet --checkpoint runs/quick --port 8000 --log-level warning &
    python benchmarks/serve_predict.py http://127.0.0.1:8000

Prints the median of 10 requests per batch size (after one warm-up request each).
"""

from __future__ import annotations

import statistics
import sys
import time

import httpx

PLANET = {
    "stellar_flux": 1361.0,
    "rotation_period": 1.0,
    "obliquity": 23.4,
    "greenhouse_factor": 0.77,
    "surface_albedo": 0.3,
}


def main(base: str) -> None:
    with httpx.Client(base_url=base, timeout=120) as client:
        for k in (1, 8, 64):
            body = {"instances": [PLANET] * k}
            client.post("/v1/predict", json=body).raise_for_status()
            times = []
            for _ in range(10):
                t0 = time.perf_counter()
                client.post("/v1/predict", json=body).raise_for_status()
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            print(f"batch {k:>2}: median {med * 1000:.0f} ms per request, {k / med:.1f} planets/s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")
