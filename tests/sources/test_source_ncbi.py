"""`astrobio fetch ncbi` against a loopback E-utilities server serving real GenBank/FASTA records.

Bodies are Biopython's test records (tests/data/ncbi, see tests/data/README.md): the server
slices `cor6_6.gb` (6 records) by `id=` or by history-server paging (`WebEnv`, `query_key`,
`retstart`, `retmax`) exactly as efetch does. Expected values are read from the files with
Biopython's own parser or written out by hand from the records, never from the code under test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from Bio import SeqIO
from httpserver import Reply, Request

DATA = Path(__file__).resolve().parents[1] / "data" / "ncbi"
GB = (DATA / "cor6_6.gb").read_text()
ACCESSIONS = ["X55053", "X62281", "M81224", "AJ237582", "L31939", "AF297471"]


def gb_records() -> list[str]:
    """The file's records, each ending with its `//` line (slicing keeps the bytes exact)."""
    parts = re.split(r"(?<=\n//\n)", GB)
    return [p for p in parts if p.strip()]


class Eutils:
    """esearch (JSON, with history) and efetch (by id or by history page)."""

    def __init__(self, srv, records: list[str] | None = None):
        self.srv, self.records = srv, records if records is not None else gb_records()
        self.searches = 0
        srv.route("GET", "/esearch.fcgi", self.esearch)
        srv.route("GET", "/efetch.fcgi", self.efetch)

    def esearch(self, req: Request) -> Reply:
        self.searches += 1
        count = 0 if "nothing" in req.q("term") else len(self.records)
        doc = {
            "header": {"type": "esearch", "version": "0.3"},
            "esearchresult": {
                "count": str(count),
                "retmax": "0",
                "retstart": "0",
                "querykey": "1",
                "webenv": f"MCID_env{self.searches}",
                "idlist": [],
            },
        }
        return Reply(200, json.dumps(doc).encode(), content_type="application/json")

    def efetch(self, req: Request) -> Reply:
        if req.q("id"):
            wanted = req.q("id").split(",")
            body = "".join(r for r in self.records if any(f"ACCESSION   {a}" in r for a in wanted))
        else:
            assert req.q("WebEnv") == f"MCID_env{self.searches}", "a stale WebEnv was used"
            start, size = int(req.q("retstart")), int(req.q("retmax"))
            body = "".join(self.records[start : start + size])
        return Reply(200, body.encode())


@pytest.fixture
def ncbi(server, point):
    point("ncbi", server)
    return server


def test_query_with_history_paging_end_to_end(ncbi, run_cli, cli, tmp_path):
    Eutils(ncbi)
    out = tmp_path / "cor.parquet"
    args = ["fetch", "ncbi", "--query", "cor6 AND Brassicaceae[orgn]", "--batch-size", "2"]
    r = run_cli(*args, "--out", str(out), env={"ASTROBIO_SOURCES__NCBI__API_KEY": "s3cret-key"})
    assert r.returncode == 0, r.stderr
    (search,) = ncbi.hits("/esearch.fcgi")
    assert search.q("usehistory") == "y" and search.q("api_key") == "s3cret-key"
    pages = ncbi.hits("/efetch.fcgi")
    assert [(p.q("retstart"), p.q("retmax")) for p in pages] == [("0", "2"), ("2", "2"), ("4", "2")]
    assert {p.q("query_key") for p in pages} == {"1"} and {p.q("rettype") for p in pages} == {"gb"}
    # The records file is the server's records, byte for byte, in order.
    assert out.with_suffix(".gb").read_text() == GB
    t = pq.read_table(out)
    ref = list(SeqIO.parse(DATA / "cor6_6.gb", "genbank"))
    assert t.column("accession").to_pylist() == [rec.id for rec in ref]
    assert t.column("length").to_pylist() == [513, 880, 441, 206, 282, 497]  # LOCUS lines
    assert t.column("organism").to_pylist()[:3] == [
        "Arabidopsis thaliana",
        "Arabidopsis thaliana",
        "Brassica napus",
    ]
    assert t.column("definition").to_pylist()[0] == "A.thaliana cor6.6 mRNA."
    assert t.schema.field("length").metadata[b"unit"] == b"bp"
    for side in (out, out.with_suffix(".gb")):
        text = side.with_name(side.name + ".provenance.json").read_text()
        assert "s3cret-key" not in text
        prov = json.loads(text)
        assert prov["source"] == "ncbi" and len(prov["requests"]) == 4
    assert "s3cret-key" not in r.stdout + r.stderr
    # Again: the cache answers everything.
    r2 = cli(*args, "--out", str(out))
    assert r2.exit_code == 0, r2.stderr
    assert "cache hit" in r2.stdout and len(ncbi.requests) == 4


def test_missing_batch_asks_for_a_fresh_webenv(ncbi, tmp_path):
    from astrobio_data_sources import ncbi as nc

    eu = Eutils(ncbi)
    nc.fetch(
        nc.NcbiQuery.from_options(term="cor6", max_records=4, batch_size=2),
        out=tmp_path / "a.parquet",
    )
    assert eu.searches == 1
    # All six now: the first two pages are cached, the third needs a WebEnv that is still
    # valid, so the cached search result is not trusted and esearch runs again.
    res = nc.fetch(nc.NcbiQuery.from_options(term="cor6", batch_size=2), out=tmp_path / "b.parquet")
    assert eu.searches == 2 and res.rows == 6
    assert len(ncbi.hits("/efetch.fcgi")) == 3


def test_accessions_by_id_and_not_found(ncbi, cli, tmp_path):
    Eutils(ncbi)
    out = tmp_path / "ids.parquet"
    r = cli("fetch", "ncbi", "--id", "X55053,L31939", "--out", str(out))
    assert r.exit_code == 0, r.stderr
    (req,) = ncbi.hits("/efetch.fcgi")
    assert req.q("id") == "X55053,L31939"
    assert pq.read_table(out).column("accession").to_pylist() == ["X55053.1", "L31939.1"]

    out2 = tmp_path / "none" / "x.parquet"
    r = cli("fetch", "ncbi", "--id", "X55053,ZZ999999", "--out", str(out2))
    assert r.exit_code == 1
    assert "ZZ999999" in r.stderr and "not found" in r.stderr
    assert not out2.parent.exists()
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.settings import get_settings

    # The incomplete answer was not cached (the complete one from before is the only entry).
    assert len(list(Cache(get_settings().cache_dir).entries("ncbi"))) == 1


def test_query_without_hits_is_not_found(ncbi, cli, tmp_path):
    Eutils(ncbi)
    r = cli("fetch", "ncbi", "--query", "nothing here", "--out", str(tmp_path / "x.parquet"))
    assert r.exit_code == 1
    assert "no records match query 'nothing here'" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_truncated_genbank_record_is_named(ncbi, cli, tmp_path):
    Eutils(ncbi, records=[(DATA / "no_end_marker.gb").read_text()])
    r = cli("fetch", "ncbi", "--id", "AB070938", "--out", str(tmp_path / "x.parquet"))
    assert r.exit_code == 1
    assert "'AB070938'" in r.stderr and "truncated" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_protein_fasta_and_rate_limit_waited_out(ncbi, tmp_path):
    from astrobio_data_sources import ncbi as nc

    body = (DATA / "NC_005816.faa").read_bytes()
    limited = json.dumps({"error": "API rate limit exceeded", "count": "4", "limit": "3"})
    ncbi.route(
        "GET",
        "/efetch.fcgi",
        Reply(429, limited.encode(), {"Retry-After": "0"}, "application/json"),
        Reply(200, body),
    )
    ref = list(SeqIO.parse(DATA / "NC_005816.faa", "fasta"))
    ids = [rec.id.split("|")[3] for rec in ref]
    q = nc.NcbiQuery.from_options(db="protein", ids=",".join(ids), fmt="fasta")
    res = nc.fetch(q, out=tmp_path / "p.parquet")
    assert len(ncbi.hits("/efetch.fcgi")) == 2 and res.rows == 10
    t = pq.read_table(tmp_path / "p.parquet")
    assert t.column("accession").to_pylist() == ids
    assert t.column("length").to_pylist() == [len(rec.seq) for rec in ref]
    assert set(t.column("organism").to_pylist()) == {"Yersinia pestis biovar Microtus str. 91001"}
    assert t.schema.field("length").metadata[b"unit"] == b"aa"


def test_dry_run_rate_and_options(ncbi, cli, monkeypatch):
    from astrobio_data_sources import ncbi as nc

    r = cli("fetch", "ncbi", "--query", "cor6", "--dry-run", "--batch-size", "50")
    assert r.exit_code == 0
    assert f"GET {ncbi.base_url}/esearch.fcgi?db=nucleotide&term=cor6&usehistory=y" in r.stdout
    assert "retstart=0&retmax=50" in r.stdout and ncbi.requests == []
    assert cli("fetch", "ncbi").exit_code == 2
    assert "not an accession" in cli("fetch", "ncbi", "--id", "a b").stderr
    # Published limits: 3 requests/s, 10 with a key (when the settings give none).
    from astrobio_cli import settings

    monkeypatch.delenv("ASTROBIO_SOURCES__NCBI__RATE_LIMIT")
    settings.configure(None, None)
    with nc._client() as c:
        assert c.limiter.interval == pytest.approx(1 / 3)
    monkeypatch.setenv("ASTROBIO_SOURCES__NCBI__API_KEY", "0123456789abcdef")
    settings.configure(None, None)
    with nc._client() as c:
        assert c.limiter.interval == pytest.approx(1 / 10)
        assert "api_key=***" in c.full_url("esearch.fcgi", {"db": "x"})
