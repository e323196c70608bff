"""`astrobio fetch gtdb` against a loopback server laid out like data.gtdb.ecogenomic.org.

The files are written here in GTDB's layouts: `*_taxonomy_r<R>.tsv.gz` (no header: accession,
seven-rank taxonomy string) and `*_metadata_r<R>.tsv.gz` / `.tar.gz` (header row, tab-separated,
`none` for missing, `t`/`f` flags). The accessions and lineages are real GTDB assignments of
well-known genomes; metadata values are rounded public figures, for parsing only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pyarrow.parquet as pq
import pytest
from httpserver import Reply

ARCHAEA = [
    (
        "RS_GCF_000007185.1",
        "d__Archaea;p__Methanobacteriota;c__Methanococci;o__Methanococcales;f__Methanocaldococcaceae;g__Methanocaldococcus;s__Methanocaldococcus jannaschii",
    ),
    (
        "RS_GCF_000011185.1",
        "d__Archaea;p__Thermoproteota;c__Nitrososphaeria;o__Nitrososphaerales;f__Nitrosopumilaceae;g__Nitrosopumilus;s__Nitrosopumilus maritimus",
    ),
]
BACTERIA = [
    (
        "RS_GCF_000005845.2",
        "d__Bacteria;p__Pseudomonadota;c__Gammaproteobacteria;o__Enterobacterales;f__Enterobacteriaceae;g__Escherichia;s__Escherichia coli",
    ),
    (
        "RS_GCF_000009045.1",
        "d__Bacteria;p__Bacillota;c__Bacilli;o__Bacillales;f__Bacillaceae;g__Bacillus;s__Bacillus subtilis",
    ),
    (
        "GB_GCA_000008865.2",
        "d__Bacteria;p__Cyanobacteriota;c__Cyanobacteriia;o__PCC-6307;f__Cyanobiaceae;g__Prochlorococcus_A;s__Prochlorococcus_A marinus",
    ),
]
META_HEADER = [
    "accession",
    "ambiguous_bases",
    "checkm_completeness",
    "checkm_contamination",
    "gc_percentage",
    "genome_size",
    "gtdb_representative",
    "gtdb_taxonomy",
    "ncbi_organism_name",
    "ncbi_taxid",
]
META_ROWS = [
    [
        "RS_GCF_000007185.1",
        "0",
        "100.0",
        "0.0",
        "31.29",
        "1739927",
        "t",
        ARCHAEA[0][1],
        "Methanocaldococcus jannaschii DSM 2661",
        "243232",
    ],
    [
        "RS_GCF_000011185.1",
        "0",
        "99.03",
        "none",
        "34.17",
        "1645259",
        "t",
        ARCHAEA[1][1],
        "Nitrosopumilus maritimus SCM1",
        "436308",
    ],
]


def taxonomy_tsv(rows) -> bytes:
    return "".join(f"{a}\t{t}\n" for a, t in rows).encode()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def tar_gz(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def serve(srv, path: str, body: bytes) -> None:
    srv.route(
        "GET",
        f"/release220/220.0/{path}" if "/" not in path else f"/{path}",
        Reply(200, body, content_type="application/gzip"),
    )


@pytest.fixture
def gtdb(server, point):
    point("gtdb", server)
    return server


def test_taxonomy_both_domains_end_to_end(gtdb, run_cli, cli, tmp_path):
    ar, bac = gz(taxonomy_tsv(ARCHAEA)), gz(taxonomy_tsv(BACTERIA))
    serve(gtdb, "ar53_taxonomy_r220.tsv.gz", ar)
    serve(gtdb, "bac120_taxonomy_r220.tsv.gz", bac)
    out = tmp_path / "tax.parquet"
    r = run_cli("fetch", "gtdb", "--release", "220", "--out", str(out))
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out)
    assert t.column_names == [
        "accession",
        "gtdb_taxonomy",
        "domain",
        "phylum",
        "class",
        "order",
        "family",
        "genus",
        "species",
        "domain_file",
    ]
    rows = t.to_pylist()
    expected = ARCHAEA + BACTERIA
    assert [r_["accession"] for r_ in rows] == [a for a, _ in expected]
    for row, (_acc, tax) in zip(rows, expected, strict=True):
        ranks = [p.split("__", 1)[1] for p in tax.split(";")]
        assert [
            row[k] for k in ("domain", "phylum", "class", "order", "family", "genus", "species")
        ] == ranks
    assert [r_["domain_file"] for r_ in rows] == ["archaea"] * 2 + ["bacteria"] * 3
    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert prov["rows"] == 5 and [q["sha256"] for q in prov["requests"]] == [
        hashlib.sha256(ar).hexdigest(),
        hashlib.sha256(bac).hexdigest(),
    ]
    # The compressed originals are in the cache, byte for byte.
    for q, body in zip(prov["requests"], (ar, bac), strict=True):
        with open(q["cache_entry"], "rb") as fh:
            assert fh.read() == body
    r2 = cli(
        "fetch",
        "gtdb",
        "--release",
        "220",
        "--domain",
        "archaea",
        "--out",
        str(tmp_path / "a.parquet"),
    )
    assert r2.exit_code == 0 and "cache hit" in r2.stdout
    assert len(gtdb.requests) == 2
    assert pq.read_table(tmp_path / "a.parquet").num_rows == 2


def test_metadata_tar_gz_typed_columns(gtdb, tmp_path):
    from astrobio_data_sources import gtdb as g

    tsv = ("\t".join(META_HEADER) + "\n" + "".join("\t".join(r) + "\n" for r in META_ROWS)).encode()
    gtdb.route(
        "GET",
        "/release207/207.0/ar53_metadata_r207.tar.gz",
        Reply(200, tar_gz("ar53_metadata_r207.tsv", tsv)),
    )
    cols = "accession,checkm_contamination,genome_size,gtdb_representative,ncbi_taxid"
    q = g.GtdbQuery.from_options(release="207", table="metadata", domain="archaea", columns=cols)
    res = g.fetch(q, out=tmp_path / "m.parquet")
    t = pq.read_table(tmp_path / "m.parquet")
    assert t.column_names == [*cols.split(","), "domain_file"]
    assert str(t.schema.field("genome_size").type) == "int64"
    assert str(t.schema.field("checkm_contamination").type) == "double"
    assert t.schema.field("genome_size").metadata[b"unit"] == b"bp"
    assert t.column("genome_size").to_pylist() == [1739927, 1645259]
    assert t.column("checkm_contamination").to_pylist() == [0.0, None]  # "none" is missing
    assert t.column("gtdb_representative").to_pylist() == ["t", "t"]  # flags stay as written
    assert t.column("ncbi_taxid").to_pylist() == [243232, 436308]
    assert res.rows == 2


def test_unknown_release_is_not_found(gtdb, cli, tmp_path):
    out = tmp_path / "o" / "x.parquet"
    r = cli("fetch", "gtdb", "--release", "999", "--out", str(out))
    assert r.exit_code == 1
    assert "GTDB release 999: ar53_taxonomy_r999.tsv.gz not found" in r.stderr
    assert not out.parent.exists()


def test_truncated_archive_and_bad_row_are_named(gtdb, cli, tmp_path):
    whole = gz(taxonomy_tsv(ARCHAEA * 50))
    serve(gtdb, "ar53_taxonomy_r220.tsv.gz", whole[: len(whole) // 2])
    out = tmp_path / "x.parquet"
    r = cli("fetch", "gtdb", "--release", "220", "--domain", "archaea", "--out", str(out))
    assert r.exit_code == 1
    assert "ar53_taxonomy_r220.tsv.gz" in r.stderr and "truncated" in r.stderr
    assert not out.exists()
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.settings import get_settings

    assert list(Cache(get_settings().cache_dir).entries("gtdb")) == []  # never cached

    bad = [*BACTERIA[:2], ("RS_GCF_000000001.1", "d__Bacteria;p__Bacillota;g__Bacillus")]
    serve(gtdb, "bac120_taxonomy_r220.tsv.gz", gz(taxonomy_tsv(bad)))
    r = cli("fetch", "gtdb", "--release", "220", "--domain", "bacteria", "--out", str(out))
    assert r.exit_code == 1
    assert "row 3 ('RS_GCF_000000001.1')" in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_dry_run(gtdb, cli):
    r = cli("fetch", "gtdb", "--release", "214.1", "--table", "metadata", "--dry-run")
    assert r.exit_code == 0 and gtdb.requests == []
    assert r.stdout.split() == [
        "GET",
        f"{gtdb.base_url}/release214/214.1/ar53_metadata_r214.tsv.gz",
        "GET",
        f"{gtdb.base_url}/release214/214.1/bac120_metadata_r214.tsv.gz",
    ]
    assert cli("fetch", "gtdb", "--release", "latest!").exit_code == 2
