"""The sequences kind: real GenBank and FASTA records (Biopython's test files), read by the core
reader and checked against Biopython's parsers."""

from __future__ import annotations

from pathlib import Path

import pytest
from Bio import SeqIO

from astrobio_cli.data import sequences
from astrobio_cli.errors import UsageError

DATA = Path(__file__).resolve().parents[1] / "data"


def test_genbank_matches_biopython():
    path = DATA / "ncbi" / "cor6_6.gb"
    ours = sequences.read_sequences(path)
    ref = list(SeqIO.parse(path, "genbank"))
    assert [r.id for r in ours] == [r.id for r in ref]
    assert [r.length for r in ours] == [len(r.seq) for r in ref]
    assert [r.organism for r in ours] == [r.annotations["organism"] for r in ref]
    assert [r.description for r in ours] == [r.description.rstrip(".") for r in ref]
    assert [r.molecule for r in ours] == [
        "RNA" if "RNA" in r.annotations["molecule_type"] else "DNA" for r in ref
    ]


@pytest.mark.parametrize("name", ["ncbi/NC_005816.faa", "uniprot/multi_ex.fasta"])
def test_fasta_matches_biopython(name):
    path = DATA / name
    ours = sequences.read_sequences(path)
    ref = list(SeqIO.parse(path, "fasta"))
    assert [r.id for r in ours] == [r.id for r in ref]
    assert [r.length for r in ours] == [len(r.seq) for r in ref]
    assert all(r.molecule == "aa" for r in ours)
    assert all(r.organism for r in ours)  # [Yersinia pestis ...] or OS=...


def test_truncated_genbank_and_corpus_lines():
    with pytest.raises(UsageError, match="no '//' end marker"):
        sequences.read_sequences(DATA / "ncbi" / "no_end_marker.gb")
    recs = sequences.read_sequences(DATA / "ncbi" / "cor6_6.gb")
    lines = sequences.corpus_lines(recs)
    assert lines[0].startswith(f"{recs[0].id} ({recs[0].organism}): ")
    assert lines[0].endswith(f"a {recs[0].length} bp RNA sequence.")  # LOCUS ... mRNA
