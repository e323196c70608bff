"""`astrobio fetch exoplanets-org`: the Exoplanet Orbit Database CSV from a mirror or a file.

exoplanets.org has been offline for years, so the body is built here: rows in its documented
CSV format for eight real planets (tests/data/exoplanets_org/README.md says where each value
comes from). A loopback server plays the mirror, the dead service (404, an HTML page, a refused
connection) and a flaky one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from httpserver import Reply

DATA = Path(__file__).resolve().parents[1] / "data" / "exoplanets_org"
BODY = (DATA / "exoplanets.csv").read_bytes()
PATH = "/csv-files/exoplanets.csv"


def csv_reply(body: bytes = BODY, **kw) -> Reply:
    return Reply(200, body, content_type="text/csv", **kw)


@pytest.fixture
def org(server, point):
    point("exoplanets-org", server, RETRIES="2")
    return server


def _rows():
    return list(csv.DictReader(io.StringIO(BODY.decode())))


def test_mirror_end_to_end(org, run_cli, tmp_path):
    org.route("GET", "/mirror/exoplanets.csv", csv_reply())
    out = tmp_path / "org.parquet"
    r = run_cli(
        "fetch", "exoplanets-org", "--url", org.url("/mirror/exoplanets.csv"), "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    assert "rows" in r.stdout and "8" in r.stdout
    t = pq.read_table(out)
    rows = _rows()
    assert t.column_names == list(rows[0].keys())
    assert t.column("NAME").to_pylist() == [row["NAME"] for row in rows]
    for col, unit in [("MSINI", "jupiterMass"), ("MASSUPPER", "jupiterMass"), ("R", "jupiterRad"),
                      ("PER", "day"), ("A", "AU"), ("TEFF", "K"), ("FE", "dex"), ("ECC", "")]:  # fmt: skip
        f = t.schema.field(col)
        assert str(f.type) == "double" and f.metadata[b"unit"].decode() == unit
        got = t.column(col).to_pylist()
        want = [float(row[col]) if row[col] else math.nan for row in rows]
        assert all(
            g == w or (math.isnan(g) and math.isnan(w)) for g, w in zip(got, want, strict=True)
        )
    assert t.column("MASSREF").to_pylist()[0] == "Bakos et al. 2010"
    assert str(t.schema.field("DATE").type) == "int64"
    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert prov["sha256"] == hashlib.sha256(BODY).hexdigest() and prov["rows"] == 8
    assert prov["url"] == org.url("/mirror/exoplanets.csv")


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("how", ["404", "html", "refused"])
def test_offline_service_is_one_clear_message(org, point, cli, tmp_path, how):
    if how == "404":
        org.route("GET", PATH, Reply(404, b"<html><title>404 Not Found</title></html>"))
        url = org.url(PATH)
    elif how == "html":  # a parked domain answers 200 with a web page
        org.route("GET", PATH, Reply(200, b"<html><head><title>Domain parked</title></head></html>",
                                     content_type="text/html"))  # fmt: skip
        url = org.url(PATH)
    else:
        port = _dead_port()
        point("exoplanets-org", org, BASE_URL=f"http://127.0.0.1:{port}", RETRIES="1")
        url = f"http://127.0.0.1:{port}{PATH}"
    out = tmp_path / "org.parquet"
    r = cli("fetch", "exoplanets-org", "--out", str(out))
    assert r.exit_code == 1
    msg = r.stderr.strip()
    assert len(msg.splitlines()) == 1, msg
    assert f"from {url} (" in msg and "offline for years" in msg and "--url" in msg
    assert {"404": "HTTP 404", "html": "Domain parked", "refused": "cannot connect"}[how] in msg
    assert not out.exists()


def test_429_and_500_are_retried(org, tmp_path):
    from astrobio_data_sources import exoplanets_org as mod

    org.route("GET", PATH, Reply(429, headers={"Retry-After": "0"}), Reply(500), csv_reply())
    res = mod.fetch(out=tmp_path / "x.parquet", progress=False)
    assert res.rows == 8 and len(org.hits(PATH)) == 3


def test_truncated_download(org, cli, tmp_path):
    out = tmp_path / "x.parquet"
    org.route("GET", PATH, csv_reply(send_bytes=len(BODY) // 2))
    r = cli("fetch", "exoplanets-org", "--out", str(out))
    assert r.exit_code == 1 and "body shorter than Content-Length" in r.stderr
    assert "--url" in r.stderr and len(org.hits(PATH)) == 3
    cut = BODY[: BODY.index(b"\n", len(BODY) // 2) + 30]  # ends inside a row
    org.route("GET", PATH, csv_reply(cut, content_length=False))
    r = cli("fetch", "exoplanets-org", "--out", str(out))
    assert r.exit_code == 1 and "does not parse" in r.stderr
    assert not out.exists()


def test_local_file_dry_run_and_bad_path(org, cli, tmp_path):
    r = cli("fetch", "exoplanets-org", "--dry-run")
    assert r.exit_code == 0 and r.stdout.split() == ["GET", org.url(PATH)]
    local = DATA / "exoplanets.csv"
    r = cli("fetch", "exoplanets-org", "--url", str(local), "--dry-run")
    assert r.stdout.split() == ["READ", str(local.resolve())]
    out = tmp_path / "o.parquet"
    r = cli("fetch", "exoplanets-org", "--url", local.as_uri(), "--out", str(out), "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == 8 and org.requests == []
    assert pq.read_table(out).column("OTHERNAME").to_pylist()[2] == "109 Psc b"
    r = cli("fetch", "exoplanets-org", "--url", str(tmp_path / "nope.csv"))
    assert r.exit_code == 2 and "no such file" in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("pl_name,pl_rade\nX b,1.0\n")
    r = cli("fetch", "exoplanets-org", "--url", str(bad), "--out", str(out))
    assert r.exit_code == 1 and "no column 'NAME'" in r.stderr
