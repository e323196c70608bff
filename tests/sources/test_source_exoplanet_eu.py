"""`astrobio fetch exoplanet-eu` against a loopback server replaying the real exoplanet.eu export.

The body is the real CSV export of 2024-08-30 (7,317 planets; tests/data/exoplanet_eu/). The
typed Parquet is checked against Python's `csv` module reading the same bytes, the provenance
against hashlib.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from httpserver import Reply

DATA = Path(__file__).resolve().parents[1] / "data" / "exoplanet_eu"
BODY = gzip.decompress((DATA / "exoplanet_eu.csv.gz").read_bytes())
PATH = "/catalog/csv/"
SHA = "fad1abeaf2bdc822f969cb2aec7f52e4547f1152b57a8e1afdcac4717c82bbd4"


def csv_reply(body: bytes = BODY, **kw) -> Reply:
    return Reply(200, body, content_type="text/csv; charset=utf-8", **kw)


@pytest.fixture
def eu(server, point):
    point("exoplanet-eu", server, RETRIES="2")
    return server


@functools.cache
def _rows():
    return list(csv.DictReader(io.StringIO(BODY.decode("utf-8"))))


def test_recorded_body_is_the_real_export():
    assert hashlib.sha256(BODY).hexdigest() == SHA
    assert len(_rows()) == 7317


def test_end_to_end_typed_parquet_units_provenance(eu, run_cli, cli, tmp_path):
    eu.route("GET", PATH, csv_reply())
    out = tmp_path / "eu.parquet"
    r = run_cli("fetch", "exoplanet-eu", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["rows"] == 7317 and summary["requests"] == 1 and not summary["from_cache"]

    t = pq.read_table(out)
    rows = _rows()
    assert t.num_rows == len(rows) and t.column_names == list(rows[0].keys())
    # types and units, as nasa-exoplanet writes them (astropy unit names in the field metadata)
    units = pytest.importorskip("astropy.units")
    for col, unit, typ in [
        ("mass", "jupiterMass", "double"),
        ("radius_error_max", "jupiterRad", "double"),
        ("orbital_period", "day", "double"),
        ("star_teff", "K", "double"),
        ("discovered", "", "int64"),
        ("name", "", "string"),
    ]:
        f = t.schema.field(col)
        assert str(f.type) == typ and f.metadata[b"unit"].decode() == unit
        if unit:
            units.Unit(unit)
    # every value of some columns, against Python's csv module (blank -> NaN / None)
    for col in ("mass", "mass_error_min", "radius", "orbital_period", "star_teff"):
        got = t.column(col).to_pylist()
        for want, g in zip((row[col] for row in rows), got, strict=True):
            ref = float(want) if want else math.nan  # the export also writes "nan"
            assert g == ref or (math.isnan(g) and math.isnan(ref)), (col, want, g)
    assert t.column("name").to_pylist() == [row["name"] for row in rows]
    assert t.column("alternate_names").to_pylist()[rows.index(
        next(r_ for r_ in rows if r_["name"] == "109 Psc b"))] == "HD 10697 b"  # fmt: skip
    years = t.column("discovered").to_pylist()
    assert years == [int(row["discovered"]) if row["discovered"] else None for row in rows]

    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert prov["source"] == "exoplanet-eu" and prov["sha256"] == SHA and prov["rows"] == 7317
    assert (
        prov["url"] == eu.url(PATH)
        and prov["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    )
    embedded = json.loads(t.schema.metadata[b"astrobio.provenance"])
    assert embedded["sha256"] == SHA

    # again: the cache answers, no request
    out2 = tmp_path / "again.parquet"
    r2 = cli("fetch", "exoplanet-eu", "--out", str(out2))
    assert r2.exit_code == 0, r2.stderr
    assert "cache hit" in r2.stdout and len(eu.hits(PATH)) == 1
    t2, same = pq.read_table(out2), ["name", "discovered", "star_name", "alternate_names"]
    assert t2.schema.remove_metadata() == t.schema.remove_metadata()
    assert t2.select(same).equals(t.select(same))


def test_429_and_503_are_retried(eu, tmp_path):
    from astrobio_data_sources import exoplanet_eu as mod

    eu.route(
        "GET",
        PATH,
        Reply(429, b"slow down", headers={"Retry-After": "0"}),
        Reply(503, b"<html><title>Service Unavailable</title></html>", content_type="text/html"),
        csv_reply(),
    )
    res = mod.fetch(out=tmp_path / "x.parquet", progress=False)
    assert res.rows == 7317 and len(eu.hits(PATH)) == 3


def test_truncated_download_is_an_error_and_never_cached(eu, cli, tmp_path):
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.settings import get_settings

    out = tmp_path / "x.parquet"
    # cut short against its Content-Length, on every attempt
    eu.route("GET", PATH, csv_reply(send_bytes=len(BODY) // 3))
    r = cli("fetch", "exoplanet-eu", "--out", str(out))
    assert r.exit_code == 1 and "body shorter than Content-Length" in r.stderr
    assert len(eu.hits(PATH)) == 3  # RETRIES=2: three attempts
    assert not out.exists()
    # cut mid-row with no Content-Length: the parser names the broken row
    cut = BODY[: BODY.index(b"\n", len(BODY) // 2) + 40]
    eu.route("GET", PATH, csv_reply(cut, content_length=False))
    r = cli("fetch", "exoplanet-eu", "--out", str(out))
    assert r.exit_code == 1
    assert "does not parse" in r.stderr and "cut short" in r.stderr and "Expected 98" in r.stderr
    assert not out.exists() and list(Cache(get_settings().cache_dir).entries("exoplanet-eu")) == []


def test_not_found_and_html_page(eu, cli, tmp_path):
    eu.route(
        "GET", PATH, Reply(404, b"<html><title>Not Found</title></html>", content_type="text/html")
    )
    r = cli("fetch", "exoplanet-eu", "--out", str(tmp_path / "x.parquet"))
    assert r.exit_code == 1
    assert f"{eu.url(PATH)} was not found (HTTP 404)" in r.stderr and "--url" in r.stderr
    eu.route("GET", "/moved.csv", csv_reply(b"<!DOCTYPE html><html><title>Maintenance</title>"))
    r = cli("fetch", "exoplanet-eu", "--url", eu.url("/moved.csv"), "--out", str(tmp_path / "y"))
    assert r.exit_code == 1 and "HTML page" in r.stderr and "Maintenance" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_dry_run_and_local_file(eu, cli, tmp_path):
    r = cli("fetch", "exoplanet-eu", "--dry-run")
    assert r.exit_code == 0 and r.stdout.split() == ["GET", eu.url(PATH)]
    r = cli("fetch", "exoplanet-eu", "--dry-run", "--json")
    assert json.loads(r.stdout)["requests"] == [f"GET {eu.url(PATH)}"]
    assert eu.requests == []
    local = tmp_path / "eu.csv"
    local.write_bytes(BODY)
    out = tmp_path / "local.parquet"
    r = cli("fetch", "exoplanet-eu", "--url", str(local), "--out", str(out), "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == 7317 and eu.requests == []
    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert prov["sha256"] == SHA and prov["url"] == local.resolve().as_uri()
