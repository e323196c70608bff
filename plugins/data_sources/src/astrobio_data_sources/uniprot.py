"""UniProtKB entries through the UniProt REST API (search with cursor paging, or stream).

    q = UniprotQuery.from_options(query="gene:cbbQ AND reviewed:true", fmt="tsv")
    result = fetch(q)      # Parquet of the chosen fields (+ the FASTA file for --format fasta)

- `uniprotkb/search` returns `size` entries per page and the next page's URL in the `Link`
  header (`<...&cursor=...>; rel="next"`); the total is in `X-Total-Results`. Every page is
  cached with its Link header, so a repeated query needs no network at all.
- `uniprotkb/stream` (`--stream`) returns everything in one response (no paging; UniProt limits
  it to 10 million entries); it is downloaded with the layer's streaming download.
- TSV: the header holds column labels ("Entry", "Organism"...); the Parquet columns are named
  by the requested fields (accession, organism_name...), in order, with `length` and `mass`
  as integers.
- FASTA: `>sp|P00750|TPA_HUMAN Tissue-type plasminogen activator OS=Homo sapiens OX=9606
  GN=PLAT PE=1 SV=1` headers; the Parquet summary holds accession, entry name, protein name,
  organism, taxon id, gene, length.

API documentation: https://www.uniprot.org/help/api_queries and /help/pagination
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError

SOURCE = "uniprot"
BASE_URL = "https://rest.uniprot.org"
FORMATS = ("tsv", "fasta")
DEFAULT_FIELDS = (
    "accession",
    "id",
    "protein_name",
    "gene_names",
    "organism_name",
    "organism_id",
    "length",
)
INT_FIELDS = {"length": "aa", "mass": "Da", "organism_id": "", "annotation_score": ""}
MAX_PAGE = 500
RATE = 10.0  # UniProt asks for no published figure; stay polite

_FIELD = re.compile(r"^[a-z][a-z0-9_]*$")
_ACC = re.compile(r"^[A-Za-z0-9]{6,10}(-\d+)?$")
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel\s*=\s*"?next"?', re.I)


@dataclass(frozen=True)
class UniprotQuery:
    query: str
    fields: tuple[str, ...] = DEFAULT_FIELDS
    fmt: str = "tsv"
    limit: int | None = None
    page_size: int = MAX_PAGE
    stream: bool = False
    accessions: tuple[str, ...] = ()

    @classmethod
    def from_options(
        cls,
        query: str | None = None,
        accessions: str | list[str] | None = None,
        fields: str | None = None,
        fmt: str = "tsv",
        limit: int | None = None,
        page_size: int = MAX_PAGE,
        stream: bool = False,
    ) -> UniprotQuery:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt!r} is not known: use tsv or fasta")
        if isinstance(accessions, str):
            accessions = [accessions]
        accs = [a.strip() for item in (accessions or []) for a in item.split(",") if a.strip()]
        bad = [a for a in accs if not _ACC.match(a)]
        if bad:
            raise UsageError(
                f"--accession {bad[0]!r} is not a UniProt accession (6 or 10 letters and "
                "digits, e.g. P00750)"
            )
        query = query.strip() if query and query.strip() else None
        if bool(query) == bool(accs):
            raise UsageError(
                "give a UniProt query (--query 'gene:cbbQ AND reviewed:true') or accessions "
                "(--accession P00750,Q51858), not both and not neither"
            )
        if accs:
            query = " OR ".join(f"accession:{a}" for a in accs)
        cols = DEFAULT_FIELDS
        if fields:
            cols = tuple(f.strip() for f in fields.split(",") if f.strip())
            bad = [f for f in cols if not _FIELD.match(f)]
            if bad or not cols:
                raise UsageError(
                    f"--fields {fields!r}: {bad[0] if bad else 'empty'!r} is not a UniProt "
                    "field name (see https://rest.uniprot.org/configure/uniprotkb/result-fields)"
                )
        if limit is not None and limit < 1:
            raise UsageError(f"--limit {limit} must be a positive number of entries")
        if not 1 <= page_size <= MAX_PAGE:
            raise UsageError(f"--page-size {page_size} must be between 1 and {MAX_PAGE}")
        if stream and limit is not None:
            raise UsageError("--stream returns every entry; use --limit without --stream")
        return cls(query, cols, fmt, limit, page_size, stream, tuple(accs))  # type: ignore[arg-type]

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"query": self.query, "format": self.fmt}
        if self.fmt == "tsv":
            p["fields"] = ",".join(self.fields)
        if not self.stream:
            p["size"] = min(self.page_size, self.limit or self.page_size)
        return p


def _client():
    from astrobio_data_sources._remote import make_client

    return make_client(SOURCE, BASE_URL, default_rate=RATE)


def plan(q: UniprotQuery) -> list[str]:
    from astrobio_data_sources._remote import request_line

    with _client() as c:
        if q.stream:
            return [request_line(c, "GET", "uniprotkb/stream", q.params())]
        return [
            request_line(c, "GET", "uniprotkb/search", q.params())
            + '  (then the URL in each page\'s Link: rel="next" header, until none'
            + (f" or {q.limit} entries)" if q.limit else ")")
        ]


def next_link(value: str | None) -> str | None:
    if not value:
        return None
    m = _LINK_NEXT.search(value)
    return m.group(1) if m else None


# -- parsing -----------------------------------------------------------------------------------


def parse_tsv(text: str, q: UniprotQuery, what: str):
    """A TSV page -> Table with columns named by the requested fields (labels kept as
    descriptions); integer fields typed, everything else text."""
    from astrobio_cli.net.content import parse_delimited
    from astrobio_cli.net.errors import ContentError

    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    labels = first.split("\t") if first else []
    if first and len(labels) != len(q.fields):
        raise ContentError(
            f"{what}: the TSV header has {len(labels)} columns ({first[:200]!r}) but "
            f"{len(q.fields)} fields were asked for ({', '.join(q.fields)})"
        )
    kinds = {
        label: ("int" if f in INT_FIELDS else "string")
        for label, f in zip(labels, q.fields, strict=True)
    }
    table = parse_delimited(text, delimiter="\t", kinds=kinds, what=what)  # type: ignore[arg-type]
    for col, name in zip(table.columns, q.fields, strict=True):
        col.name, col.description = name, col.name
        col.unit = INT_FIELDS.get(name, "")
    return table


_OS = re.compile(r"\b([A-Z]{2})=")


@dataclass
class FastaEntry:
    db: str
    accession: str
    entry_name: str
    protein_name: str
    organism: str | None
    taxon_id: int | None
    gene: str | None
    length: int


def parse_fasta(text: str, what: str) -> list[FastaEntry]:
    """UniProt FASTA; a header without sequence (a truncated entry) is an error naming it."""
    from astrobio_cli.net.errors import ContentError

    out: list[FastaEntry] = []
    header, seq_len, lineno0 = None, 0, 0

    def close() -> None:
        if header is None:
            return
        ident, _, desc = header.partition(" ")
        parts = ident.split("|")
        if len(parts) != 3:
            raise ContentError(
                f"{what}: line {lineno0}: {ident!r} is not a UniProt FASTA identifier "
                "(db|accession|entry_name)"
            )
        if seq_len == 0:
            raise ContentError(f"{what}: entry {parts[1]!r} has no sequence (truncated?)")
        tags: dict[str, str] = {}
        cuts = list(_OS.finditer(desc))
        name = desc[: cuts[0].start()].strip() if cuts else desc.strip()
        for i, m in enumerate(cuts):
            end = cuts[i + 1].start() if i + 1 < len(cuts) else len(desc)
            tags[m.group(1)] = desc[m.end() : end].strip()
        ox = tags.get("OX")
        out.append(
            FastaEntry(
                parts[0],
                parts[1],
                parts[2],
                name,
                tags.get("OS"),
                int(ox) if ox and ox.isdigit() else None,
                tags.get("GN"),
                seq_len,
            )
        )

    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith(">"):
            close()
            header, seq_len, lineno0 = line[1:].strip(), 0, lineno
        elif line.strip():
            if header is None:
                raise ContentError(f"{what}: line {lineno} comes before any FASTA header")
            s = line.strip()
            if not s.isalpha():
                raise ContentError(
                    f"{what}: entry on line {lineno0}, line {lineno}: not sequence letters: "
                    f"{line[:80]!r}"
                )
            seq_len += len(s)
    close()
    return out


def fasta_table(entries: list[FastaEntry]):
    from astrobio_cli.net.content import Column, Table

    def c(name, kind, attr, desc, unit=""):
        return Column(name, kind, [getattr(e, attr) for e in entries], unit, desc)

    return Table(
        [
            c("accession", "string", "accession", "UniProtKB accession"),
            c("id", "string", "entry_name", "Entry name"),
            c("reviewed", "string", "db", "sp (Swiss-Prot, reviewed) or tr (TrEMBL)"),
            c("protein_name", "string", "protein_name", "Recommended protein name"),
            c("organism_name", "string", "organism", "Organism (OS)"),
            c("organism_id", "int", "taxon_id", "NCBI taxonomy id (OX)"),
            c("gene_names", "string", "gene", "Gene name (GN)"),
            c("length", "int", "length", "Sequence length", "aa"),
        ]
    )


# -- fetching ----------------------------------------------------------------------------------


def fetch(
    q: UniprotQuery, *, out: Path | None = None, refresh: bool = False, progress: bool | None = None
):
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.net.content import Table
    from astrobio_cli.net.errors import ContentError
    from astrobio_cli.net.tables import columns_doc
    from astrobio_cli.settings import get_settings
    from astrobio_data_sources._remote import (
        Fetched,
        HttpStatusError,
        NotFoundError,
        SourceResult,
        Steps,
        cached,
        cached_small,
        check_out,
        default_out,
        traffic,
        write_file_with_provenance,
        write_outputs,
    )

    out = check_out(out) if out is not None else default_out(SOURCE, q.query, q)
    cache = Cache(get_settings().cache_dir)
    fetched: list[Fetched] = []
    texts: list[tuple[str, str, Path]] = []  # (text, label, body path)

    with _client() as client:
        what = f"UniProt ({client.host})"

        def check(body: bytes, label: str) -> None:
            text = body.decode("utf-8", "replace")
            if q.fmt == "tsv":
                parse_tsv(text, q, f"{what} {label}")
            else:
                parse_fasta(text, f"{what} {label}")

        try:
            if q.stream:
                params = q.params()

                def validate(tmp: Path, _h: dict[str, str]) -> None:
                    check(tmp.read_bytes(), "stream")

                hit = cached(
                    cache,
                    client,
                    SOURCE,
                    "uniprotkb/stream",
                    params=params,
                    refresh=refresh,
                    validate=validate,
                    progress=progress,
                )
                fetched.append(Fetched(client.full_url("uniprotkb/stream", params), hit))
                texts.append((hit.path.read_text("utf-8"), "stream", hit.path))
            else:
                url: str | None = "uniprotkb/search"
                params: dict[str, Any] | None = q.params()
                page, got = 0, 0
                with Steps("uniprot pages", enabled=progress) as steps:
                    while url is not None:
                        label = f"page {page + 1}"
                        key = {"search": q.params(), "page": page}
                        hit = cached_small(
                            cache,
                            client,
                            SOURCE,
                            url,
                            params=params,
                            key=key,
                            refresh=refresh,
                            validate=lambda b, _h, label=label: check(b, label),
                            keep_headers=("link", "x-total-results"),
                            allow=(400, 404),
                        )
                        fetched.append(Fetched(hit.entry.record["url"], hit))
                        text = hit.path.read_text("utf-8")
                        texts.append((text, label, hit.path))
                        got += _count(text, q.fmt)
                        total = _int(hit.entry.record["headers"].get("x-total-results"))
                        pages = -(-min(total, q.limit or total) // q.page_size) if total else None
                        steps.advance(total=pages)
                        if q.limit is not None and got >= q.limit:
                            break
                        url, params = next_link(hit.entry.record["headers"].get("link")), None
                        page += 1
        except HttpStatusError as exc:
            if exc.status in (400, 404):
                raise NotFoundError(f"UniProt query {q.query!r}: {exc}") from None
            raise

        try:
            if q.fmt == "tsv":
                parts = [parse_tsv(t, q, f"{what} {lab}") for t, lab, _ in texts]
                table = parts[0]
                for p in parts[1:]:
                    for c, more in zip(table.columns, p.columns, strict=True):
                        c.values = list(c.values) + list(more.values)
                if q.limit is not None:
                    for c in table.columns:
                        c.values = c.values[: q.limit]
                entries = table.column("accession").values if "accession" in q.fields else []
            else:
                fasta = [e for t, lab, _ in texts for e in parse_fasta(t, f"{what} {lab}")]
                if q.limit is not None:
                    fasta = fasta[: q.limit]
                table = fasta_table(fasta)
                entries = [e.accession for e in fasta]
        except ContentError as exc:
            raise ContentError(f"{exc} (a cached copy: use --refresh)") from None
        assert isinstance(table, Table)
        if table.num_rows == 0:
            raise NotFoundError(f"UniProt: no entries match query {q.query!r}; nothing written")
        if q.accessions and entries and q.limit is None:
            have = {str(a).upper() for a in entries}
            missing = [a for a in q.accessions if a.upper() not in have]
            if missing:
                raise NotFoundError(
                    f"UniProt: accession(s) {', '.join(missing)} not found; nothing written"
                )

        outputs: list[tuple[str, Path]] = []
        extra = {
            "format": q.fmt,
            "fields": list(q.fields),
            "endpoint": "stream" if q.stream else "search",
        }
        if q.fmt == "fasta":
            fasta_out = out.with_suffix(".fasta")
            side = write_file_with_provenance(
                [p for _, _, p in texts],
                fasta_out,
                source=SOURCE,
                query=q.query,
                fetched=fetched,
                client=client,
                output_format="fasta",
                rows=table.num_rows,
            )
            outputs += [("records", fasta_out), ("provenance", side)]
        sidecar, _ = write_outputs(
            table, out, source=SOURCE, query=q.query, fetched=fetched, client=client, extra=extra
        )
        outputs = [("table", out), ("provenance", sidecar), *outputs]

    return SourceResult(
        source=SOURCE,
        rows=table.num_rows,
        columns=columns_doc(table),
        outputs=outputs,
        **traffic(fetched),
        notes=[f"{len(fetched)} page(s)"] if not q.stream else [],
    )


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _count(text: str, fmt: str) -> int:
    if fmt == "fasta":
        return sum(1 for line in text.splitlines() if line.startswith(">"))
    return max(sum(1 for line in text.splitlines() if line.strip()) - 1, 0)


class Uniprot:
    name = SOURCE

    def query(self, **options: Any) -> UniprotQuery:
        return UniprotQuery.from_options(**options)

    def fetch(self, query: UniprotQuery, **kw: Any):
        return fetch(query, **kw)
