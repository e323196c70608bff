"""`astrobio fetch mast-lightcurve --jobs N` against a loopback MAST whose downloads are slow.

    uv run python benchmarks/parallel_fetch.py "--jobs 1" "--jobs 4" "--jobs 8"

16 TESS light curves (the test suite's MAST fixtures, real FITS layout), each download answered
after LATENCY seconds (env, default 0.5), served at MAST's configured rate limit. Prints the
wall time of each run of the installed `astrobio` (a fresh cache each time).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "sources"), str(ROOT)]

from httpserver import LoopbackServer  # noqa: E402
from mast_fixtures import FakeMast, lightcurve, product  # noqa: E402

LATENCY = float(os.environ.get("LATENCY", "0.5"))
N = int(os.environ.get("NFILES", "16"))
NPTS = int(os.environ.get("NPTS", "2000"))
TIC = 261136679


class Slow(FakeMast):
    def download(self, req):
        time.sleep(LATENCY)
        return super().download(req)


def main() -> None:
    obs, prods, files = [], {}, {}
    for k in range(1, N + 1):
        body, _ = lightcurve("TESS", TIC, k, NPTS, k, 2 / 1440)
        name = f"tess2019{k:03d}-s{k:04d}-0000000{TIC}-0{k:03d}-s_lc.fits"
        oid = str(5000 + k)
        obs.append(
            {
                "obsid": oid,
                "obs_collection": "TESS",
                "dataproduct_type": "timeseries",
                "target_name": str(TIC),
                "sequence_number": k,
            }
        )
        prods[oid] = [product(oid, "mast:TESS/product/" + name, "LC")]
        files["mast:TESS/product/" + name] = body
    exe = os.path.join(os.path.dirname(sys.executable), "astrobio")
    with LoopbackServer() as srv:
        Slow(srv, {}, obs, prods, files)
        for args in [a.split() for a in (sys.argv[1:] or ["--jobs 1", "--jobs 4"])]:
            d = tempfile.mkdtemp(prefix="astrobio-parallel-fetch-")
            env = dict(
                os.environ,
                ASTROBIO_SOURCES__MAST_LIGHTCURVE__BASE_URL=srv.base_url,
                ASTROBIO_CACHE_DIR=d + "/cache",
                ASTROBIO_DATA_DIR=d + "/data",
            )
            t0 = time.perf_counter()
            r = subprocess.run(
                [exe, "fetch", "mast-lightcurve", f"TIC {TIC}", "--out", d + "/o.parquet", *args],
                capture_output=True,
                text=True,
                env=env,
            )
            wall = time.perf_counter() - t0
            print(f"{' '.join(args):24s} exit {r.returncode}  wall {wall:.2f} s", flush=True)
            if r.returncode:
                print(r.stderr[-2000:])


if __name__ == "__main__":
    main()
