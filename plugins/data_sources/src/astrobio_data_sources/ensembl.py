"""Genes, transcripts and sequences from the Ensembl REST service (rest.ensembl.org).

    q = EnsemblQuery.from_options(ids="ENSG00000139618", sequence=True)
    result = fetch(q)      # records (.json or .fasta) + a Parquet summary, with provenance

Requests (all GET, `content-type=application/json`):
- `lookup/id/{id}`                  an Ensembl stable id (gene, transcript, protein...)
- `lookup/symbol/{species}/{name}`  a gene symbol in a species
- `sequence/id/{id}?type=...`       its sequence (genomic, cds, cdna, protein), with --sequence
- `sequence/region/{species}/{region}`  a genomic region, e.g. `X:1000000..1000100:1`

Rate limits: Ensembl allows 15 requests/s (55,000 an hour). Every response carries
`X-RateLimit-Limit`, `-Remaining`, `-Reset` (seconds to the next window) and `-Period`; when
Remaining reaches 0 the next request waits for the reset. A 429 carries `Retry-After`, which the
HTTP layer waits out. An unknown id, symbol or region is a 400 `{"error": "..."}`: a "not found"
quoting the server, and nothing is written.

API documentation: https://rest.ensembl.org/documentation
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from astrobio_cli.errors import UsageError

SOURCE = "ensembl"
BASE_URL = "https://rest.ensembl.org"
RATE = 15.0
FORMATS = ("json", "fasta")
SEQ_TYPES = ("genomic", "cds", "cdna", "protein")
JSON = {"content-type": "application/json"}

_STABLE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\d+(\.\d+)?$")
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$")
_SPECIES = re.compile(r"^[a-z][a-z0-9_]*$")
_REGION = re.compile(r"^[A-Za-z0-9_.]+:\d+(\.\.|-)\d+(:-?1)?$")


@dataclass(frozen=True)
class EnsemblQuery:
    ids: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    species: str = "homo_sapiens"
    sequence: bool = False
    seq_type: str = "genomic"
    fmt: str = "json"

    @classmethod
    def from_options(
        cls,
        ids: str | list[str] | None = None,
        symbols: str | list[str] | None = None,
        regions: str | list[str] | None = None,
        species: str = "homo_sapiens",
        sequence: bool = False,
        seq_type: str = "genomic",
        fmt: str = "json",
    ) -> EnsemblQuery:
        def split(v: str | list[str] | None) -> tuple[str, ...]:
            items = [v] if isinstance(v, str) else (v or [])
            return tuple(x.strip() for item in items for x in item.split(",") if x.strip())

        i, s, r = split(ids), split(symbols), split(regions)
        if not (i or s or r):
            raise UsageError(
                "give at least one of --id ENSG00000139618, --symbol BRCA2 or "
                "--region X:1000000..1000100"
            )
        for value, rx, opt, example in (
            (i, _STABLE_ID, "--id", "ENSG00000139618"),
            (s, _SYMBOL, "--symbol", "BRCA2"),
            (r, _REGION, "--region", "X:1000000..1000100:1"),
        ):
            bad = [x for x in value if not rx.match(x)]
            if bad:
                raise UsageError(f"{opt} {bad[0]!r} is not valid, e.g. {opt} {example}")
        species = species.strip().lower().replace(" ", "_")
        if not _SPECIES.match(species):
            raise UsageError(f"--species {species!r} is not an Ensembl species name (homo_sapiens)")
        if seq_type not in SEQ_TYPES:
            raise UsageError(f"--type {seq_type!r} is not one of {', '.join(SEQ_TYPES)}")
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt!r} is not known: use json or fasta")
        if fmt == "fasta" and not (sequence or r):
            raise UsageError("--format fasta needs sequences: add --sequence (or ask for --region)")
        return cls(i, s, r, species, sequence, seq_type, fmt)

    def requests(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(kind, asked, path, params) for every request, in order (lookups, then sequences)."""
        out: list[tuple[str, str, str, dict[str, Any]]] = []
        for i in self.ids:
            out.append(("lookup", i, f"lookup/id/{quote(i)}", dict(JSON)))
        for s in self.symbols:
            out.append(("lookup", s, f"lookup/symbol/{self.species}/{quote(s)}", dict(JSON)))
        return out

    def sequence_request(self, stable_id: str) -> tuple[str, dict[str, Any]]:
        return f"sequence/id/{quote(stable_id)}", {**JSON, "type": self.seq_type}

    def region_requests(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        return [
            ("region", r, f"sequence/region/{self.species}/{quote(r, safe=':.')}", dict(JSON))
            for r in self.regions
        ]


def _client():
    from astrobio_data_sources._remote import make_client

    return make_client(SOURCE, BASE_URL, default_rate=RATE)


def plan(q: EnsemblQuery) -> list[str]:
    from astrobio_data_sources._remote import request_line

    with _client() as c:
        lines = []
        for _kind, asked, path, params in q.requests():
            lines.append(request_line(c, "GET", path, params))
            if q.sequence:
                known = asked in q.ids
                spath, sparams = q.sequence_request(asked if known else "ID")
                line = request_line(c, "GET", spath, sparams)
                if not known:  # a symbol's id is known only after its lookup
                    line = line.replace("/sequence/id/ID?", f"/sequence/id/<id of {asked}>?")
                lines.append(line)
        lines += [request_line(c, "GET", p, prm) for _k, _a, p, prm in q.region_requests()]
        return lines


SUMMARY = (
    ("query", "string", "", "What was asked (id, symbol or region)"),
    ("id", "string", "", "Ensembl stable id (or region name)"),
    ("version", "int", "", "Stable id version"),
    ("display_name", "string", "", "Display name (gene symbol)"),
    ("species", "string", "", "Species"),
    ("object_type", "string", "", "Gene, Transcript, Translation, region..."),
    ("biotype", "string", "", "Biotype"),
    ("assembly_name", "string", "", "Genome assembly"),
    ("seq_region_name", "string", "", "Chromosome or scaffold"),
    ("start", "int", "bp", "Start (1-based)"),
    ("end", "int", "bp", "End (inclusive)"),
    ("strand", "int", "", "1 or -1"),
    ("description", "string", "", "Description"),
    ("molecule", "string", "", "dna or protein (with a sequence)"),
    ("sequence_length", "int", "", "Length of the fetched sequence"),
)


def _int(v: Any) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def summary_table(rows: list[dict[str, Any]]):
    from astrobio_cli.net.content import Column, Table

    cols = []
    for name, kind, unit, desc in SUMMARY:
        vals = [r.get(name) for r in rows]
        vals = (
            [_int(v) for v in vals]
            if kind == "int"
            else [None if v is None else str(v) for v in vals]
        )
        cols.append(Column(name, kind, vals, unit, desc))  # type: ignore[arg-type]
    return Table(cols)


def _region_row(asked: str, doc: dict[str, Any], species: str) -> dict[str, Any]:
    # "id": "chromosome:GRCh38:X:1000000:1000100:1"
    parts = str(doc.get("id", "")).split(":")
    row: dict[str, Any] = {"query": asked, "id": doc.get("id"), "species": species}
    if len(parts) == 6:
        row.update(
            object_type=parts[0],
            assembly_name=parts[1],
            seq_region_name=parts[2],
            start=parts[3],
            end=parts[4],
            strand=parts[5],
        )
    return row


def fasta_of(rows: list[dict[str, Any]]) -> bytes:
    out = []
    for r in rows:
        seq = r.get("seq")
        if not seq:
            continue
        name = r["id"] + (f".{r['version']}" if r.get("version") and "." not in r["id"] else "")
        desc = r.get("desc") or r.get("display_name") or ""
        out.append(f">{name} {desc}".rstrip())
        out += [seq[i : i + 60] for i in range(0, len(seq), 60)]
    return ("\n".join(out) + "\n").encode()


def fetch(
    q: EnsemblQuery,
    *,
    out: Path | None = None,
    refresh: bool = False,
    sleep: Any = None,
    progress: bool | None = None,
):
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.net.errors import ContentError
    from astrobio_cli.net.tables import columns_doc
    from astrobio_cli.settings import get_settings
    from astrobio_data_sources._remote import (
        Fetched,
        HttpStatusError,
        NotFoundError,
        RateLimitHeaders,
        SourceResult,
        Steps,
        cached_small,
        check_out,
        default_out,
        json_body,
        traffic,
        write_file_with_provenance,
        write_outputs,
    )

    stem = (q.ids + q.symbols + q.regions)[0]
    out = check_out(out) if out is not None else default_out(SOURCE, stem, q)
    cache = Cache(get_settings().cache_dir)
    limits = RateLimitHeaders(**({"sleep": sleep} if sleep else {}))
    fetched: list[Fetched] = []
    rows: list[dict[str, Any]] = []

    with _client() as client:
        what = f"Ensembl ({client.host})"

        def get(kind: str, asked: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
            def validate(body: bytes, _h: dict[str, str]) -> None:
                try:
                    doc = json.loads(body)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise ContentError(
                        f"{what} {kind} of {asked!r}: not JSON ({exc}): {body[:120]!r}"
                    ) from None
                if not isinstance(doc, dict) or doc.get("error"):
                    raise ContentError(f"{what} {kind} of {asked!r}: {str(doc)[:200]}")

            key = {"path": path, "params": sorted(params.items())}
            try:
                hit = cached_small(
                    cache,
                    client,
                    SOURCE,
                    path,
                    params=params,
                    key=key,
                    refresh=refresh,
                    validate=validate,
                    allow=(400, 404),
                    keep_headers=("x-ratelimit-remaining", "x-ratelimit-reset"),
                    after=limits,
                    before=limits.wait,
                )
            except HttpStatusError as exc:
                if exc.status in (400, 404):
                    raise NotFoundError(
                        f"Ensembl: {kind} {asked!r} not found ({exc}); nothing written"
                    ) from None
                raise
            fetched.append(Fetched(hit.entry.record["url"], hit))
            steps.advance()
            return json_body(hit.path, what)

        total = len(q.requests()) * (2 if q.sequence else 1) + len(q.regions)
        with Steps("ensembl requests", total, enabled=progress) as steps:
            for kind, asked, path, params in q.requests():
                doc = get(kind, asked, path, params)
                row = {
                    "query": asked,
                    **{k: doc.get(k) for k in doc if not isinstance(doc[k], (list, dict))},
                }
                row["_doc"] = doc
                if q.sequence:
                    spath, sparams = q.sequence_request(str(doc.get("id") or asked))
                    sdoc = get("sequence", asked, spath, sparams)
                    seq = sdoc.get("seq") or ""
                    row.update(seq=seq, desc=sdoc.get("desc"), molecule=sdoc.get("molecule"))
                    row["sequence_length"] = len(seq)
                    doc["seq"] = seq
                rows.append(row)
            for _kind, asked, path, params in q.region_requests():
                doc = get("region", asked, path, params)
                row = _region_row(asked, doc, q.species)
                seq = doc.get("seq") or ""
                row.update(seq=seq, desc=doc.get("id"), molecule=doc.get("molecule"))
                row["sequence_length"] = len(seq)
                row["_doc"] = doc
                rows.append(row)

        table = summary_table(rows)
        query = ",".join(q.ids + q.symbols + q.regions)
        extra = {"species": q.species, "sequence_type": q.seq_type if q.sequence else None}
        if q.fmt == "json":
            records_out = out.with_suffix(".json")
            data = (json.dumps([r["_doc"] for r in rows], indent=1) + "\n").encode()
        else:
            records_out = out.with_suffix(".fasta")
            data = fasta_of(rows)
        rec_side = write_file_with_provenance(
            [data],
            records_out,
            source=SOURCE,
            query=query,
            fetched=fetched,
            client=client,
            output_format=q.fmt,
            rows=len(rows),
            extra=extra,
        )
        sidecar, _ = write_outputs(
            table, out, source=SOURCE, query=query, fetched=fetched, client=client, extra=extra
        )

    notes = (
        [f"waited {sum(limits.waited):.1f} s for the rate-limit window"] if limits.waited else []
    )
    return SourceResult(
        source=SOURCE,
        rows=len(rows),
        columns=columns_doc(table),
        outputs=[
            ("records", records_out),
            ("summary", out),
            ("provenance", sidecar),
            ("provenance", rec_side),
        ],
        **traffic(fetched),
        notes=notes,
    )


class Ensembl:
    name = SOURCE

    def query(self, **options: Any) -> EnsemblQuery:
        return EnsemblQuery.from_options(**options)

    def fetch(self, query: EnsemblQuery, **kw: Any):
        return fetch(query, **kw)
