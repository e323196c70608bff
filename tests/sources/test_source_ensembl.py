"""`astrobio fetch ensembl` against a loopback Ensembl REST server.

Lookup bodies (tests/data/ensembl) follow the documented `lookup/id` and `lookup/symbol`
responses for BRCA2 and TP53 (GRCh38 coordinates as Ensembl publishes them). Sequences are
made up here (a seeded random string) because the real genes are 25-85 kb; the server serves
them in the `sequence/id` JSON layout (`id`, `desc`, `molecule`, `seq`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from Bio import SeqIO
from httpserver import Reply

DATA = Path(__file__).resolve().parents[1] / "data" / "ensembl"
BRCA2 = json.loads((DATA / "lookup_ENSG00000139618.json").read_text())
TP53 = json.loads((DATA / "lookup_symbol_TP53.json").read_text())


def seq_of(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(n))


def seq_doc(lookup: dict, seq: str) -> bytes:
    loc = f"chromosome:GRCh38:{lookup['seq_region_name']}:{lookup['start']}:{lookup['end']}:{lookup['strand']}"
    doc = {
        "id": lookup["id"],
        "version": lookup["version"],
        "desc": loc,
        "query": lookup["id"],
        "molecule": "dna",
        "seq": seq,
    }
    return json.dumps(doc).encode()


def js(doc, status=200, **headers) -> Reply:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return Reply(
        status, body, {k.replace("_", "-"): str(v) for k, v in headers.items()}, "application/json"
    )


@pytest.fixture
def ensembl(server, point):
    point("ensembl", server)
    return server


def routes(srv, brca2_seq: str, tp53_seq: str) -> None:
    srv.route("GET", "/lookup/id/ENSG00000139618", js(BRCA2))
    srv.route("GET", "/lookup/symbol/homo_sapiens/TP53", js(TP53))
    srv.route("GET", "/sequence/id/ENSG00000139618", js(seq_doc(BRCA2, brca2_seq)))
    srv.route("GET", "/sequence/id/ENSG00000141510", js(seq_doc(TP53, tp53_seq)))


def test_lookups_with_sequences_end_to_end(ensembl, run_cli, cli, tmp_path):
    s1, s2 = seq_of(250, 1), seq_of(130, 2)
    routes(ensembl, s1, s2)
    out = tmp_path / "genes.parquet"
    args = ["fetch", "ensembl", "--id", "ENSG00000139618", "--symbol", "TP53", "--sequence"]
    r = run_cli(*args, "--format", "fasta", "--out", str(out))
    assert r.returncode == 0, r.stderr
    seqs = ensembl.hits("/sequence/id/ENSG00000141510")  # TP53's id came from its lookup
    assert len(seqs) == 1 and seqs[0].q("type") == "genomic"
    assert seqs[0].q("content-type") == "application/json"
    t = pq.read_table(out).to_pylist()
    assert [row["id"] for row in t] == ["ENSG00000139618", "ENSG00000141510"]
    assert [row["query"] for row in t] == ["ENSG00000139618", "TP53"]
    assert t[0]["start"] == 32315086 and t[0]["end"] == 32400268 and t[1]["strand"] == -1
    assert t[1]["display_name"] == "TP53" and t[0]["biotype"] == "protein_coding"
    assert [row["sequence_length"] for row in t] == [250, 130]
    fasta = list(SeqIO.parse(out.with_suffix(".fasta"), "fasta"))
    assert [rec.id for rec in fasta] == ["ENSG00000139618.17", "ENSG00000141510.21"]
    assert [str(rec.seq) for rec in fasta] == [s1, s2]
    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert len(prov["requests"]) == 4 and prov["source"] == "ensembl"
    # JSON records from the cache: no new request.
    n = len(ensembl.requests)
    r2 = cli(*args, "--out", str(tmp_path / "again.parquet"))
    assert r2.exit_code == 0, r2.stderr
    assert len(ensembl.requests) == n and "cache hit" in r2.stdout
    docs = json.loads((tmp_path / "again.json").read_text())
    assert docs[0]["canonical_transcript"] == "ENST00000380152.8" and docs[1]["seq"] == s2


def test_rate_limit_headers_and_retry_after(ensembl, tmp_path):
    from astrobio_data_sources import ensembl as en

    ensembl.route(
        "GET",
        "/lookup/id/ENSG00000139618",
        js(
            {"error": "You have exceeded the limit of 15 requests per second"},
            429,
            Retry_After="0.01",
        ),
        js(
            BRCA2,
            X_RateLimit_Limit=55000,
            X_RateLimit_Remaining=0,
            X_RateLimit_Reset=7,
            X_RateLimit_Period=3600,
        ),
    )
    ensembl.route(
        "GET",
        "/lookup/symbol/homo_sapiens/TP53",
        js(TP53, X_RateLimit_Remaining=54999, X_RateLimit_Reset=7),
    )
    waits: list[float] = []
    q = en.EnsemblQuery.from_options(ids="ENSG00000139618", symbols="TP53")
    res = en.fetch(q, out=tmp_path / "r.parquet", sleep=waits.append, progress=True)
    assert len(ensembl.hits("/lookup/id/ENSG00000139618")) == 2  # the 429 was waited out
    # Remaining 0 with a 7 s reset: the next request waited for the window.
    assert len(waits) == 1 and 6.0 < waits[0] <= 7.0
    assert res.rows == 2 and any("rate-limit window" in n for n in res.notes)


def test_unknown_id_is_not_found(ensembl, cli, tmp_path):
    ensembl.route(
        "GET",
        "/lookup/id/ENSG00000000001",
        Reply(400, (DATA / "error_no_lookup.json").read_bytes(), content_type="application/json"),
    )
    out = tmp_path / "x" / "y.parquet"
    r = cli("fetch", "ensembl", "--id", "ENSG00000000001", "--out", str(out))
    assert r.exit_code == 1
    assert "'ENSG00000000001' not found" in r.stderr
    assert "No valid lookup found for ID ENSG00000000001" in r.stderr
    assert not out.parent.exists()
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.settings import get_settings

    assert list(Cache(get_settings().cache_dir).entries("ensembl")) == []


def test_region_and_dry_run(ensembl, cli, tmp_path):
    seq = seq_of(101, 3)
    doc = {
        "id": "chromosome:GRCh38:X:1000000:1000100:1",
        "molecule": "dna",
        "query": "X:1000000..1000100:1",
        "seq": seq,
    }
    ensembl.route("GET", "/sequence/region/homo_sapiens/X:1000000..1000100:1", js(doc))
    r = cli("fetch", "ensembl", "--region", "X:1000000..1000100:1", "--dry-run")
    assert r.exit_code == 0 and ensembl.requests == []
    assert r.stdout.strip() == (
        f"GET {ensembl.base_url}/sequence/region/homo_sapiens/X:1000000..1000100:1"
        "?content-type=application%2Fjson"
    )
    out = tmp_path / "reg.parquet"
    r = cli(
        "fetch",
        "ensembl",
        "--region",
        "X:1000000..1000100:1",
        "--format",
        "fasta",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.stderr
    (row,) = pq.read_table(out).to_pylist()
    assert (row["seq_region_name"], row["start"], row["end"], row["strand"]) == (
        "X",
        1000000,
        1000100,
        1,
    )
    assert row["sequence_length"] == 101 == row["end"] - row["start"] + 1
    (rec,) = SeqIO.parse(out.with_suffix(".fasta"), "fasta")
    assert str(rec.seq) == seq
    bad = cli("fetch", "ensembl", "--region", "chrX")
    assert bad.exit_code == 2 and "--region 'chrX' is not valid" in bad.stderr
