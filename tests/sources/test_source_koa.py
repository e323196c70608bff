"""`astrobio fetch koa` against a loopback Keck Observatory Archive (nexsciTAP + getKOA).

Listing bodies are tests/data/koa/*.csv (KOA's TAP CSV layout); getKOA's refusal is
tests/data/koa/getkoa-proprietary.json; the files are small FITS built here with astropy.
Expected values are the numbers in those files and the bytes served.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from httpserver import Reply, Request

DATA = Path(__file__).resolve().parents[1] / "data" / "koa"
SYNC = "/TAP/sync"
GET = "/cgi-bin/getKOA/nph-getKOA"
K1, K2, K3 = "HI.20100812.39458.fits", "HI.20100812.40211.fits", "HI.20100813.02010.fits"
COOKIE = "KOA_SESSION=7f3c9e2b-s3cret-cookie-41d8"
ARGS = ("fetch", "koa", "--instrument", "hires", "--target", "HD 209458")


def csv(name: str) -> Reply:
    return Reply(200, (DATA / name).read_bytes(), content_type="text/csv")


def fits_bytes(seed: int, n: int = 4000) -> bytes:
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    hdu = fits.PrimaryHDU(rng.integers(0, 60000, size=n).astype(np.uint16))
    hdu.header["INSTRUME"] = "HIRES"
    buf = io.BytesIO()
    fits.HDUList([hdu]).writeto(buf)
    return buf.getvalue()


def handle(koaid: str) -> str:
    return f"/koadata8/HIRES/{koaid.split('.')[1]}/lev0/{koaid}"


class FakeGetKoa:
    """getKOA: each filehand answers its own scripted replies, in order (the last repeats)."""

    def __init__(self, replies: dict[str, list[Reply]]):
        self.replies = replies
        self.asked: list[tuple[str, dict[str, str]]] = []

    def __call__(self, req: Request) -> Reply:
        fh = req.q("filehand") or ""
        self.asked.append((fh, dict(req.headers)))
        koaid = fh.rsplit("/", 1)[-1]
        queue = self.replies.get(koaid)
        if queue is None or req.q("return_mode") != "json":
            return Reply(404, b'{"status": "error", "msg": "no such file"}')
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def koa(server, point, tmp_path, monkeypatch):
    from astrobio_cli import settings

    monkeypatch.setenv("ASTROBIO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ASTROBIO_DATA_DIR", str(tmp_path / "data"))
    point("koa", server)
    settings.configure(None, None)
    return server


def test_listing_download_resume_refusal_end_to_end(koa, run_cli, cli, tmp_path):
    f1, f2 = fits_bytes(1), fits_bytes(2)
    cut = len(f1) // 3
    lm = {"Last-Modified": "Thu, 12 Aug 2010 12:00:00 GMT"}
    refusal = (DATA / "getkoa-proprietary.json").read_bytes()
    fake = FakeGetKoa(
        {
            K1: [
                Reply(200, f1, send_bytes=cut, ranges=True, headers=lm, reset=True),
                Reply(200, f1, ranges=True, headers=lm),
            ],
            K2: [Reply(503), Reply(200, f2)],
            K3: [Reply(200, refusal, content_type="application/json")],
        }
    )
    koa.route("GET", SYNC, Reply(429, headers={"Retry-After": "0"}), csv("koa_hires-hd209458.csv"))
    koa.route("GET", GET, fake)
    out = tmp_path / "hd209458.parquet"
    r = run_cli(*ARGS, "--download", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)

    sent = koa.hits(SYNC)
    assert len(sent) == 2 and sent[1].q("format") == "csv"
    assert sent[1].q("query") == (
        "SELECT koaid, instrume, targname, ra, dec, date_obs, ut, elaptime, koaimtyp, progid, "
        "semid, filehand FROM koa_hires WHERE targname = 'HD 209458' ORDER BY koaid"
    )
    asked = [fh for fh, _ in fake.asked]
    assert asked == [handle(K1), handle(K1), handle(K2), handle(K2), handle(K3)]
    resumed = fake.asked[1][1]
    assert resumed["range"] == f"bytes={cut}-" and resumed["if-range"] == lm["Last-Modified"]
    assert "cookie" not in fake.asked[0][1]  # no credentials set: none sent

    t = pq.read_table(out)
    assert t.num_rows == 3 == doc["rows"]
    assert t.column("koaid").to_pylist() == [K1, K2, K3]
    np.testing.assert_array_equal(t.column("ra").to_numpy(), [330.795, 330.795, np.nan])
    np.testing.assert_array_equal(t.column("elaptime").to_numpy(), [300.0, 300.0, 2.0])
    assert t.column("koaimtyp").to_pylist() == ["object", "object", "flatlamp"]
    assert t.schema.field("ra").metadata[b"unit"] == b"deg"

    files = {f["id"]: f for f in doc["files"]}
    assert sorted(files) == [K1, K2]
    for ident, body in ((K1, f1), (K2, f2)):
        assert Path(files[ident]["path"]).read_bytes() == body
        assert files[ident]["sha256"] == hashlib.sha256(body).hexdigest()
    assert Path(files[K1]["path"]) == tmp_path / "hd209458_files" / K1
    assert [s["id"] for s in doc["skipped"]] == [K3]
    assert "HI.20100813.02010.fits is proprietary" in doc["skipped"][0]["reason"]
    assert not (tmp_path / "hd209458_files" / K3).exists()
    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert prov["source"] == "koa" and prov["table"] == "koa_hires" and len(prov["requests"]) == 3

    before = len(koa.requests)
    r2 = cli(*ARGS, "--download", "--out", str(tmp_path / "again.parquet"))
    assert r2.exit_code == 0, r2.stderr
    # The listing and both files from the cache; the refused file is asked again (not cached).
    assert len(koa.requests) == before + 1 and fake.asked[-1][0] == handle(K3)


def test_cookie_sent_never_shown_or_stored(koa, point, cli, tmp_path):
    point("koa", koa, API_KEY=COOKIE)
    f3 = fits_bytes(3)
    fake = FakeGetKoa({K1: [Reply(200, fits_bytes(1))], K2: [Reply(200, fits_bytes(2))]})
    fake.replies[K3] = [Reply(200, f3)]  # with the cookie, the proprietary file is given
    koa.route("GET", SYNC, csv("koa_hires-hd209458.csv"))
    koa.route("GET", GET, fake)
    dry = cli(*ARGS, "--download", "--dry-run")
    assert dry.exit_code == 0 and "cookie: set" in dry.stdout and koa.requests == []
    r = cli(
        "--log-level", "DEBUG", *ARGS, "--download", "--out", str(tmp_path / "c.parquet"), "--json"
    )
    assert r.exit_code == 0, r.stderr
    assert all(h.headers.get("cookie") == COOKIE for h in koa.requests)
    doc = json.loads(r.stdout)
    assert [f["id"] for f in doc["files"]] == [K1, K2, K3] and doc["skipped"] == []
    assert Path(doc["files"][2]["path"]).read_bytes() == f3
    secret = COOKIE.split("=", 1)[1]
    for text in (dry.stdout, dry.stderr, r.stdout, r.stderr):
        assert secret not in text
    for p in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert secret.encode() not in p.read_bytes(), p

    point("koa", koa, API_KEY="no-equals-sign")
    bad = cli(*ARGS, "--out", str(tmp_path / "d.parquet"))
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.stderr and "no-equals-sign" not in bad.stderr


def test_limit_imtype_date_and_5xx_retry(koa, tmp_path):
    from astrobio_data_sources import koa as k

    koa.route("GET", SYNC, Reply(500), csv("koa_hires-hd209458.csv"))
    q = k.KoaQuery.from_options("NIRSPEC", date="2018-03-16/2018-03-18", imtype="object", limit=3)
    res = k.fetch(q, out=tmp_path / "n.parquet")
    assert len(koa.hits(SYNC)) == 2
    assert koa.hits(SYNC)[1].q("query") == (
        "SELECT TOP 3 koaid, instrume, targname, ra, dec, date_obs, ut, elaptime, koaimtyp, "
        "progid, semid, filehand FROM koa_nirspec WHERE date_obs >= '2018-03-16' AND "
        "date_obs <= '2018-03-18' AND koaimtyp = 'object' ORDER BY koaid"
    )
    assert res.rows == 3 and res.files == []


def test_not_found_and_missing_file(koa, cli, tmp_path):
    out = tmp_path / "x" / "none.parquet"
    koa.route("GET", SYNC, csv("koa_hires-empty.csv"))
    r = cli("fetch", "koa", "--instrument", "OSIRIS", "--target", "Nobody", "--out", str(out))
    assert r.exit_code == 1
    assert "KOA has no koa_osiris files for OSIRIS, target 'Nobody'" in r.stderr
    assert not out.exists()

    koa.route("GET", SYNC, csv("koa_hires-hd209458.csv"))
    koa.route("GET", GET, FakeGetKoa({}))  # every file: 404
    r = cli(*ARGS, "--download", "--out", str(out))
    assert r.exit_code == 1 and f"koa product {K1} not found" in r.stderr
    assert not out.exists()

    r = cli("fetch", "koa", "--instrument", "SPEX")
    assert r.exit_code == 2 and "not a KOA instrument: use HIRES" in r.stderr
    r = cli("fetch", "koa", "--instrument", "HIRES", "--imtype", "selfie")
    assert r.exit_code == 2 and "--imtype 'selfie' is not known" in r.stderr
