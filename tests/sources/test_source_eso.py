"""`astrobio fetch eso` against a loopback ESO archive (TAP `tap_obs/sync` + `dataPortal/file`).

Listing bodies are tests/data/eso/*.vot (VOTables in the layout ESO's TAP service sends); the
products are small FITS files built here with astropy. Expected values are the numbers in those
files and the bytes served, never values read back by the code under test.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from httpserver import Reply

DATA = Path(__file__).resolve().parents[1] / "data" / "eso"
SYNC = "/tap_obs/sync"
FILE = "/dataPortal/file/"
ADP1, ADP2, ADP3 = (
    "ADP.2014-09-16T11:03:30.940",
    "ADP.2014-09-16T11:05:02.554",
    "ADP.2026-10-05T09:12:40.101",  # obs_release_date 2099: proprietary
)
TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LWVzby10b2tlbg.Zm9vYmFy"
VOTABLE = "application/x-votable+xml"
ARGS = ("fetch", "eso", "--instrument", "HARPS", "--target", "HD 40307")


def vot(name: str) -> Reply:
    return Reply(200, (DATA / name).read_bytes(), content_type=VOTABLE)


def fits_bytes(seed: int, n: int = 4000) -> bytes:
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    hdu = fits.PrimaryHDU(rng.normal(size=n).astype(np.float32))
    hdu.header["INSTRUME"] = "HARPS"
    hdu.header["OBJECT"] = "HD 40307"
    buf = io.BytesIO()
    fits.HDUList([hdu]).writeto(buf)
    return buf.getvalue()


@pytest.fixture
def eso(server, point, tmp_path, monkeypatch):
    from astrobio_cli import settings

    monkeypatch.setenv("ASTROBIO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ASTROBIO_DATA_DIR", str(tmp_path / "data"))
    env = point("eso", server)
    settings.configure(None, None)
    return server, env


def test_listing_download_resume_and_retries_end_to_end(eso, run_cli, cli, tmp_path):
    srv, _ = eso
    f1, f2 = fits_bytes(1), fits_bytes(2)
    etag = {"ETag": '"adp1-v1"'}
    srv.route(
        "GET",
        SYNC,
        Reply(429, b"slow down", headers={"Retry-After": "0"}),
        vot("obscore-harps-hd40307.vot"),
    )
    cut = len(f1) // 2
    srv.route(
        "GET",
        FILE + ADP1,
        Reply(200, f1, send_bytes=cut, ranges=True, headers=etag, content_type="application/fits"),
        Reply(200, f1, ranges=True, headers=etag, content_type="application/fits"),
    )
    srv.route("GET", FILE + ADP2, Reply(503), Reply(200, f2, content_type="application/fits"))
    out = tmp_path / "harps.parquet"
    r = run_cli(*ARGS, "--download", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)

    # The query: ADQL as written by hand here, VOTable asked for; asked again after the 429.
    sent = srv.hits(SYNC)
    assert len(sent) == 2
    assert sent[1].q("format") == "votable"
    assert sent[1].q("query") == (
        "SELECT obs_id, dp_id, obs_collection, instrument_name, target_name, s_ra, s_dec, t_min, "
        "t_max, t_exptime, dataproduct_type, calib_level, proposal_id, obs_release_date, "
        "access_url, access_estsize FROM ivoa.ObsCore WHERE instrument_name = 'HARPS' AND "
        "target_name = 'HD 40307' ORDER BY t_min, dp_id"
    )
    # The truncated download resumed with Range from the byte it had; the 503 was retried.
    h1 = srv.hits(FILE + ADP1)
    assert len(h1) == 2 and "range" not in h1[0].headers
    assert h1[1].headers["range"] == f"bytes={cut}-" and h1[1].headers["if-range"] == '"adp1-v1"'
    assert len(srv.hits(FILE + ADP2)) == 2
    assert srv.hits(FILE + ADP3) == []  # proprietary: never asked for

    # The listing: typed columns, values and units from the VOTable.
    t = pq.read_table(out)
    assert t.num_rows == 3 == doc["rows"]
    assert t.column("dp_id").to_pylist() == [ADP1, ADP2, ADP3]
    np.testing.assert_array_equal(t.column("s_ra").to_numpy(), [88.5163, 88.5163, 88.5164])
    np.testing.assert_array_equal(
        t.column("t_min").to_numpy(), [55568.11119, 55637.05051, 61315.34401]
    )
    assert t.column("calib_level").to_pylist() == [2, 2, 2]
    assert t.column("access_estsize").to_pylist() == [712, 709, None]
    assert t.schema.field("s_ra").metadata[b"unit"] == b"deg"
    assert str(t.schema.field("calib_level").type) == "int64"

    # Two public files, byte for byte, sha256 recorded; the proprietary one skipped, said why.
    files = {f["id"]: f for f in doc["files"]}
    assert sorted(files) == [ADP1, ADP2]
    for ident, body in ((ADP1, f1), (ADP2, f2)):
        assert Path(files[ident]["path"]).read_bytes() == body
        assert files[ident]["sha256"] == hashlib.sha256(body).hexdigest()
    assert Path(files[ADP1]["path"]).parent == tmp_path / "harps_files"
    assert Path(files[ADP1]["path"]).name == "ADP.2014-09-16T11_03_30.940.fits"
    assert [s["id"] for s in doc["skipped"]] == [ADP3]
    assert "proprietary until 2099-10-02" in doc["skipped"][0]["reason"]
    assert "sources.eso.api_key" in doc["skipped"][0]["reason"]
    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert prov["source"] == "eso" and prov["rows"] == 3 and not prov["authenticated"]
    assert [f["sha256"] for f in prov["files"]] == [files[ADP1]["sha256"], files[ADP2]["sha256"]]
    assert len(prov["requests"]) == 3  # listing + 2 files

    # Again: everything from the cache, no network.
    before = len(srv.requests)
    r2 = cli(*ARGS, "--download", "--out", str(tmp_path / "again.parquet"))
    assert r2.exit_code == 0, r2.stderr
    assert "cache hit" in r2.stdout and len(srv.requests) == before


def test_dry_run_prints_query_touches_no_network(eso, cli):
    srv, _ = eso
    r = cli(
        "fetch", "eso", "--ra", "88.5", "--dec", "-60", "--radius", "0.05",
        "--date", "2010-01-01/2010-12-31", "--dp-type", "spectrum", "--limit", "7",
        "--download", "--dry-run",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    # MJD 55197 is 2010-01-01; 55562 is 2011-01-01 (the day after the end date).
    assert (
        "ADQL: SELECT TOP 7 obs_id, dp_id, obs_collection, instrument_name, target_name, s_ra, "
        "s_dec, t_min, t_max, t_exptime, dataproduct_type, calib_level, proposal_id, "
        "obs_release_date, access_url, access_estsize FROM ivoa.ObsCore WHERE "
        "CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 88.5, -60.0, 0.05)) = 1 AND "
        "t_min >= 55197 AND t_min < 55562 AND dataproduct_type = 'spectrum' ORDER BY t_min, dp_id"
    ) in r.stdout
    assert f"GET {srv.base_url}/tap_obs/sync?query=SELECT+TOP+7+" in r.stdout
    assert f"GET {srv.base_url}/dataPortal/file/<dp_id>" in r.stdout
    assert srv.requests == []


def test_token_sent_as_bearer_never_shown_or_stored(eso, point, cli, tmp_path):
    srv, _ = eso
    point("eso", srv, API_KEY=TOKEN)
    f1, f2 = fits_bytes(3), fits_bytes(4)
    srv.route("GET", SYNC, vot("obscore-harps-hd40307.vot"))
    srv.route("GET", FILE + ADP1, Reply(200, f1, content_type="application/fits"))
    srv.route("GET", FILE + ADP2, Reply(200, f2, content_type="application/fits"))
    srv.route(
        "GET",
        FILE + ADP3,
        Reply(401, json.dumps({"error": f"token {TOKEN} lacks access"}).encode(), content_type="application/json"),
    )  # fmt: skip
    dry = cli(*ARGS, "--download", "--dry-run")
    assert dry.exit_code == 0 and "Bearer ***" in dry.stdout and TOKEN not in dry.stdout
    out = tmp_path / "t.parquet"
    r = cli("--log-level", "DEBUG", *ARGS, "--download", "--out", str(out), "--json")
    assert r.exit_code == 0, r.stderr
    # With a token the proprietary product is asked for; the 401 is a skip with a reason.
    assert all(h.headers.get("authorization") == f"Bearer {TOKEN}" for h in srv.requests)
    assert len(srv.hits(FILE + ADP3)) == 1
    doc = json.loads(r.stdout)
    assert [f["id"] for f in doc["files"]] == [ADP1, ADP2]
    assert doc["skipped"][0]["id"] == ADP3 and "HTTP 401" in doc["skipped"][0]["reason"]
    shown = cli("config", "show")
    assert shown.exit_code == 0 and "sources.eso.api_key" in shown.stdout
    for text in (dry.stdout, dry.stderr, r.stdout, r.stderr, shown.stdout):
        assert TOKEN not in text
    # Nothing written anywhere holds it: outputs, provenance, Parquet metadata, the cache.
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".provenance.json") for p in written)
    assert any(p.suffix == ".json" and "cache" in p.parts for p in written)
    for p in written:
        assert TOKEN.encode() not in p.read_bytes(), p


def test_limit_overflow_and_5xx_retry(eso, tmp_path):
    from astrobio_data_sources import eso as e

    srv, _ = eso
    srv.route("GET", SYNC, Reply(502), vot("obscore-limit2-overflow.vot"))
    q = e.EsoQuery.from_options(instrument="harps", limit=2)
    res = e.fetch(q, out=tmp_path / "two.parquet")
    assert len(srv.hits(SYNC)) == 2
    assert srv.hits(SYNC)[1].q("query").startswith("SELECT TOP 2 obs_id, dp_id,")
    assert res.rows == 2 == pq.read_table(tmp_path / "two.parquet").num_rows
    assert any("OVERFLOW" in n for n in res.notes)
    assert res.files == [] and res.skipped == []  # no --download: listing only


def test_not_found_tap_error_and_missing_file(eso, cli, tmp_path):
    srv, _ = eso
    out = tmp_path / "x" / "none.parquet"
    srv.route("GET", SYNC, vot("obscore-empty.vot"))
    r = cli("fetch", "eso", "--instrument", "HARPS", "--target", "Nobody", "--out", str(out))
    assert r.exit_code == 1
    assert "ESO has no ivoa.ObsCore products for instrument HARPS, target 'Nobody'" in r.stderr
    assert not out.exists()

    srv.route("GET", SYNC, Reply(200, (DATA / "tap-error.vot").read_bytes(), content_type=VOTABLE))
    r = cli("fetch", "eso", "--instrument", "UVES", "--out", str(out))
    assert r.exit_code == 1
    assert 'column "instrument_nam" not found' in r.stderr and not out.exists()

    srv.route("GET", SYNC, vot("obscore-harps-hd40307.vot"))
    srv.route("GET", FILE + ADP1, Reply(404, b"no such file"))
    r = cli(*ARGS, "--download", "--out", str(out))
    assert r.exit_code == 1
    assert f"eso product {ADP1} not found" in r.stderr and "HTTP 404" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "give at least one of --instrument"),
        (("--ra", "10"), "needs both --ra and --dec"),
        (("--target", "x", "--ra", "1", "--dec", "2"), "not both"),
        (("--date", "2019-13-01"), "is not a date"),
        (("--date", "2020-01-01/2019-01-01"), "end is before the start"),
        (("--instrument", "HARPS", "--dp-type", "movie"), "--dp-type 'movie' is not known"),
        (("--instrument", "HARPS", "--limit", "0"), "--limit 0 must be a positive"),
    ],
)
def test_bad_options_say_what_to_do(eso, cli, args, said):
    srv, _ = eso
    r = cli("fetch", "eso", *args)
    assert r.exit_code == 2 and said in r.stderr
    assert srv.requests == []


def test_compressed_fits_kept_with_its_suffix_and_html_rejected(eso, cli, tmp_path):
    import gzip

    srv, _ = eso
    z1, z2 = gzip.compress(fits_bytes(5)), gzip.compress(fits_bytes(6))
    srv.route("GET", SYNC, vot("obscore-harps-hd40307.vot"))
    srv.route("GET", FILE + ADP1, Reply(200, z1, content_type="application/gzip"))
    srv.route("GET", FILE + ADP2, Reply(200, z2, content_type="application/gzip"))
    r = cli(*ARGS, "--download", "--out", str(tmp_path / "z.parquet"), "--json")
    assert r.exit_code == 0, r.stderr
    paths = [Path(f["path"]) for f in json.loads(r.stdout)["files"]]
    assert [p.name for p in paths] == [
        "ADP.2014-09-16T11_03_30.940.fits.gz",
        "ADP.2014-09-16T11_05_02.554.fits.gz",
    ]
    assert [p.read_bytes() for p in paths] == [z1, z2]

    page = b"<!DOCTYPE html><html><head><title>ESO Single Sign On</title></head></html>"
    srv.route("GET", FILE + ADP2, Reply(200, page, content_type="text/html"))
    out = tmp_path / "h.parquet"
    r = cli(*ARGS, "--download", "--refresh", "--out", str(out))
    assert r.exit_code == 1 and "HTML page instead of data" in r.stderr
    assert "ESO Single Sign On" in r.stderr and not out.exists()
