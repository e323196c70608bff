"""The sequences kind: FASTA and GenBank records as `astrobio fetch ncbi|uniprot|ensembl` write
them, read into plain records, and turned into text lines (e.g. a language model's corpus).

A record: `id` (accession), `description` (FASTA header after the id, or GenBank DEFINITION),
`organism` (GenBank ORGANISM; UniProt `OS=`; NCBI protein FASTA `[Organism]`), `length` and
`molecule` (GenBank LOCUS: DNA, RNA, or aa for proteins; FASTA: guessed from the letters).
A GenBank record must end with `//`; a truncated file is an error naming the record.
No plugin, no Biopython (the tests check this reader against Biopython).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from astrobio_cli.errors import UsageError

FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fna", ".ffn")
GENBANK_SUFFIXES = (".gb", ".gbk", ".genbank")
_NUCLEOTIDES = set("ACGTUN")


@dataclass(frozen=True)
class SequenceRecord:
    id: str
    description: str
    organism: str
    length: int
    molecule: str


def read_sequences(path: Path | str) -> list[SequenceRecord]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UsageError(f"sequence file {path} does not exist") from None
    suffix = path.suffix.lower()
    head = text.lstrip()[:10]
    if suffix in GENBANK_SUFFIXES or head.startswith("LOCUS"):
        return parse_genbank(text, str(path))
    if suffix in FASTA_SUFFIXES or head.startswith(">"):
        return parse_fasta(text, str(path))
    raise UsageError(
        f"{path} is neither FASTA (starts with '>') nor GenBank (starts with 'LOCUS'); "
        "`astrobio fetch ncbi --format fasta|genbank` writes one"
    )


def _organism_from_header(desc: str) -> str:
    m = re.search(r"\bOS=(.+?)(?:\s+[A-Z]{2}=|$)", desc)  # UniProt
    if m:
        return m.group(1).strip()
    m = re.search(r"\[([^\[\]]+)\]\s*$", desc)  # NCBI protein FASTA
    return m.group(1).strip() if m else ""


def parse_fasta(text: str, what: str) -> list[SequenceRecord]:
    out: list[SequenceRecord] = []
    header: str | None = None
    seq: list[str] = []

    def flush() -> None:
        if header is None:
            return
        ident, _, desc = header.partition(" ")
        s = "".join(seq).replace(" ", "").upper()
        letters = set(s) - {"-", "*"}
        molecule = "DNA" if letters and letters <= _NUCLEOTIDES else "aa"
        out.append(SequenceRecord(ident, desc.strip(), _organism_from_header(desc), len(s),
                                  molecule))  # fmt: skip

    for line in text.splitlines():
        if line.startswith(">"):
            flush()
            header, seq = line[1:].strip(), []
        elif line.strip():
            if header is None:
                raise UsageError(f"{what}: sequence data before the first '>' header")
            seq.append(line.strip())
    flush()
    if not out:
        raise UsageError(f"{what}: no FASTA record")
    return out


def parse_genbank(text: str, what: str) -> list[SequenceRecord]:
    out: list[SequenceRecord] = []
    chunks = re.split(r"(?m)^//\s*$", text)
    tail = chunks.pop()  # after the last '//': must be blank
    if tail.strip():
        first = tail.strip().splitlines()[0][:40]
        raise UsageError(f"{what}: a GenBank record has no '//' end marker (it starts {first!r})")
    for chunk in chunks:
        if not chunk.strip():
            continue
        locus = re.search(r"(?m)^LOCUS\s+(\S+)\s+(\d+)\s+(bp|aa)\s+(\S+)?", chunk)
        if locus is None:
            raise UsageError(f"{what}: a GenBank record without a LOCUS line")
        acc = re.search(r"(?m)^ACCESSION\s+(\S+)", chunk)
        version = re.search(r"(?m)^VERSION\s+(\S+)", chunk)
        ident = (version or acc or locus).group(1)
        definition = _field(chunk, "DEFINITION").rstrip(".")
        org = re.search(r"(?m)^\s+ORGANISM\s+(.+)$", chunk)
        unit, mol = locus.group(3), (locus.group(4) or "")
        molecule = "aa" if unit == "aa" else ("RNA" if "RNA" in mol.upper() else "DNA")
        out.append(SequenceRecord(ident, definition, org.group(1).strip() if org else "",
                                  int(locus.group(2)), molecule))  # fmt: skip
    if not out:
        raise UsageError(f"{what}: no GenBank record")
    return out


def _field(chunk: str, key: str) -> str:
    """A GenBank header field with its continuation lines (12-space indent) joined."""
    m = re.search(rf"(?m)^{key}\s+(.*(?:\n {{12}}.*)*)", chunk)
    return " ".join(part.strip() for part in m.group(1).splitlines()) if m else ""


def corpus_lines(records: list[SequenceRecord]) -> list[str]:
    """One sentence per record: 'X55053.1 (Arabidopsis thaliana): A.thaliana cor6.6 mRNA, a
    513 bp DNA sequence.'"""
    lines = []
    for r in records:
        unit = "residue protein" if r.molecule == "aa" else f"bp {r.molecule}"
        who = f" ({r.organism})" if r.organism else ""
        desc = f": {r.description}" if r.description else ""
        lines.append(f"{r.id}{who}{desc}, a {r.length} {unit} sequence.")
    return lines
