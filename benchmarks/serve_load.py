"""Throughput and latency of `astrobio serve` under concurrent clients, and the server's memory
over repeated bursts.

    astrobio train cube-unet --quick-smoke --out runs/quick
    python benchmarks/serve_load.py --checkpoint runs/quick [--clients 1,16,200] [--bursts 3]

Starts `astrobio serve cube-unet --checkpoint ... --device cpu` on a free loopback port, then for
each client count N: N threads each send `--requests-per-client` single-planet requests one
after the other (all threads start together); reports requests/s, p50 and p99 latency. Then
`--bursts` identical bursts of the largest N, with the server's RSS (psutil) after each: memory
that plateaus is what to look for. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from serve_predict import PLANET  # benchmarks/serve_predict.py, beside this script


def astrobio() -> str:
    exe = Path(sys.executable).with_name("astrobio")
    return str(exe) if exe.exists() else (shutil.which("astrobio") or "astrobio")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def burst(base: str, clients: int, per_client: int) -> dict:
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client() -> None:
        nonlocal errors
        with httpx.Client(base_url=base, timeout=300) as c:
            barrier.wait()
            for _ in range(per_client):
                t0 = time.perf_counter()
                r = c.post("/v1/predict", json={"instances": [PLANET]})
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    errors += r.status_code != 200

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": errors,
        "requests_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(1000 * statistics.median(lat), 1),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    import psutil

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--clients", default="1,16,200")
    ap.add_argument("--requests-per-client", type=int, default=5)
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--extra", default="", help="more `astrobio serve` options, space-separated")
    args = ap.parse_args()
    port = free_port()
    cmd = [astrobio(), "serve", "cube-unet", "--checkpoint", args.checkpoint, "--port", str(port),
           "--device", "cpu", "--log-level", "warning", *args.extra.split()]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"server did not come up: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)
        server = psutil.Process(proc.pid)
        httpx.post(f"{base}/v1/predict", json={"instances": [PLANET]}, timeout=120)  # warm-up
        counts = [int(c) for c in args.clients.split(",")]
        out: dict = {"command": " ".join(cmd[1:]), "load": [], "bursts": []}
        out["rss_mb_start"] = round(server.memory_info().rss / 2**20, 1)
        for n in counts:
            out["load"].append(burst(base, n, args.requests_per_client))
        for _ in range(args.bursts):
            res = burst(base, max(counts), args.requests_per_client)
            res["rss_mb_after"] = round(server.memory_info().rss / 2**20, 1)
            out["bursts"].append(res)
        try:
            out["batching"] = httpx.get(f"{base}/health", timeout=10).json().get("batching")
        except (httpx.HTTPError, ValueError):
            out["batching"] = None
        print(json.dumps(out, indent=2))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
