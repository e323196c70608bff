"""`astrobio fetch nasa-exoplanet` against a real loopback TAP server.

End to end through subprocesses of the installed `astrobio` script; the typed Parquet is checked
against Python's `csv` module reading the same body, the provenance against hashlib.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from httpserver import Reply

from astrobio_cli.errors import UsageError
from astrobio_data_sources import nasa_exoplanet as nx

ARCHIVE_DATA = Path(__file__).resolve().parents[1] / "data" / "nasa-exoplanet-archive"
DEFAULT_BODY = (ARCHIVE_DATA / "pscomppars-default.csv").read_bytes()


# -- ADQL from options, checked before any request ----------------------------------------------


def test_default_query_is_the_documented_column_set():
    q = nx.ExoplanetQuery.from_options()
    assert q.adql() == f"SELECT {', '.join(nx.DEFAULT_COLUMNS)} FROM pscomppars"
    assert DEFAULT_BODY.decode().splitlines()[0] == ",".join(nx.DEFAULT_COLUMNS)


def test_query_with_every_option():
    q = nx.ExoplanetQuery.from_options(
        "ps",
        "pl_name, pl_rade",
        "pl_rade < 2 and discoverymethod = 'Transit'",
        "sy_dist desc, pl_name",
        10,
    )
    assert q.adql() == (
        "SELECT TOP 10 pl_name, pl_rade FROM ps WHERE pl_rade < 2 and "
        "discoverymethod = 'Transit' ORDER BY sy_dist DESC, pl_name"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"table": "ps; drop table ps"}, "--table 'ps; drop table ps' is not an ADQL table name"),
        ({"columns": "pl_name,pl-rade"}, "--columns: 'pl-rade' is not an ADQL column name"),
        ({"columns": "pl_name,PL_NAME"}, "names a column twice"),
        ({"where": "discoverymethod = 'Transit"}, "a string is not closed"),
        ({"where": "pl_rade < 2; delete"}, "';' is not allowed"),
        ({"where": "(pl_rade < 2"}, "parentheses do not balance"),
        ({"where": 'discoverymethod = "Transit"'}, "single quotes"),
        ({"order_by": "pl_rade sideways"}, "is not 'column [asc|desc]'"),
        ({"limit": 0}, "--limit 0 must be a positive"),
    ],
)
def test_bad_options_are_usage_errors(options, message):
    with pytest.raises(UsageError) as info:
        nx.ExoplanetQuery.from_options(**options)
    assert message in str(info.value)


def test_units_are_astropy_units():
    units = pytest.importorskip("astropy.units")
    for name, info in nx.COLUMNS.items():
        if info.unit and name != "pl_insol":  # insolation is relative to Earth's: no astropy unit
            units.Unit(info.unit)


# -- the command, end to end ---------------------------------------------------------------------


def _leftovers(root):
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def test_dry_run_prints_the_exact_adql_and_url_without_network(
    loopback, archive_env, run_cli, tmp_path
):
    loopback.route("GET", "/TAP/sync", Reply(200, DEFAULT_BODY))
    args = ["fetch", "nasa-exoplanet", "--where", "pl_rade < 2", "--limit", "5"]
    dry = run_cli(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert loopback.requests == []
    lines = dry.stdout.splitlines()
    adql = f"SELECT TOP 5 {', '.join(nx.DEFAULT_COLUMNS)} FROM pscomppars WHERE pl_rade < 2"
    assert lines[0] == f"ADQL: {adql}"
    url = lines[1].removeprefix("URL:").strip()
    assert url.startswith(loopback.base_url + "/TAP/sync?")
    # the real run asks for exactly that URL
    real = run_cli(*args, "--out", str(tmp_path / "x.parquet"))
    assert real.returncode == 0, real.stderr
    sent = loopback.requests[0]
    parts = urlsplit(url)
    assert sent.raw_path == f"{parts.path}?{parts.query}"
    assert sent.q("query") == adql and sent.q("format") == "csv"


def test_bad_identifier_fails_before_any_request(loopback, archive_env, run_cli):
    res = run_cli("fetch", "nasa-exoplanet", "--columns", "pl_name,drop table")
    assert res.returncode == 2
    assert "not an ADQL column name" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert loopback.requests == []


def test_fetch_writes_typed_parquet_with_units_and_provenance(
    loopback, archive_env, run_cli, tmp_path
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    loopback.route("GET", "/TAP/sync", Reply(200, DEFAULT_BODY, content_type="text/csv"))
    out = tmp_path / "out" / "planets.parquet"
    res = run_cli("fetch", "nasa-exoplanet", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "rows" in res.stdout and f"written: {out} (parquet)" in res.stdout

    table = pq.read_table(out)
    schema = table.schema
    assert schema.names == list(nx.DEFAULT_COLUMNS)
    assert schema.field("pl_name").type == pa.string()
    assert schema.field("disc_year").type == pa.int64()
    assert schema.field("sy_pnum").type == pa.int64()
    assert schema.field("pl_eqt").type == pa.float64()  # blanks in the body: NaN, not an int
    assert schema.field("pl_orbper").metadata[b"unit"] == b"day"
    assert schema.field("st_teff").metadata[b"unit"] == b"K"
    assert json.loads(schema.metadata[b"astrobio.provenance"])["query"].startswith("SELECT")

    ref = list(csv.DictReader(DEFAULT_BODY.decode().splitlines()))
    got = table.to_pylist()
    assert len(got) == len(ref) == 6
    for g, r in zip(got, ref, strict=True):
        assert g["pl_name"] == r["pl_name"]
        assert g["disc_year"] == int(r["disc_year"])
        for name in ("pl_rade", "pl_bmasse", "pl_eqt", "st_lum", "sy_dist"):
            if r[name] == "":
                assert math.isnan(g[name]), (r["pl_name"], name)
            else:
                assert g[name] == float(r[name])

    prov = json.loads((out.parent / "planets.parquet.provenance.json").read_text())
    assert prov["source"] == "nasa-exoplanet"
    assert prov["query"] == f"SELECT {', '.join(nx.DEFAULT_COLUMNS)} FROM pscomppars"
    assert prov["url"].startswith(loopback.base_url + "/TAP/sync?query=SELECT")
    assert prov["http_status"] == 200
    assert prov["bytes"] == len(DEFAULT_BODY)
    assert prov["sha256"] == hashlib.sha256(DEFAULT_BODY).hexdigest()
    assert prov["rows"] == 6
    assert {
        "name": "pl_rade",
        "type": "float64",
        "unit": "earthRad",
        "description": "Planet radius",
    } in prov["columns"]
    assert prov["astrobio_version"]
    assert prov["retrieved_at"]
    assert prov["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "planets.parquet",
        "planets.parquet.provenance.json",
    ]


def test_second_run_is_a_cache_hit_and_refresh_downloads(loopback, archive_env, run_cli, tmp_path):
    loopback.route("GET", "/TAP/sync", Reply(200, DEFAULT_BODY))
    first = nx.fetch(nx.ExoplanetQuery.from_options(), fmt="csv")
    assert not first.from_cache
    assert next(csv.DictReader(first.out.read_text().splitlines()))["pl_name"] == "TRAPPIST-1 e"

    loopback.route("GET", "/TAP/sync", Reply(503, b"must not be asked"))
    second = run_cli("fetch", "nasa-exoplanet", "--format", "csv")
    assert second.returncode == 0, second.stderr
    assert "cache hit" in second.stdout and "no network used" in second.stdout
    assert len(loopback.requests) == 1
    prov = json.loads(first.sidecar.read_text())
    assert prov["from_cache"] is True
    assert prov["sha256"] == hashlib.sha256(DEFAULT_BODY).hexdigest()

    loopback.route("GET", "/TAP/sync", Reply(200, DEFAULT_BODY))
    third = nx.fetch(nx.ExoplanetQuery.from_options(), fmt="csv", refresh=True)
    assert not third.from_cache
    assert len(loopback.requests) == 2


def test_cache_verify_finds_corruption_and_fetch_heals_it(loopback, archive_env, run_cli, tmp_path):
    from astrobio_cli.net.cache import Cache

    loopback.route("GET", "/TAP/sync", Reply(200, DEFAULT_BODY))
    query = nx.ExoplanetQuery.from_options()
    body = nx.fetch(query).cache_path
    data = bytearray(body.read_bytes())
    data[-3] ^= 0x01
    body.write_bytes(bytes(data))

    res = run_cli("cache", "verify")
    assert res.returncode == 1
    assert "1 corrupt" in res.stdout and body.name[:12] in res.stdout
    listed = run_cli("cache", "list")
    assert "corrupt" in listed.stdout and body.name[:12] in listed.stdout

    again = nx.fetch(query)
    assert not again.from_cache
    assert len(loopback.requests) == 2
    assert body.read_bytes() == DEFAULT_BODY
    assert [problem for _, problem in Cache(tmp_path / "cache").verify()] == [None]


def test_real_recorded_single_column_body(loopback, archive_env):
    body = (ARCHIVE_DATA / "table-pscomppars.txt").read_bytes()
    loopback.route("GET", "/TAP/sync", Reply(200, body))
    q = nx.ExoplanetQuery.from_options(columns="pl_name")
    res = nx.fetch(q)
    ref = [r["pl_name"] for r in csv.DictReader(body.decode().splitlines())]
    assert res.rows == len(ref) > 1000

    import pyarrow.parquet as pq

    assert pq.read_table(res.out).column("pl_name").to_pylist() == ref


def test_empty_result_is_an_empty_typed_table(loopback, archive_env, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    header = ",".join(nx.DEFAULT_COLUMNS).encode() + b"\n"
    loopback.route("GET", "/TAP/sync", Reply(200, header))
    res = nx.fetch(nx.ExoplanetQuery.from_options(where="pl_rade < 0"), out=tmp_path / "e.parquet")
    table = pq.read_table(res.out)
    assert table.num_rows == 0
    assert table.schema.field("disc_year").type == pa.int64()
    assert table.schema.field("pl_rade").type == pa.float64()


BAD_ANSWERS = [
    (b'pl_name,hostname\n"a","b"\n', "has columns 'pl_name,hostname'"),
    (
        b'<?xml version="1.0"?><VOTABLE><RESOURCE type="results">'
        b'<INFO name="QUERY_STATUS" value="ERROR">Error type: UserError -- '
        b'"pl_radee" is not a column of pscomppars</INFO></RESOURCE></VOTABLE>',
        'reported an error: Error type: UserError -- "pl_radee" is not a column',
    ),
    (b"<html><head><title>IPAC maintenance</title></head></html>", "IPAC maintenance"),
    (",".join(nx.DEFAULT_COLUMNS).encode() + b'\n"a","b","c",2001\n', "line 2 has 4 fields"),
    (
        ",".join(nx.DEFAULT_COLUMNS).encode() + b'\n"a","b","c",2001,x,,,,,,,,,,,,,,,\n',
        "line 2: column 'pl_orbper' value 'x' is not a number",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"),
    BAD_ANSWERS,
    ids=["header-mismatch", "tap-error", "html", "short-row", "bad-number"],
)
def test_bad_answers_are_errors_and_nothing_is_written_or_cached(
    loopback, archive_env, tmp_path, body, message
):
    from astrobio_cli.net.errors import ContentError

    loopback.route("GET", "/TAP/sync", Reply(200, body))
    out = tmp_path / "out" / "p.parquet"
    with pytest.raises(ContentError) as info:
        nx.fetch(nx.ExoplanetQuery.from_options(), out=out)
    assert message in str(info.value)
    assert not out.exists()
    assert not list((tmp_path / "cache").rglob("*.body"))
    assert not _leftovers(tmp_path)


def test_tap_error_on_the_command_line_is_one_line(loopback, archive_env, run_cli, tmp_path):
    body, message = BAD_ANSWERS[1]
    loopback.route("GET", "/TAP/sync", Reply(200, body))
    out = tmp_path / "out" / "p.parquet"
    res = run_cli("fetch", "nasa-exoplanet", "--out", str(out))
    assert res.returncode == 1
    assert message in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() and not _leftovers(tmp_path)


def test_offline_names_host_and_cached_copy(loopback, archive_env, run_cli, tmp_path):
    loopback.route("GET", "/TAP/sync", Reply(200, DEFAULT_BODY, content_type="text/csv"))
    nx.fetch(nx.ExoplanetQuery.from_options())
    body = next((tmp_path / "cache" / "nasa-exoplanet").glob("*.body"))

    loopback.httpd.shutdown()
    loopback.httpd.server_close()  # the host is down now: connection refused
    res = run_cli("fetch", "nasa-exoplanet", "--refresh")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert f"host {urlsplit(loopback.base_url).netloc}" in res.stderr
    assert str(body) in res.stderr and "cached copy from" in res.stderr
    assert body.read_bytes() == DEFAULT_BODY
