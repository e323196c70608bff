"""Peak memory of `astrobio fetch nasa-exoplanet` for a large CSV answer without Content-Length.

Run from the repository root: `.venv/bin/python benchmarks/fetch_memory.py [MB]` (default 100).
A loopback archive streams a CSV of the default columns (the repository's 6-row sample repeated
to about MB megabytes) with no Content-Length header; the installed `astrobio` script fetches it
to Parquet in a fresh process, and the peak RSS of that process (`ru_maxrss` of the child) is
printed with the wall time, the body size and the Parquet table's in-memory size.
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

SAMPLE = REPO / "tests" / "data" / "nasa-exoplanet-archive" / "pscomppars-default.csv"


def body_of(mb: float) -> bytes:
    header, *rows = SAMPLE.read_bytes().splitlines(keepends=True)
    block = b"".join(rows)
    return header + block * max(int(mb * 1e6 / len(block)), 1)


def main() -> None:
    mb = float(sys.argv[1]) if len(sys.argv) > 1 else 100.0
    body = body_of(mb)
    exe = str(Path(sys.executable).with_name("astrobio"))
    with LoopbackServer() as srv, tempfile.TemporaryDirectory() as d:
        srv.route(
            "GET", "/TAP/sync", Reply(200, body, content_type="text/csv", content_length=False)
        )
        env = dict(
            os.environ,
            ASTROBIO_SOURCES__NASA_EXOPLANET__BASE_URL=srv.base_url,
            ASTROBIO_CACHE_DIR=f"{d}/cache",
            ASTROBIO_DATA_DIR=f"{d}/data",
        )
        from astrobio_cli.settings import SourceSettings

        if "max_bytes" in SourceSettings.model_fields:  # room for the body whatever the default
            env["ASTROBIO_SOURCES__NASA_EXOPLANET__MAX_BYTES"] = str(4 << 30)
        out = Path(d) / "big.parquet"
        t = time.perf_counter()
        r = subprocess.run(
            [exe, "fetch", "nasa-exoplanet", "--out", str(out)], env=env, capture_output=True
        )
        wall = time.perf_counter() - t
        if r.returncode:
            raise SystemExit(r.stderr.decode())
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        print(
            f"body {len(body) / 1e6:.0f} MB (no Content-Length), {table.num_rows} rows: "
            f"peak RSS {peak_mb:.0f} MB, table {table.nbytes / 1e6:.0f} MB in memory, "
            f"{wall:.1f} s wall"
        )


if __name__ == "__main__":
    main()
