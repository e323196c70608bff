"""Time `astrobio fetch nasa-exoplanet` against a loopback archive serving a real 745 kB body.

Run from the repository root: `.venv/bin/python benchmarks/fetch_loopback.py`.
Prints: parse time of the body, then cold (download), warm (cache hit) and --dry-run wall and
CPU times of the installed `astrobio` script (each a fresh process: interpreter start-up and
imports included). On a shared machine, CPU time is the steadier figure.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from httpserver import LoopbackServer, Reply  # noqa: E402

from astrobio_cli.net.content import parse_delimited  # noqa: E402

BODY = REPO.parent / "shared" / "data" / "nasa-exoplanet-archive" / "example-1.txt"


def main() -> None:
    body = BODY.read_bytes()
    t = time.perf_counter()
    table = parse_delimited(body.decode())
    dt = time.perf_counter() - t
    print(f"parse_delimited: {len(body) / 1e3:.0f} kB, {table.num_rows} rows in {dt * 1e3:.0f} ms")
    exe = str(Path(sys.executable).with_name("astrobio"))
    cmd = [exe, "fetch", "nasa-exoplanet", "--table", "ps", "--columns", "pl_name,discoverymethod"]
    with LoopbackServer() as srv, tempfile.TemporaryDirectory() as d:
        srv.route("GET", "/TAP/sync", Reply(200, body, content_type="text/csv"))
        env = dict(
            os.environ,
            ASTROBIO_SOURCES__NASA_EXOPLANET__BASE_URL=srv.base_url,
            ASTROBIO_CACHE_DIR=f"{d}/cache",
            ASTROBIO_DATA_DIR=f"{d}/data",
        )
        for label, extra in (
            ("cold (download)", []),
            ("warm (cache hit)", []),
            ("--dry-run", ["--dry-run"]),
        ):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            r = subprocess.run(cmd + extra, env=env, capture_output=True, text=True)
            dt = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if r.returncode:
                raise SystemExit(r.stderr)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            print(f"astrobio fetch {label}: {dt:.2f} s wall, {cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
