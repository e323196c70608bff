"""`astrobio fetch <source> --json`: one JSON object on stdout that names what was written.

For synthetic-climate (offline), uniprot, ensembl, gtdb, ncbi and mast-lightcurve the installed
`astrobio` runs in a subprocess against the loopback servers the sources' own tests use (their
handlers are imported, not copied); the whole of stdout must parse as JSON; its paths, row
counts and file list are checked against the files read back independently (pyarrow, netCDF4,
file sizes) and the provenance sidecars' sha256 against hashlib. mast-jwst-spectrum (the same
command module as mast-lightcurve), the cache re-runs and `--dry-run --json` run in process.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mast_fixtures import FakeMast, product, x1d
from test_source_ensembl import routes as ensembl_routes
from test_source_ensembl import seq_of
from test_source_gtdb import ARCHAEA, BACTERIA, gz, serve, taxonomy_tsv
from test_source_mast import TIC, tess_archive
from test_source_ncbi import Eutils, gb_records
from test_source_uniprot import entries, search_handler


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_json(run_cli, *args: str) -> dict:
    """`astrobio <args> --json` in a subprocess: exit 0 and stdout is exactly one JSON object."""
    r = run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # the whole of stdout, nothing before or after
    assert isinstance(doc, dict) and len(r.stdout.strip().splitlines()) == 1
    return doc


def check_table_doc(doc: dict, source: str, out: Path, rows: int) -> None:
    """What every remote source's --json says about its Parquet, against the file itself."""
    assert doc["source"] == source
    assert doc["out"] == str(out) and out.is_file()
    t = pq.read_table(out)
    assert doc["rows"] == t.num_rows == rows
    assert [c["name"] for c in doc["columns"]] == t.column_names
    side = Path(doc["provenance"])
    assert side == out.with_name(out.name + ".provenance.json")
    prov = json.loads(side.read_text())
    assert prov["output"]["sha256"] == sha256(out)
    assert prov["rows"] == rows and prov["source"] == source
    for f in doc["files"]:
        assert Path(f).is_file(), f
    assert doc["bytes"] == sum(q["bytes"] for q in prov["requests"] if not q["from_cache"])


@pytest.fixture
def point_all(server, point):
    def apply(*sources: str):
        for s in sources:
            point(s, server)
        return server

    return apply


def test_synthetic_climate_json(run_cli, tmp_path):
    import netCDF4

    out = tmp_path / "cube.nc"
    args = ["fetch", "synthetic-climate", "--samples", "4", "--nlat", "4", "--nlon", "8"]
    doc = run_json(run_cli, *args, "--nlev", "1", "--out", str(out))
    assert doc["source"] == "synthetic-climate" and doc["out"] == str(out)
    side = out.with_name(out.name + ".provenance.json")
    assert doc["provenance"] == str(side)
    assert doc["files"] == [str(out), str(side)]
    assert doc["bytes"] == out.stat().st_size
    assert json.loads(side.read_text())["output"]["sha256"] == sha256(out)
    with netCDF4.Dataset(out) as ds:
        assert doc["samples"] == len(ds.dimensions["sample"]) == 4
        assert doc["grid"] == {"nlev": 1, "nlat": 4, "nlon": 8}
        assert [len(ds.dimensions[d]) for d in ("plev", "lat", "lon")] == [1, 4, 8]
        ts = ds["ts"][:].astype("float64")
    assert doc["ts_min_k"] == pytest.approx(ts.min(), rel=1e-6)
    assert doc["ts_max_k"] == pytest.approx(ts.max(), rel=1e-6)
    assert doc["ts_mean_k"] == pytest.approx(ts.mean(), rel=1e-5)


def test_uniprot_json_then_cache(point_all, run_cli, cli, tmp_path):
    srv = point_all("uniprot")
    rows = entries()
    srv.route("GET", "/uniprotkb/search", search_handler(srv, rows))
    out = tmp_path / "sp.parquet"
    args = ["fetch", "uniprot", "--query", "reviewed:true", "--page-size", "3", "--out", str(out)]
    doc = run_json(run_cli, *args)
    check_table_doc(doc, "uniprot", out, len(rows))
    assert doc["files"] == [str(out), doc["provenance"]]
    assert doc["requests"] == 3 and doc["cached"] == 0 and doc["from_cache"] is False
    assert doc["bytes"] > 0 and doc["notes"] == ["3 page(s)"]
    # Again, in process: every page from the cache, still one JSON object.
    r = cli(*args, "--json")
    assert r.exit_code == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["from_cache"] is True and again["requests"] == 0 and again["cached"] == 3
    assert again["bytes"] == 0 and len(srv.hits("/uniprotkb/search")) == 3


def test_ensembl_json_records_and_summary(point_all, run_cli, tmp_path):
    from Bio import SeqIO

    srv = point_all("ensembl")
    s1, s2 = seq_of(50, 1), seq_of(30, 2)
    ensembl_routes(srv, s1, s2)
    out = tmp_path / "genes.parquet"
    args = ["fetch", "ensembl", "--id", "ENSG00000139618", "--symbol", "TP53", "--sequence"]
    doc = run_json(run_cli, *args, "--format", "fasta", "--out", str(out))
    check_table_doc(doc, "ensembl", out, 2)
    records = out.with_suffix(".fasta")
    assert doc["records"] == str(records)
    assert [str(r.seq) for r in SeqIO.parse(records, "fasta")] == [s1, s2]
    rec_side = records.with_name(records.name + ".provenance.json")
    assert doc["records_provenance"] == str(rec_side)
    assert json.loads(rec_side.read_text())["output"]["sha256"] == sha256(records)
    assert sorted(doc["files"]) == sorted(map(str, [out, records, doc["provenance"], rec_side]))
    assert doc["requests"] == 4 and doc["from_cache"] is False


def test_gtdb_json(point_all, run_cli, tmp_path):
    srv = point_all("gtdb")
    ar, bac = gz(taxonomy_tsv(ARCHAEA)), gz(taxonomy_tsv(BACTERIA))
    serve(srv, "ar53_taxonomy_r220.tsv.gz", ar)
    serve(srv, "bac120_taxonomy_r220.tsv.gz", bac)
    out = tmp_path / "tax.parquet"
    doc = run_json(run_cli, "fetch", "gtdb", "--release", "220", "--out", str(out))
    check_table_doc(doc, "gtdb", out, len(ARCHAEA) + len(BACTERIA))
    assert doc["files"] == [str(out), doc["provenance"]]
    assert doc["bytes"] == len(ar) + len(bac) and doc["requests"] == 2
    # The compressed originals stay in the cache (not among the written files), byte for byte.
    assert [sha256(p) for p in doc["originals"]] == [
        hashlib.sha256(ar).hexdigest(),
        hashlib.sha256(bac).hexdigest(),
    ]


def test_ncbi_json(point_all, run_cli, tmp_path):
    srv = point_all("ncbi")
    Eutils(srv)
    out = tmp_path / "cor.parquet"
    doc = run_json(run_cli, "fetch", "ncbi", "--id", "X55053,M81224", "--out", str(out))
    check_table_doc(doc, "ncbi", out, 2)
    records = out.with_suffix(".gb")
    assert doc["records"] == str(records)
    wanted = [
        r for r in gb_records() if r.split("ACCESSION   ")[1].split()[0] in ("X55053", "M81224")
    ]
    assert records.read_text() == "".join(wanted)
    rec_side = Path(doc["records_provenance"])
    assert json.loads(rec_side.read_text())["output"]["sha256"] == sha256(records)
    assert sorted(doc["files"]) == sorted(map(str, [out, records, doc["provenance"], rec_side]))
    assert doc["bytes"] == records.stat().st_size  # one efetch, the records byte for byte


def test_mast_lightcurve_json(point_all, run_cli, tmp_path):
    srv = point_all("mast-lightcurve")
    _fake, (a1, a2), _names = tess_archive(srv)
    out = tmp_path / "pimen.parquet"
    args = ["fetch", "mast-lightcurve", f"TIC {TIC}", "--sector", "1,2", "--cadence", "short"]
    doc = run_json(run_cli, *args, "--out", str(out), "--jobs", "1")
    check_table_doc(doc, "mast-lightcurve", out, len(a1["time"]) + len(a2["time"]))
    assert doc["files"] == [str(out), doc["provenance"]]
    assert doc["requests"] == 4 and doc["from_cache"] is False  # 2 invokes + 2 files


def test_mast_jwst_spectrum_json_with_quicklook(point_all, cli, tmp_path):
    srv = point_all("mast-jwst-spectrum")
    body, _arrays = x1d("WASP-39", "01366", 20, 9)
    j = "mast:JWST/product/jw01366-o001_t001_nirspec_clear-prism_x1d.fits"
    obs = [
        {
            "obsid": "2001",
            "obs_collection": "JWST",
            "dataproduct_type": "spectrum",
            "proposal_id": "1366",
            "s_ra": 217.3,
            "s_dec": -3.4,
        }
    ]
    FakeMast(srv, {}, obs, {"2001": [product("2001", j, "X1D", calib_level=3)]}, {j: body})
    out = tmp_path / "w39.parquet"
    args = ["fetch", "mast-jwst-spectrum", "--proposal", "1366", "--out", str(out)]
    r = cli(*args, "--quicklook", "--json")  # in process: mast's subprocess run is above
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    check_table_doc(doc, "mast-jwst-spectrum", out, 20)
    ql = tmp_path / "w39.quicklook"
    pngs = sorted(ql.glob("*.png"))
    assert doc["quicklook"] == str(ql) and len(pngs) == 1
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["files"] == [str(out), doc["provenance"], str(pngs[0])]


def test_dry_run_json_lists_the_planned_requests(point_all, cli):
    srv = point_all("uniprot", "mast-jwst-spectrum", "ncbi", "gtdb")
    r = cli("fetch", "mast-jwst-spectrum", "--target", "WASP-39", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["dry_run"] is True and doc["source"] == "mast-jwst-spectrum"
    services = [q["request"]["service"] for q in doc["requests"] if q["method"] == "POST"]
    assert services == ["Mast.Name.Lookup", "Mast.Caom.Filtered.Position", "Mast.Caom.Products"]
    assert doc["requests"][-1]["method"] == "GET"
    assert {q["url"].split("?")[0] for q in doc["requests"][:3]} == {f"{srv.base_url}/v0/invoke"}
    r = cli("fetch", "uniprot", "--query", "gene:cbbQ", "--limit", "3", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    (req,) = json.loads(r.stdout)["requests"]
    assert req["method"] == "GET" and req["url"].startswith(f"{srv.base_url}/uniprotkb/search?")
    assert "query=gene%3AcbbQ" in req["url"] and "Link" in req["then"]
    r = cli("fetch", "gtdb", "--release", "220", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    urls = [q["url"] for q in json.loads(r.stdout)["requests"]]
    assert [u.rsplit("/", 1)[1] for u in urls] == [
        "ar53_taxonomy_r220.tsv.gz",
        "bac120_taxonomy_r220.tsv.gz",
    ]
    assert srv.requests == []  # --dry-run: no network
