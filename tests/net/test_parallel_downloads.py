"""Parallel downloads (`--jobs N`, astrobio_cli.net.pool) against a real loopback server.

The server (tests/httpserver.py + the MAST fixtures of tests/sources) counts the download
requests in flight and enforces a rate limit: a request that arrives when more than
`rate * WINDOW + SLACK` requests have arrived in the last WINDOW seconds is answered 429. The
slack absorbs thread scheduling jitter of the client (its limiter spaces the *sends*; arrivals on
a loaded machine wander by tens of milliseconds); the control run without a limit shows the
check does fire.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer, Reply

from astrobio_cli.errors import UsageError
from astrobio_cli.net.http import RateLimiter
from astrobio_cli.net.pool import check_jobs, download_all
from tests.sources.mast_fixtures import FakeMast, lightcurve, product

TIC = 261136679
U = "mast:TESS/product/"
WINDOW, SLACK = 0.5, 3
SERVICE_S = 0.1  # how long the server takes over each download (so that they overlap)


# -- the pool on its own ---------------------------------------------------------------------------


class _Now(float):
    """A clock reading that hands the GIL to another thread while `acquire` compares it with the
    next free slot: the moment a limiter without a lock would give one slot to two threads."""

    def __gt__(self, other):
        time.sleep(0)
        return float(self) > other

    def __lt__(self, other):
        return float(self) < other


def test_rate_limiter_is_thread_safe():
    """8 threads x 250 acquires on one shared limiter: every slot granted exactly once, spaced by
    the interval (the clock is frozen, so each wait is the slot's distance from now). Without
    its lock this fails every time (~255 distinct slots of 1999)."""
    interval = 0.01
    waits: list[float] = []
    lim = RateLimiter(1 / interval, clock=lambda: _Now(100.0), sleep=waits.append)
    threads = [
        threading.Thread(target=lambda: [lim.acquire() for _ in range(250)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots = sorted(round(w / interval) for w in waits)
    # The first acquire gets "now" (no wait, so no record); the others 1..1999 intervals, once each.
    assert slots == list(range(1, 2000))


def test_pool_keeps_order_bounds_concurrency_and_dedupes():
    active, peak, calls = [0], [0], []
    lock = threading.Lock()

    def fn(x: int) -> int:
        with lock:
            calls.append(x)
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02 * (x % 3))  # finish out of order
        with lock:
            active[0] -= 1
        return x * x

    items = [5, 1, 4, 1, 3, 2, 6, 0, 5]
    assert download_all(items, fn, jobs=3, key=lambda x: x) == [x * x for x in items]
    assert sorted(calls) == [0, 1, 2, 3, 4, 5, 6]  # 1 and 5 once each
    assert 1 < peak[0] <= 3
    calls.clear()
    assert download_all(items, fn, jobs=1) == [x * x for x in items]
    assert calls == items  # one at a time, in order, in this thread


def test_pool_first_error_stops_the_rest_and_names_the_earliest():
    started = []

    def fn(x: int) -> int:
        started.append(x)
        time.sleep(0.05)
        if x in (2, 3):
            raise ValueError(f"item {x} failed")
        return x

    with pytest.raises(ValueError, match=r"^item 2 failed$"):
        download_all(range(40), fn, jobs=4)
    assert len(started) < 40  # the queued items were cancelled
    with pytest.raises(ValueError, match=r"^item 2 failed$"):
        download_all(range(40), fn, jobs=1)


def test_pool_ctrl_c_cancels_the_queue_and_waits_for_the_running():
    """Ctrl-C (a KeyboardInterrupt in the main thread, sent here by the second item) cancels
    what has not started, lets the started items end, says so, and re-raises."""
    import _thread

    started, ended, said = [], [], []

    def fn(x: int) -> int:
        started.append(x)
        if x == 1:
            _thread.interrupt_main()
        time.sleep(0.2)
        ended.append(x)
        return x

    with pytest.raises(KeyboardInterrupt):
        download_all(range(30), fn, jobs=3, notify=said.append, label="files")
    assert len(started) < 30
    assert sorted(ended) == sorted(started)  # nothing was abandoned half-way
    assert len(said) == 1 and said[0].startswith("interrupted: ")
    assert "queued files cancelled; waiting for the" in said[0]


@pytest.mark.parametrize("bad", [0, -2, True, 1.5, "3"])
def test_jobs_must_be_a_positive_integer(bad):
    with pytest.raises(UsageError, match=r"--jobs .* must be a whole number of at least 1"):
        check_jobs(bad)
    with pytest.raises(UsageError):
        download_all([1, 2], lambda x: x, jobs=bad)


# -- MAST: the whole fetch, in parallel ------------------------------------------------------------


class CountingMast(FakeMast):
    """FakeMast that counts download requests in flight and answers 429 above its rate."""

    def __init__(self, srv, rate: float, *args, enforce: bool = True, **kw):
        super().__init__(srv, *args, **kw)
        self.rate, self.enforce = rate, enforce
        self.lock = threading.Lock()
        self.arrivals: list[float] = []
        self.active = self.peak = self.too_fast = 0

    def _admit(self) -> bool:
        now = time.monotonic()
        with self.lock:
            self.arrivals.append(now)
            recent = sum(1 for t in self.arrivals if now - t <= WINDOW)
            if recent > self.rate * WINDOW + SLACK:
                self.too_fast += 1
                return not self.enforce
            return True

    def invoke(self, req):
        if not self._admit():
            return Reply(429, b"Too Many Requests", {"Retry-After": "0"})
        return super().invoke(req)

    def download(self, req):
        if not self._admit():
            return Reply(429, b"Too Many Requests", {"Retry-After": "0"})
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(SERVICE_S)
            return super().download(req)
        finally:
            with self.lock:
                self.active -= 1


N_FILES = 8


def archive(
    srv,
    rate: float,
    broken: dict[str, Reply] | None = None,
    enforce: bool = True,
    n: int = N_FILES,
):
    """`n` TESS sectors of one star (sector k: 20 + k points); `broken` replaces some files."""
    obs, prods, files, arrays = [], {}, {}, []
    for k in range(1, n + 1):
        body, arr = lightcurve("TESS", TIC, k, 20 + k, 100 + k, 2 / 1440)
        name = f"tess2019{k:03d}-s{k:04d}-0000000{TIC}-0{k:03d}-s_lc.fits"
        oid = str(5000 + k)
        obs.append(
            {
                "obsid": oid,
                "obs_collection": "TESS",
                "dataproduct_type": "timeseries",
                "target_name": str(TIC),
                "sequence_number": k,
                "s_ra": 1.0,
                "s_dec": 2.0,
            }
        )
        prods[oid] = [product(oid, U + name, "LC")]
        files[U + name] = body
        arrays.append(arr)
    fake = CountingMast(srv, rate, {}, obs, prods, files, enforce=enforce)
    if broken:
        original = fake.download

        def download(req):
            for name, reply in broken.items():
                if req.q("uri").endswith(name):
                    return reply
            return original(req)

        fake.download = download
        srv.route("GET", "/v0.1/Download/file", download)
    return fake, arrays, sorted(files)


@pytest.fixture
def cli():
    """In-process `astrobio ...` (Typer's CliRunner)."""
    from typer.testing import CliRunner

    from astrobio_cli.cli import build_app

    def invoke(*args: str):
        return CliRunner().invoke(build_app(), list(args), prog_name="astrobio")

    return invoke


@pytest.fixture
def aim(monkeypatch, tmp_path):
    """aim(srv, rate, cache=name, source=...): the source's settings point at `srv` with `rate`
    req/s, and the cache at its own directory; returns the environment for a subprocess."""
    from astrobio_cli import settings

    def apply(
        srv, rate: float, cache: str = "cache", source: str = "mast-lightcurve"
    ) -> dict[str, str]:
        env = f"ASTROBIO_SOURCES__{source.upper().replace('-', '_')}__"
        values = {
            f"{env}BASE_URL": srv.base_url,
            f"{env}BACKOFF": "0.01",
            f"{env}RATE_LIMIT": str(rate),
            "ASTROBIO_CACHE_DIR": str(tmp_path / cache),
        }
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        settings.configure(None, None)
        return values

    return apply


def _fetch(out, jobs: int):
    from astrobio_data_sources import mast as m

    q = m.LightCurveQuery.from_options(f"TIC {TIC}")
    return m.fetch_lightcurves(q, out=out, jobs=jobs, progress=False)


VOLATILE = {"retrieved_at", "written_at", "cache_entry", "from_cache"}


def _stable(doc):
    """A provenance document without times and cache paths (they differ between two runs)."""
    if isinstance(doc, dict):
        return {
            k: _stable(v) for k, v in doc.items() if k not in VOLATILE and k not in ("originals",)
        }
    if isinstance(doc, list):
        return [_stable(v) for v in doc]
    return doc


def _no_partials(root):
    left = [p for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith(".part")]
    assert left == [], f"partial files left: {left}"


def test_parallel_equals_serial_within_the_rate_limit(aim, tmp_path):
    rate = 20.0
    with LoopbackServer() as srv:
        fake, arrays, uris = archive(srv, rate)
        aim(srv, rate, cache="cache-par")
        res = _fetch(tmp_path / "par.parquet", jobs=3)
        # Several downloads overlapped, never more than --jobs, and the limiter kept every
        # request of the source (invokes included) within the server's rate.
        assert 1 < fake.peak <= 3
        assert fake.too_fast == 0
        assert res.requests == 2 + N_FILES  # filtered search, products, the files: no retry
        downloads = [h.q("uri") for h in srv.hits("/v0.1/Download/file")]
        assert sorted(downloads) == uris

        # The same fetch, one at a time, from the same server into a second, empty cache.
        fake.peak = fake.too_fast = 0
        aim(srv, rate, cache="cache-one")
        _fetch(tmp_path / "one.parquet", jobs=1)
        assert fake.peak == 1 and fake.too_fast == 0
        # One at a time: the files were asked for in the products' (sorted) order.
        assert [h.q("uri") for h in srv.hits("/v0.1/Download/file")][N_FILES:] == uris

    par, one = pq.read_table(tmp_path / "par.parquet"), pq.read_table(tmp_path / "one.parquet")
    assert par.schema.remove_metadata() == one.schema.remove_metadata()
    assert [f.metadata for f in par.schema] == [f.metadata for f in one.schema]
    for name in par.column_names:  # value by value (NaN == NaN for the float columns)
        a, b = par.column(name), one.column(name)
        if pa.types.is_floating(a.type):
            np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
        else:
            assert a.to_pylist() == b.to_pylist()
    # The values are the FITS files' own, in the products' order.
    np.testing.assert_array_equal(
        par.column("time").to_numpy(), np.concatenate([a["time"] for a in arrays])
    )
    np.testing.assert_array_equal(
        par.column("flux").to_numpy(), np.concatenate([a["flux"] for a in arrays])
    )
    assert par.column("sector").to_pylist() == [
        k for k in range(1, N_FILES + 1) for _ in range(20 + k)
    ]
    p_doc = json.loads((tmp_path / "par.parquet.provenance.json").read_text())
    o_doc = json.loads((tmp_path / "one.parquet.provenance.json").read_text())
    # Same requests in the same order (URLs, bytes, sha256), same products, same columns.
    assert _stable(p_doc)["requests"] == _stable(o_doc)["requests"]
    assert p_doc["products"] == o_doc["products"] == uris
    assert _stable({**p_doc, "output": None}) == _stable({**o_doc, "output": None})
    # The cached originals are byte for byte the same files, in the same order.
    assert [Path(p).read_bytes() for p in p_doc["originals"]] == [
        Path(p).read_bytes() for p in o_doc["originals"]
    ]
    for name in ("cache-par", "cache-one"):
        _no_partials(tmp_path / name)


def test_the_server_check_fires_without_a_limit(aim, tmp_path):
    """Control: with no effective limit, 8 workers outrun the server's rate (counted here, not
    refused, so that the fetch ends)."""
    with LoopbackServer() as srv:
        fake, _, _ = archive(srv, 20.0, enforce=False, n=16)
        aim(srv, 10000.0)
        _fetch(tmp_path / "fast.parquet", jobs=8)
        assert fake.too_fast > 0
        assert fake.peak > 3


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Reply(404, b"<html><title>404 Not Found</title></html>", content_type="text/html"),
            r"MAST product mast:TESS/product/\S+-s0005-\S+ not found .*nothing written",
        ),
        (
            Reply(200, b"SIMPLE  =" + b" " * 4000, send_bytes=1000),
            r"body shorter than Content-Length \(1000 of 4009 bytes\)",
        ),
    ],
    ids=["404", "truncated"],
)
def test_one_failing_file_is_one_clear_error(aim, tmp_path, reply, message):
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.settings import get_settings

    with LoopbackServer() as srv:
        name = "-s0005-"
        archive(srv, 200.0, broken={f"{name}0000000{TIC}-0005-s_lc.fits": reply})
        aim(srv, 200.0)
        out = tmp_path / "x" / "lc.parquet"
        with pytest.raises(Exception, match=message) as err:
            _fetch(out, jobs=3)
        assert "\n" not in str(err.value)
        assert not out.parent.exists()  # nothing written
        cache = Cache(get_settings().cache_dir)
        entries = list(cache.entries("mast-lightcurve"))
        # The files that did arrive are whole and verified; none under a final name is partial.
        bodies = [e for e in entries if "download" in e.record.get("request", {})]
        assert bodies and all(cache.problem(e) is None for e in entries)
        assert not any(name in e.record["request"]["download"] for e in bodies)
        _no_partials(cache.root)


def test_fetch_mast_jobs_3_end_to_end(aim, run_cli, tmp_path):
    with LoopbackServer() as srv:
        fake, arrays, uris = archive(srv, 20.0)
        env = aim(srv, 20.0)
        out = tmp_path / "cli.parquet"
        r = run_cli(
            "fetch", "mast-lightcurve", f"TIC {TIC}", "--jobs", "3", "--out", str(out), env=env
        )
        assert r.returncode == 0, r.stderr
        assert 1 < fake.peak <= 3 and fake.too_fast == 0
        assert sorted(h.q("uri") for h in srv.hits("/v0.1/Download/file")) == uris
    t = pq.read_table(out)
    np.testing.assert_array_equal(
        t.column("flux").to_numpy(), np.concatenate([a["flux"] for a in arrays])
    )


def test_jobs_option_is_checked_before_any_request(aim, cli):
    with LoopbackServer() as srv:
        aim(srv, 20.0)
        for cmd in (
            ["mast-lightcurve", f"TIC {TIC}"],
            ["mast-jwst-spectrum", "--proposal", "1366"],
            ["gtdb", "--release", "220"],
            ["ncbi", "--id", "X55053"],
        ):
            r = cli("fetch", *cmd, "--jobs", "0")
            assert r.exit_code == 2, (cmd, r.stdout, r.stderr)
            assert "--jobs 0 must be a whole number of at least 1" in r.stderr
        assert srv.requests == []


# -- NCBI and GTDB: batches and files that finish out of order land in order ------------------


def test_ncbi_batches_in_parallel_are_written_in_order(aim, tmp_path):
    from astrobio_data_sources import ncbi as nc
    from tests.sources.test_source_ncbi import GB, Eutils

    with LoopbackServer() as srv:
        eu = Eutils(srv)
        answered: list[int] = []

        def efetch(req):  # the later pages answer first
            time.sleep(0.03 * (6 - int(req.q("retstart"))))
            answered.append(int(req.q("retstart")))
            return eu.efetch(req)

        srv.route("GET", "/efetch.fcgi", efetch)
        q = nc.NcbiQuery.from_options(term="cor6", batch_size=1)
        docs = []
        for jobs, cache in ((3, "c3"), (1, "c1")):
            aim(srv, 1000.0, cache=cache, source="ncbi")
            out = tmp_path / f"j{jobs}.parquet"
            res = nc.fetch(q, out=out, jobs=jobs, progress=False)
            assert res.rows == 6 and res.requests == 7
            assert out.with_suffix(".gb").read_text() == GB  # the records, in order
            docs.append(json.loads((tmp_path / f"j{jobs}.parquet.provenance.json").read_text()))
        assert answered[:6] != sorted(answered[:6])  # the parallel run's came out of order
        assert answered[6:] == list(range(6))
    for doc in docs:
        pages = [r["url"] for r in doc["requests"][1:]]
        assert [int(u.split("retstart=")[1].split("&")[0]) for u in pages] == list(range(6))
    assert [r["sha256"] for r in docs[0]["requests"][1:]] == [
        r["sha256"] for r in docs[1]["requests"][1:]
    ]


def test_gtdb_files_in_parallel_keep_archaea_first(aim, tmp_path):
    import hashlib

    from astrobio_data_sources import gtdb
    from tests.sources.test_source_gtdb import ARCHAEA, BACTERIA, gz, taxonomy_tsv

    ar, bac = gz(taxonomy_tsv(ARCHAEA)), gz(taxonomy_tsv(BACTERIA))
    with LoopbackServer() as srv:
        base = "/release220/220.0/"
        srv.route("GET", base + "ar53_taxonomy_r220.tsv.gz", Reply(200, ar, delay=0.3))
        srv.route("GET", base + "bac120_taxonomy_r220.tsv.gz", Reply(200, bac))
        aim(srv, 1000.0, source="gtdb")
        out = tmp_path / "tax.parquet"
        gtdb.fetch(gtdb.GtdbQuery.from_options("220"), out=out, jobs=2, progress=False)
    t = pq.read_table(out)
    assert t.column("accession").to_pylist() == [a for a, _ in ARCHAEA + BACTERIA]
    prov = json.loads((tmp_path / "tax.parquet.provenance.json").read_text())
    assert [r["sha256"] for r in prov["requests"]] == [
        hashlib.sha256(b).hexdigest() for b in (ar, bac)
    ]
    assert prov["files"] == ["ar53_taxonomy_r220.tsv.gz", "bac120_taxonomy_r220.tsv.gz"]
