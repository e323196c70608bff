"""`astrobio fetch uniprot` against a loopback UniProt REST server serving real SwissProt entries.

The eight entries are Biopython's `Tests/SwissProt/multi_ex.txt` (UniProt flat file) and
`multi_ex.fasta` (the same entries as UniProt FASTA). The server turns the flat file into the
TSV that `rest.uniprot.org/uniprotkb/search?format=tsv&fields=...` returns (column labels as
header) and pages it with `Link: <...&cursor=...>; rel="next"`. Expected values come from
Biopython's independent SwissProt and FASTA parsers, never from the code under test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from Bio import SeqIO, SwissProt
from httpserver import Reply, Request

DATA = Path(__file__).resolve().parents[1] / "data" / "uniprot"
LABELS = {
    "accession": "Entry",
    "id": "Entry Name",
    "protein_name": "Protein names",
    "gene_names": "Gene Names",
    "organism_name": "Organism",
    "organism_id": "Organism (ID)",
    "length": "Length",
}


def entries() -> list[dict]:
    out = []
    with open(DATA / "multi_ex.txt") as fh:
        for r in SwissProt.parse(fh):
            name = re.search(r"RecName: Full=([^;{]+)", r.description).group(1).strip()
            genes = " ".join(g["Name"] for g in r.gene_name if "Name" in g)
            out.append(
                {
                    "accession": r.accessions[0],
                    "id": r.entry_name,
                    "protein_name": name,
                    "gene_names": genes or None,
                    "organism_name": r.organism.rstrip("."),
                    "organism_id": int(r.taxonomy_id[0]),
                    "length": r.sequence_length,
                }
            )
    return out


def tsv(rows: list[dict], fields: list[str]) -> bytes:
    lines = ["\t".join(LABELS[f] for f in fields)]
    lines += ["\t".join("" if r[f] is None else str(r[f]) for f in fields) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def search_handler(srv, rows: list[dict]):
    """uniprotkb/search: `size` rows per page, the next page's cursor in the Link header."""

    def handle(req: Request) -> Reply:
        size = int(req.q("size") or 25)
        start = int(req.q("cursor") or 0)
        fields = req.q("fields").split(",")
        query = req.q("query")
        chosen = rows
        if query.startswith("accession:"):
            wanted = {t.split(":")[1] for t in query.split(" OR ")}
            chosen = [r for r in rows if r["accession"] in wanted]
        page = chosen[start : start + size]
        headers = {"X-Total-Results": str(len(chosen))}
        if start + size < len(chosen):
            nxt = (
                f"{srv.base_url}/uniprotkb/search?query={query}&format=tsv&fields="
                f"{','.join(fields)}&size={size}&cursor={start + size}"
            )
            headers["Link"] = f'<{nxt}>; rel="next"'
        return Reply(200, tsv(page, fields), headers, "text/plain;format=tsv")

    return handle


@pytest.fixture
def uniprot(server, point):
    point("uniprot", server)
    return server


def test_paged_search_end_to_end_then_cache(uniprot, run_cli, cli, tmp_path):
    rows = entries()
    uniprot.route("GET", "/uniprotkb/search", search_handler(uniprot, rows))
    out = tmp_path / "cbbq.parquet"
    args = ["fetch", "uniprot", "--query", "reviewed:true", "--page-size", "3", "--out", str(out)]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    pages = uniprot.hits("/uniprotkb/search")
    assert len(pages) == 3  # 8 entries, 3 per page, followed through the Link header
    assert [p.q("cursor") for p in pages] == [None, "3", "6"]
    t = pq.read_table(out)
    assert t.column_names == list(LABELS)
    assert t.to_pylist() == rows
    assert t.schema.field("length").type == "int64"
    assert t.schema.field("length").metadata[b"unit"] == b"aa"
    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert prov["source"] == "uniprot" and prov["rows"] == 8
    assert len(prov["requests"]) == 3 and not prov["from_cache"]
    # Asked again: every page comes from the cache, the server sees nothing.
    r2 = cli(*args)
    assert r2.exit_code == 0, r2.stderr
    assert "cache hit" in r2.stdout
    assert len(uniprot.hits("/uniprotkb/search")) == 3
    assert pq.read_table(out).to_pylist() == rows


def test_accessions_and_limit(uniprot, tmp_path):
    from astrobio_data_sources import uniprot as up

    rows = entries()
    uniprot.route("GET", "/uniprotkb/search", search_handler(uniprot, rows))
    q = up.UniprotQuery.from_options(accessions="P00750,Q01436,P28799", page_size=2, limit=2)
    res = up.fetch(q, out=tmp_path / "a.parquet")
    got = pq.read_table(tmp_path / "a.parquet").column("accession").to_pylist()
    assert got == ["P00750", "P28799"] and res.rows == 2
    assert len(uniprot.hits("/uniprotkb/search")) == 1  # the limit stops paging


def test_stream_fasta_summary_matches_biopython(uniprot, cli, tmp_path):
    body = (DATA / "multi_ex.fasta").read_bytes()
    uniprot.route("GET", "/uniprotkb/stream", Reply(200, body, content_type="text/plain"))
    out = tmp_path / "s.parquet"
    r = cli("fetch", "uniprot", "--query", "x", "--format", "fasta", "--stream", "--out", str(out))
    assert r.exit_code == 0, r.stderr
    ref = list(SeqIO.parse(DATA / "multi_ex.fasta", "fasta"))
    t = pq.read_table(out).to_pylist()
    assert [row["accession"] for row in t] == [rec.id.split("|")[1] for rec in ref]
    assert [row["length"] for row in t] == [len(rec.seq) for rec in ref]
    assert t[0]["organism_name"] == "Homo sapiens" and t[0]["gene_names"] == "PLAT"
    assert t[0]["protein_name"] == "Tissue-type plasminogen activator"
    assert out.with_suffix(".fasta").read_bytes() == body
    (req,) = uniprot.hits("/uniprotkb/stream")
    assert req.q("format") == "fasta" and req.q("size") is None


def test_not_found_writes_nothing(uniprot, cli, tmp_path):
    uniprot.route("GET", "/uniprotkb/search", search_handler(uniprot, entries()))
    out = tmp_path / "o" / "x.parquet"
    r = cli("fetch", "uniprot", "--accession", "A0A000", "--out", str(out))
    assert r.exit_code == 1
    assert "not found" in r.stderr.lower() or "no entries match" in r.stderr
    assert "accession:A0A000" in r.stderr
    assert not out.parent.exists()


def test_rate_limit_is_waited_out(uniprot, tmp_path):
    from astrobio_data_sources import uniprot as up

    rows = entries()
    good = search_handler(uniprot, rows)
    calls = []

    def handle(req):
        calls.append(req)
        if len(calls) == 2:  # the second page is refused once
            return Reply(429, b'{"messages":["Too many requests"]}', {"Retry-After": "0"})
        return good(req)

    uniprot.route("GET", "/uniprotkb/search", handle)
    q = up.UniprotQuery.from_options("reviewed:true", page_size=5)
    up.fetch(q, out=tmp_path / "r.parquet", progress=True)  # the page bar draws on stderr
    assert len(calls) == 3
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 8


def test_truncated_entry_is_named_and_not_cached(uniprot, cli, tmp_path):
    body = (DATA / "multi_ex.fasta").read_text()
    cut = (
        body[: body.index(">sp|Q01436")]
        + ">sp|Q01436|CEF_BPT4 Protein cef OS=Enterobacteria phage T4\n"
    )
    uniprot.route(
        "GET",
        "/uniprotkb/stream",
        Reply(200, cut.encode()),
        Reply(200, body.encode()),
    )
    out = tmp_path / "t.parquet"
    args = ["fetch", "uniprot", "--query", "x", "--format", "fasta", "--stream", "--out", str(out)]
    r = cli(*args)
    assert r.exit_code == 1
    assert "Q01436" in r.stderr and "no sequence" in r.stderr
    assert not out.exists() and not list(tmp_path.glob("*"))
    r2 = cli(*args)  # the bad body was never cached: this asks the server again
    assert r2.exit_code == 0, r2.stderr
    assert len(uniprot.hits("/uniprotkb/stream")) == 2


def test_dry_run_and_bad_options(uniprot, cli):
    r = cli("fetch", "uniprot", "--query", "gene:cbbQ", "--page-size", "50", "--dry-run")
    assert r.exit_code == 0
    assert f"GET {uniprot.base_url}/uniprotkb/search?query=gene%3AcbbQ&format=tsv" in r.stdout
    assert "size=50" in r.stdout and "Link" in r.stdout
    assert uniprot.requests == []
    bad = cli("fetch", "uniprot", "--accession", "not an accession")
    assert bad.exit_code == 2 and "not a UniProt accession" in bad.stderr
