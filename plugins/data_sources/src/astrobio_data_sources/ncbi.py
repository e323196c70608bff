"""NCBI nucleotide and protein records through the E-utilities (esearch + efetch).

    q = NcbiQuery.from_options(db="nucleotide", ids="X55053,X62281", fmt="genbank")
    result = fetch(q)     # records file (.gb / .fasta) + Parquet summary, both with provenance

- By accession: `efetch?id=A,B,...` in batches of `batch_size`.
- By query: `esearch?usehistory=y` puts the result set on NCBI's history server (WebEnv +
  query_key); `efetch` then pages through it `batch_size` records at a time (retstart/retmax).
- NCBI allows 3 requests/s, 10 with an API key (settings: `sources.ncbi.api_key`); the key goes in
  the `api_key` parameter and never into the cache key, messages or provenance.
- NCBI's usage policy: every call carries `tool` (setting `sources.ncbi.tool`, default
  "astrobio") and `email` (`sources.ncbi.email`; unset: not sent, and a one-time note on stderr).
  Neither enters the cache key (they do not change the answer); the email is masked (`***`) in
  messages, --dry-run and provenance.
- Every batch is checked before it enters the cache: each GenBank record must end with `//` and
  parse with Biopython, each FASTA record must have a sequence; a bad record is named.
- An accession the server does not return, or a query with no hits, is a "not found" and nothing
  is written.

E-utilities documentation: https://www.ncbi.nlm.nih.gov/books/NBK25499/
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError

# efetch batches downloaded at once: one by default (NCBI asks users not to overload the
# E-utilities, and one at a time keeps the requests in order); `--jobs 3` suits the 3/s limit.
DEFAULT_JOBS = 1

SOURCE = "ncbi"
BASE_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"
DBS = ("nucleotide", "protein")
FORMATS = {"genbank": ("gb", ".gb"), "fasta": ("fasta", ".fasta")}  # rettype, file suffix
RATE = 3.0  # requests per second without an API key
RATE_WITH_KEY = 10.0
MAX_BATCH = 10000  # efetch's retmax ceiling

_ACCESSION = re.compile(r"^[A-Za-z0-9_]+(\.\d+)?$")


@dataclass(frozen=True)
class NcbiQuery:
    db: str = "nucleotide"
    ids: tuple[str, ...] = ()
    term: str | None = None
    fmt: str = "genbank"
    max_records: int | None = None
    batch_size: int = 200

    @classmethod
    def from_options(
        cls,
        db: str = "nucleotide",
        ids: str | list[str] | None = None,
        term: str | None = None,
        fmt: str = "genbank",
        max_records: int | None = None,
        batch_size: int = 200,
    ) -> NcbiQuery:
        """Validate command-line options (no network)."""
        db, fmt = db.lower(), fmt.lower()
        if db not in DBS:
            raise UsageError(f"--db {db!r} is not known: use {' or '.join(DBS)}")
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt!r} is not known: use genbank or fasta")
        if isinstance(ids, str):
            ids = [ids]
        accs = [a.strip() for item in (ids or []) for a in item.split(",") if a.strip()]
        term = term.strip() if term and term.strip() else None
        if bool(accs) == bool(term):
            raise UsageError(
                "give accessions (--id X55053,X62281) or a search (--query 'cor6 AND "
                "Arabidopsis[orgn]'), not both and not neither"
            )
        bad = [a for a in accs if not _ACCESSION.match(a)]
        if bad:
            raise UsageError(
                f"--id {bad[0]!r} is not an accession (letters, digits and _, optionally "
                ".version), e.g. --id NC_045512.2"
            )
        if len(set(accs)) != len(accs):
            raise UsageError("--id names an accession twice")
        if max_records is not None and max_records < 1:
            raise UsageError(f"--max {max_records} must be a positive number of records")
        if not 1 <= batch_size <= MAX_BATCH:
            raise UsageError(f"--batch-size {batch_size} must be between 1 and {MAX_BATCH}")
        return cls(db, tuple(accs), term, fmt, max_records, batch_size)

    @property
    def rettype(self) -> str:
        return FORMATS[self.fmt][0]

    def describe(self) -> str:
        what = f"accession(s) {', '.join(self.ids)}" if self.ids else f"query {self.term!r}"
        return f"NCBI {self.db} {what}"

    def id_batches(self) -> list[list[str]]:
        ids = list(self.ids)
        return [ids[i : i + self.batch_size] for i in range(0, len(ids), self.batch_size)]


_noted_email = False


def _identity() -> dict[str, str]:
    """`tool` and `email` for every E-utilities call (NCBI's usage policy); no email: a note."""
    global _noted_email
    from astrobio_cli.settings import get_settings

    s = get_settings().source(SOURCE)
    out = {"tool": s.tool}
    if s.email:
        out["email"] = s.email
    elif not _noted_email:
        _noted_email = True
        import sys

        print(
            "note: NCBI asks every E-utilities user for a contact email; set sources.ncbi.email "
            "(e.g. ASTROBIO_SOURCES__NCBI__EMAIL=you@example.org)",
            file=sys.stderr,
        )
    return out


def _client():
    from astrobio_data_sources._remote import SourceClient, make_client

    class NcbiClient(SourceClient):
        """Adds `tool`/`email` to every request's parameters, after the cache key was made;
        the email is masked like the API key wherever a URL is shown or recorded."""

        identity: dict[str, str] = {}

        def params_with_key(self, params):
            out = super().params_with_key(params)
            for k, v in self.identity.items():
                out.setdefault(k, v)
            return out

        def redact(self, text: str) -> str:
            text = super().redact(text)
            email = self.identity.get("email")
            if email:
                from urllib.parse import quote, quote_plus

                for form in {email, quote(email, safe=""), quote_plus(email)}:
                    text = text.replace(form, "***")
            return text

    client = make_client(
        SOURCE, BASE_URL, default_rate=RATE, keyed_rate=RATE_WITH_KEY, api_key_param="api_key"
    )
    client.__class__ = NcbiClient  # make_client builds a SourceClient; same state, more policy
    client.identity = _identity()
    return client


def esearch_params(q: NcbiQuery) -> dict[str, Any]:
    return {"db": q.db, "term": q.term, "usehistory": "y", "retmax": 0, "retmode": "json"}


def efetch_params(q: NcbiQuery, *, ids: list[str] | None = None, **history: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"db": q.db}
    if ids is not None:
        p["id"] = ",".join(ids)
    else:
        p.update(history)
    p.update({"rettype": q.rettype, "retmode": "text"})
    return p


def plan(q: NcbiQuery) -> list[str]:
    """The exact requests (no network); with a query the efetch pages depend on the hit count."""
    from astrobio_data_sources._remote import request_line

    with _client() as c:
        if q.ids:
            return [
                request_line(c, "GET", "efetch.fcgi", efetch_params(q, ids=b))
                for b in q.id_batches()
            ]
        lines = [request_line(c, "GET", "esearch.fcgi", esearch_params(q))]
        hist = {
            "query_key": "<query_key>",
            "WebEnv": "<WebEnv>",
            "retstart": 0,
            "retmax": q.batch_size,
        }
        lines.append(
            request_line(c, "GET", "efetch.fcgi", efetch_params(q, **hist))
            + f"  (then retstart={q.batch_size}, {2 * q.batch_size}, ... up to the hit count"
            + (f", at most {q.max_records} records)" if q.max_records else ")")
        )
        return lines


# -- parsing -----------------------------------------------------------------------------------


@dataclass
class Record:
    accession: str
    name: str
    organism: str | None
    length: int
    definition: str
    molecule_type: str | None


def _split_genbank(text: str) -> list[tuple[str, str]]:
    """(LOCUS name, record text) for each record; the text ends with its `//` line."""
    out: list[tuple[str, str]] = []
    cur: list[str] = []
    name = ""
    for line in text.splitlines(keepends=True):
        if not cur and not line.strip():
            continue
        if line.startswith("LOCUS"):
            if cur:  # a new LOCUS before the previous one ended
                out.append((name, "".join(cur)))
            cur, name = [line], (line.split()[1] if len(line.split()) > 1 else "?")
            continue
        if not cur:
            raise _content(f"expected a LOCUS line, got {line.strip()[:80]!r}")
        cur.append(line)
        if line.rstrip() == "//":
            out.append((name, "".join(cur)))
            cur, name = [], ""
    if cur:
        out.append((name, "".join(cur)))
    return out


def _content(msg: str):
    from astrobio_cli.net.errors import ContentError

    return ContentError(msg)


def parse_genbank(text: str, what: str) -> list[Record]:
    from Bio import BiopythonWarning, SeqIO

    records = []
    for name, chunk in _split_genbank(text):
        if chunk.rstrip().splitlines()[-1].strip() != "//":
            raise _content(
                f"{what}: GenBank record {name!r} is truncated (no '//' end marker); "
                "run again with --refresh"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BiopythonWarning)
                rec = SeqIO.read(io.StringIO(chunk), "genbank")
            length = len(rec.seq)
        except Exception as exc:
            raise _content(f"{what}: GenBank record {name!r} does not parse: {exc}") from None
        records.append(
            Record(
                accession=rec.id,
                name=rec.name,
                organism=rec.annotations.get("organism"),
                length=length,
                definition=_definition(chunk) or rec.description,
                molecule_type=rec.annotations.get("molecule_type"),
            )
        )
    return records


def _definition(chunk: str) -> str | None:
    """The DEFINITION line(s) as written (Biopython drops the final period)."""
    out: list[str] = []
    for line in chunk.splitlines():
        if line.startswith("DEFINITION"):
            out.append(line[10:].strip())
        elif out and line.startswith(" "):
            out.append(line.strip())
        elif out:
            break
    return " ".join(out) or None


_SEQ_CHARS = re.compile(r"^[A-Za-z*\-.]+$")


def _fasta_accession(ident: str) -> str:
    """`gi|45478712|ref|NP_995567.1|` -> NP_995567.1; `sp|P00750|TPA_HUMAN` -> P00750."""
    parts = [p for p in ident.split("|") if p]
    if len(parts) >= 2 and parts[0] in ("gi",) and len(parts) >= 4:
        return parts[3]
    if len(parts) >= 2 and parts[0] in ("sp", "tr", "ref", "gb", "emb", "dbj", "pdb"):
        return parts[1]
    return parts[-1] if parts else ident


def parse_fasta(text: str, what: str) -> list[Record]:
    records: list[Record] = []
    header: str | None = None
    seq: list[str] = []

    def close() -> None:
        if header is None:
            return
        ident, _, desc = header.partition(" ")
        s = "".join(seq)
        if not s:
            raise _content(f"{what}: FASTA record {ident!r} has no sequence (truncated?)")
        m = re.search(r"\[([^\[\]]+)\]\s*$", desc)
        records.append(
            Record(_fasta_accession(ident), ident, m.group(1) if m else None, len(s), desc, None)
        )

    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith(">"):
            close()
            header, seq = line[1:].strip(), []
        elif line.strip():
            if header is None:
                raise _content(
                    f"{what}: line {lineno} comes before any FASTA header: {line[:80]!r}"
                )
            if not _SEQ_CHARS.match(line.strip()):
                raise _content(
                    f"{what}: FASTA record {header.split()[0]!r}, line {lineno}: not sequence "
                    f"letters: {line[:80]!r}"
                )
            seq.append(line.strip())
    close()
    return records


def parse_records(text: str, fmt: str, what: str) -> list[Record]:
    head = text.lstrip()[:200]
    if head and not (head.startswith("LOCUS") or head.startswith(">")):
        from astrobio_cli.net.content import describe_error_body

        said = describe_error_body(text.encode()[:4096])
        raise _content(f"{what} sent neither GenBank nor FASTA records: {said!r}")
    return parse_genbank(text, what) if fmt == "genbank" else parse_fasta(text, what)


def summary_table(records: list[Record], db: str):
    from astrobio_cli.net.content import Column, Table

    def col(name, kind, values, desc):
        return Column(name, kind, values, "", desc)

    return Table(
        [
            col("accession", "string", [r.accession for r in records], "Accession.version"),
            col("name", "string", [r.name for r in records], "LOCUS name or FASTA identifier"),
            col("organism", "string", [r.organism for r in records], "Source organism"),
            Column(
                "length",
                "int",
                [r.length for r in records],
                "bp" if db == "nucleotide" else "aa",
                "Sequence length",
            ),
            col("definition", "string", [r.definition for r in records], "DEFINITION line"),
            col("molecule_type", "string", [r.molecule_type for r in records], "Molecule type"),
            col("db", "string", [db] * len(records), "Entrez database"),
        ]
    )


def _missing(requested: tuple[str, ...], records: list[Record]) -> list[str]:
    have = set()
    for r in records:
        for a in (r.accession, r.name):
            have.add(a.upper())
            have.add(a.split(".")[0].upper())
    return [a for a in requested if a.upper() not in have]


# -- fetching ----------------------------------------------------------------------------------


def fetch(
    q: NcbiQuery,
    *,
    out: Path | None = None,
    refresh: bool = False,
    progress: bool | None = None,
    jobs: int = DEFAULT_JOBS,
):
    """Fetch the records of `q` (from the cache when asked before); write records + summary.

    jobs: efetch batches downloaded at once (NCBI's rate limit still holds); the batches are
    written and recorded in order whatever order they arrive in."""
    from astrobio_cli.net.cache import Cache, request_key
    from astrobio_cli.net.errors import ContentError
    from astrobio_cli.net.pool import check_jobs, download_all
    from astrobio_cli.settings import get_settings
    from astrobio_data_sources._remote import (
        Fetched,
        HttpStatusError,
        NotFoundError,
        SourceResult,
        cached,
        check_out,
        default_out,
        json_body,
        json_validator,
        keyed,
        traffic,
        write_file_with_provenance,
        write_outputs,
    )

    check_jobs(jobs)
    suffix = FORMATS[q.fmt][1]
    stem = q.ids[0] if len(q.ids) == 1 else q.term or f"{q.ids[0]}-and-{len(q.ids) - 1}-more"
    out = check_out(out) if out is not None else default_out(SOURCE, f"{q.db}-{stem}", q)
    records_out = out.with_suffix(suffix)
    cache = Cache(get_settings().cache_dir)
    fetched: list[Fetched] = []
    bodies: list[Path] = []
    records: list[Record] = []

    with _client() as client:
        what = f"NCBI ({client.host})"

        # One live progress display at a time: byte bars per batch only when one at a time.
        batch_progress = progress if jobs == 1 else False

        def efetch(job: tuple[dict[str, Any], dict[str, Any], str, list[str]]):
            """One efetch batch through the cache -> (Fetched, hit, its records); a worker's job."""
            params, key, label, expect = job

            def validate(tmp: Path, _h: dict[str, str]) -> None:
                got = parse_records(tmp.read_text("utf-8", "replace"), q.fmt, f"{what} {label}")
                missing = _missing(tuple(expect), got)
                if missing:  # never cache an answer that lacks what was asked for
                    raise NotFoundError(
                        f"NCBI {q.db}: accession(s) {', '.join(missing)} not found (the server "
                        f"returned {len(got)} of {len(expect)} records); nothing written"
                    )

            try:
                hit = cached(
                    cache,
                    client,
                    SOURCE,
                    "efetch.fcgi",
                    params=params,
                    key=key,
                    refresh=refresh,
                    validate=validate,
                    progress=batch_progress,
                )
            except HttpStatusError as exc:
                if exc.status in (400, 404):
                    raise NotFoundError(f"{q.describe()}: not found ({exc})") from None
                raise
            try:
                got = parse_records(
                    hit.path.read_text("utf-8", "replace"), q.fmt, f"{what} {label}"
                )
            except ContentError as exc:
                raise ContentError(f"{exc} (cached copy {hit.path}; use --refresh)") from None
            return Fetched(client.full_url("efetch.fcgi", params), hit), hit, got

        def efetch_all(batches: list[tuple[dict[str, Any], dict[str, Any], str, list[str]]]):
            done = download_all(
                batches,
                efetch,
                jobs=jobs,
                key=lambda b: request_key(SOURCE, keyed(client, b[1])),
                progress=progress,
                label="NCBI efetch batches",
            )
            for f, hit, got in done:  # in request order, whatever order they arrived in
                fetched.append(f)
                bodies.append(hit.path)
                records.extend(got)

        if q.ids:
            efetch_all(
                [
                    (
                        efetch_params(q, ids=batch),
                        {"efetch": q.db, "id": batch, "rettype": q.rettype},
                        f"efetch of {len(batch)} accession(s)",
                        batch,
                    )
                    for batch in q.id_batches()
                ]
            )
            missing = _missing(q.ids, records)
            if missing:
                raise NotFoundError(
                    f"NCBI {q.db}: accession(s) {', '.join(missing)} not found "
                    f"(the server returned {len(records)} of {len(q.ids)} records); nothing written"
                )
        else:

            def check(doc: Any) -> None:
                res = doc.get("esearchresult") if isinstance(doc, dict) else None
                if not isinstance(res, dict):
                    raise ContentError(
                        f"{what} esearch answered without an esearchresult: {str(doc)[:200]!r}"
                    )
                if res.get("ERROR"):
                    raise ContentError(f"{what} esearch reported an error: {res['ERROR']}")

            state: dict[str, Any] = {}

            def search(force: bool):
                hit = cached(
                    cache,
                    client,
                    SOURCE,
                    "esearch.fcgi",
                    params=esearch_params(q),
                    refresh=force,
                    validate=json_validator(f"{what} esearch", check),
                    progress=False,
                )
                res = json_body(hit.path, what)["esearchresult"]
                state.update(
                    count=int(res.get("count", 0)),
                    WebEnv=res.get("webenv"),
                    query_key=res.get("querykey"),
                    fresh=not hit.from_cache,
                )
                doc = Fetched(client.full_url("esearch.fcgi", esearch_params(q)), hit)
                if "search_at" in state:  # asked again for a fresh WebEnv: keep the newest
                    fetched[state["search_at"]] = doc
                else:
                    state["search_at"] = len(fetched)
                    fetched.append(doc)

            search(refresh)
            total = state["count"] if q.max_records is None else min(state["count"], q.max_records)
            if total == 0:
                raise NotFoundError(
                    f"NCBI {q.db}: no records match query {q.term!r}; nothing written"
                )
            pages = []
            for start in range(0, total, q.batch_size):
                size = min(q.batch_size, total - start)
                key = {
                    "efetch": q.db,
                    "term": q.term,
                    "rettype": q.rettype,
                    "retstart": start,
                    "retmax": size,
                }
                pages.append((start, size, key))
            # The first page the cache cannot answer needs a live WebEnv: when the search came
            # from the cache, ask it again just before that page (the pages before it keep the
            # cached WebEnv in their recorded URLs, as when fetched one at a time).
            first_miss = next(
                (
                    i
                    for i, (_s, _n, key) in enumerate(pages)
                    if refresh
                    or cache.lookup(SOURCE, request_key(SOURCE, keyed(client, key))) is None
                ),
                None,
            )
            batches = []
            for i, (start, size, key) in enumerate(pages):
                if i == first_miss and not state["fresh"]:
                    search(True)  # the cached WebEnv may have expired: ask for a new one
                hist = {
                    "query_key": state["query_key"],
                    "WebEnv": state["WebEnv"],
                    "retstart": start,
                    "retmax": size,
                }
                label = f"efetch records {start + 1}-{start + size}"
                batches.append((efetch_params(q, **hist), key, label, []))
            efetch_all(batches)

        table = summary_table(records, q.db)
        query = q.term or ",".join(q.ids)
        extra = {"db": q.db, "format": q.fmt, "records_file": str(records_out)}
        rec_sidecar = write_file_with_provenance(
            bodies,
            records_out,
            source=SOURCE,
            query=query,
            fetched=fetched,
            client=client,
            output_format=q.fmt,
            rows=len(records),
            extra={"db": q.db},
        )
        sidecar, _ = write_outputs(
            table, out, source=SOURCE, query=query, fetched=fetched, client=client, extra=extra
        )
    from astrobio_cli.net.tables import columns_doc

    return SourceResult(
        source=SOURCE,
        rows=len(records),
        columns=columns_doc(table),
        outputs=[
            ("records", records_out),
            ("summary", out),
            ("provenance", sidecar),
            ("provenance", rec_sidecar),
        ],
        **traffic(fetched),
    )


class Ncbi:
    """The source object (DataSourceSpec.factory)."""

    name = SOURCE

    def query(self, **options: Any) -> NcbiQuery:
        return NcbiQuery.from_options(**options)

    def fetch(self, query: NcbiQuery, **kw: Any):
        return fetch(query, **kw)
