"""GTDB (Genome Taxonomy Database) metadata and taxonomy tables for a release, as Parquet.

    q = GtdbQuery.from_options(release="220", table="taxonomy", domain="both")
    result = fetch(q)     # one Parquet: archaea + bacteria, streamed from the .gz files

Files (https://data.gtdb.ecogenomic.org/releases/release<R>/<R>.<m>/):
- taxonomy: `ar53_taxonomy_r<R>.tsv.gz`, `bac120_taxonomy_r<R>.tsv.gz` (no header: accession,
  `d__...;p__...;c__...;o__...;f__...;g__...;s__...`); the Parquet splits the seven ranks.
- metadata: `ar53_metadata_r<R>.tsv.gz`, `bac120_metadata_r<R>.tsv.gz` (header row, ~110
  columns, `none` for missing); the Parquet keeps them, numbers typed.
Before release 214 the metadata came as `.tar.gz` and the taxonomy as plain `.tsv`; before 207
the archaeal marker set was `ar122`. `--compression` overrides the guess.

The compressed originals stay in the cache (verified, sha256); the tables are decompressed and
parsed as a stream (pyarrow's incremental CSV reader) and written batch by batch, so memory
stays bounded whatever the release size. A row that does not parse (wrong field count, a
malformed taxonomy string) is an error naming the file and the row; a truncated archive is an
error naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError
from astrobio_cli.net.pool import DEFAULT_JOBS  # files downloaded at once

SOURCE = "gtdb"
BASE_URL = "https://data.gtdb.ecogenomic.org/releases"
DEFAULT_RELEASE = "226"
TABLES = ("taxonomy", "metadata")
DOMAINS = ("both", "archaea", "bacteria")
COMPRESSIONS = ("auto", "tsv.gz", "tar.gz", "tsv")
RANKS = ("domain", "phylum", "class", "order", "family", "genus", "species")
PREFIXES = ("d__", "p__", "c__", "o__", "f__", "g__", "s__")
RATE = 2.0
NULLS = ["none", "None", "NA", "na", "n/a", ""]

# Metadata columns with a numeric type (the rest are text). Integers that may be missing stay
# nullable int64; measured quantities are float64.
INT_COLUMNS = {
    "genome_size": "bp",
    "contig_count": "",
    "scaffold_count": "",
    "n50_contigs": "bp",
    "n50_scaffolds": "bp",
    "longest_contig": "bp",
    "longest_scaffold": "bp",
    "mean_contig_length": "bp",
    "mean_scaffold_length": "bp",
    "protein_count": "",
    "ssu_count": "",
    "trna_count": "",
    "trna_aa_count": "",
    "gc_count": "",
    "ambiguous_bases": "",
    "total_gap_length": "bp",
    "ncbi_taxid": "",
    "ncbi_species_taxid": "",
    "ncbi_contig_count": "",
    "ncbi_scaffold_count": "",
    "ncbi_total_length": "bp",
    "ncbi_ungapped_length": "bp",
    "ncbi_protein_count": "",
    "checkm_marker_count": "",
    "checkm_marker_set_count": "",
}
FLOAT_COLUMNS = {
    "checkm_completeness": "%",
    "checkm_contamination": "%",
    "checkm_strain_heterogeneity": "%",
    "checkm2_completeness": "%",
    "checkm2_contamination": "%",
    "gc_percentage": "%",
    "coding_density": "%",
    "ssu_silva_blast_perc_identity": "%",
}

_RELEASE = re.compile(r"^(\d{2,3})(?:\.(\d+))?$")


@dataclass(frozen=True)
class GtdbQuery:
    release: str = DEFAULT_RELEASE  # "220" or "214.1"
    table: str = "taxonomy"
    domain: str = "both"
    columns: tuple[str, ...] = ()
    compression: str = "auto"

    @classmethod
    def from_options(
        cls,
        release: str = DEFAULT_RELEASE,
        table: str = "taxonomy",
        domain: str = "both",
        columns: str | None = None,
        compression: str = "auto",
    ) -> GtdbQuery:
        release = release.strip().lower().lstrip("r")
        if not _RELEASE.match(release):
            raise UsageError(
                f"--release {release!r} is not a GTDB release number, e.g. 220 or 214.1"
            )
        if table not in TABLES:
            raise UsageError(f"--table {table!r} is not known: use taxonomy or metadata")
        if domain not in DOMAINS:
            raise UsageError(f"--domain {domain!r} is not known: use both, archaea or bacteria")
        if compression not in COMPRESSIONS:
            raise UsageError(f"--compression {compression!r}: use {', '.join(COMPRESSIONS)}")
        cols: tuple[str, ...] = ()
        if columns:
            if table != "metadata":
                raise UsageError("--columns applies to --table metadata")
            cols = tuple(c.strip() for c in columns.split(",") if c.strip())
            bad = [c for c in cols if not re.match(r"^[A-Za-z0-9_]+$", c)]
            if bad:
                raise UsageError(f"--columns: {bad[0]!r} is not a column name")
        return cls(release, table, domain, cols, compression)

    @property
    def major(self) -> int:
        return int(_RELEASE.match(self.release).group(1))  # type: ignore[union-attr]

    @property
    def version(self) -> str:
        m = _RELEASE.match(self.release)
        assert m is not None
        return f"{m.group(1)}.{m.group(2) or 0}"

    def suffix(self) -> str:
        if self.compression != "auto":
            return self.compression
        if self.major >= 214:
            return "tsv.gz"
        return "tar.gz" if self.table == "metadata" else "tsv"

    def files(self) -> list[tuple[str, str]]:
        """(domain, path relative to the base URL) for each file, archaea first."""
        ar = "ar53" if self.major >= 207 else "ar122"
        out = []
        for domain, marker in (("archaea", ar), ("bacteria", "bac120")):
            if self.domain in ("both", domain):
                name = f"{marker}_{self.table}_r{self.major}.{self.suffix()}"
                out.append((domain, f"release{self.major}/{self.version}/{name}"))
        return out


def _client():
    from astrobio_data_sources._remote import make_client

    return make_client(SOURCE, BASE_URL, default_rate=RATE)


def plan(q: GtdbQuery) -> list[str]:
    from astrobio_data_sources._remote import request_line

    with _client() as c:
        return [request_line(c, "GET", path) for _d, path in q.files()]


# -- streaming parse -----------------------------------------------------------------------------


def _open_text(path: Path, suffix: str, what: str):
    """A binary stream of the TSV inside `path` (.tsv.gz, .tar.gz or .tsv), decompressed lazily."""
    import gzip
    import tarfile

    if suffix == "tsv":
        return open(path, "rb"), None
    if suffix == "tsv.gz":
        return gzip.open(path, "rb"), None
    tar = tarfile.open(path, mode="r|gz")  # noqa: SIM115 (the caller closes it)
    for member in tar:
        if member.isfile() and member.name.endswith((".tsv", ".txt")):
            fh = tar.extractfile(member)
            assert fh is not None
            return fh, tar
    tar.close()
    raise _content(f"{what}: the archive holds no .tsv file")


def _content(msg: str):
    from astrobio_cli.net.errors import ContentError

    return ContentError(msg)


def _batches(path: Path, q: GtdbQuery, what: str):
    """Record batches of one file, typed; raises ContentError naming the file and row."""
    import gzip
    import tarfile
    import zlib

    import pyarrow as pa
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(block_size=1 << 22, use_threads=True)
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False)
    damaged = (EOFError, OSError, zlib.error, gzip.BadGzipFile, tarfile.TarError)
    if q.table == "taxonomy":
        read.column_names = ["accession", "gtdb_taxonomy"]
        conv = pacsv.ConvertOptions(
            column_types={"accession": pa.string(), "gtdb_taxonomy": pa.string()}
        )
    else:
        # Every column gets a fixed type from the header (numbers from the known list, the
        # rest text), so no block can disagree with the first one's guesses.
        try:
            fh, tar = _open_text(path, q.suffix(), what)
            try:
                header = fh.readline().decode("utf-8", "replace").rstrip("\r\n").split("\t")
            finally:
                fh.close()
                if tar is not None:
                    tar.close()
        except damaged as exc:
            raise _content(f"{what}: the file is damaged ({exc}); run with --refresh") from None
        missing = [c for c in q.columns if c not in header]
        if missing:
            raise _content(
                f"{what}: no column {missing[0]!r} (the file has {', '.join(header[:8])}, ...)"
            )
        types = {
            c: pa.int64()
            if c in INT_COLUMNS
            else pa.float64()
            if c in FLOAT_COLUMNS
            else pa.string()
            for c in header
        }
        conv = pacsv.ConvertOptions(
            column_types=types,
            null_values=NULLS,
            strings_can_be_null=True,
            include_columns=list(q.columns) or None,
        )
    fh, tar = _open_text(path, q.suffix(), what)
    try:
        reader = pacsv.open_csv(fh, read_options=read, parse_options=parse, convert_options=conv)
        yield from reader
    except pa.ArrowInvalid as exc:
        raise _content(f"{what}: {exc}") from None
    except damaged as exc:
        raise _content(
            f"{what}: the file is damaged or truncated ({exc}); run with --refresh"
        ) from None
    finally:
        fh.close()
        if tar is not None:
            tar.close()


def _check_archive(path: Path, suffix: str, what: str) -> None:
    """Decompress the whole file once (gzip checks its CRC at the end) so that a truncated or
    damaged archive is rejected before it enters the cache. Costs one pass at ~200 MB/s."""
    import gzip
    import tarfile
    import zlib

    try:
        if suffix == "tar.gz":
            with tarfile.open(path, mode="r|gz") as tar:
                for member in tar:
                    fh = tar.extractfile(member) if member.isfile() else None
                    while fh is not None and fh.read(1 << 20):
                        pass
        else:
            with gzip.open(path, "rb") as fh:
                while fh.read(1 << 20):
                    pass
    except (EOFError, OSError, zlib.error, tarfile.TarError) as exc:
        raise _content(f"{what}: the download is damaged or truncated ({exc})") from None


_TAXONOMY = r"^d__[^;]*;p__[^;]*;c__[^;]*;o__[^;]*;f__[^;]*;g__[^;]*;s__[^;]*$"


def split_taxonomy(batch, what: str, first_row: int):
    """accession, gtdb_taxonomy -> + the seven rank columns; a malformed string is named."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tax = batch.column("gtdb_taxonomy")
    ok = pc.fill_null(pc.match_substring_regex(tax, _TAXONOMY), False)
    if not pc.all(ok).as_py():
        bad = pc.index(ok, False).as_py()
        acc = batch.column("accession")[bad].as_py()
        raise _content(
            f"{what}: row {first_row + bad + 1} ({acc!r}): taxonomy {tax[bad].as_py()!r} is not "
            "'d__...;p__...;c__...;o__...;f__...;g__...;s__...'"
        )
    parts = pc.split_pattern(tax, ";")
    cols = [batch.column("accession"), tax]
    names = ["accession", "gtdb_taxonomy"]
    for i, rank in enumerate(RANKS):
        cols.append(pc.utf8_slice_codeunits(pc.list_element(parts, i), 3))
        names.append(rank)
    return pa.RecordBatch.from_arrays(cols, names=names)


def _field_meta(name: str) -> dict[str, str]:
    unit = INT_COLUMNS.get(name, FLOAT_COLUMNS.get(name, ""))
    desc = {
        "accession": "GTDB genome accession (RS_/GB_ prefix + NCBI assembly)",
        "gtdb_taxonomy": "GTDB taxonomy string",
        "domain_file": "archaea or bacteria file",
    }
    desc.update({r: f"GTDB {r} (prefix removed)" for r in RANKS})
    return {"unit": unit, "description": desc.get(name, "")}


# -- fetching ----------------------------------------------------------------------------------


def fetch(
    q: GtdbQuery,
    *,
    out: Path | None = None,
    refresh: bool = False,
    progress: bool | None = None,
    jobs: int = DEFAULT_JOBS,
):
    """The release's files of `q` -> one Parquet + provenance; jobs: files downloaded at once
    (each is also checked, decompressed once, in the worker that fetched it)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from astrobio_cli.net import provenance
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.net.errors import ContentError
    from astrobio_cli.net.files import atomic_path, sha256_file
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
        provenance_record,
        traffic,
    )

    check_jobs(jobs)
    stem = f"r{q.release}-{q.table}-{q.domain}"
    out = check_out(out) if out is not None else default_out(SOURCE, stem, q)
    cache = Cache(get_settings().cache_dir)
    fetched: list[Fetched] = []
    files: list[tuple[str, Path, str]] = []
    magic = {"tsv.gz": b"\x1f\x8b", "tar.gz": b"\x1f\x8b"}.get(q.suffix())

    with _client() as client:
        # One live progress display at a time: byte bars per file only when one at a time.
        file_progress = progress if jobs == 1 else False

        def one(item: tuple[str, str]) -> tuple[str, str, Any]:
            _domain, path = item
            name = path.rsplit("/", 1)[-1]

            def validate(tmp: Path, headers: dict[str, str], name=name) -> None:
                from astrobio_cli.net.content import check_body

                with open(tmp, "rb") as fh:
                    head = fh.read(4096)
                if magic and not head.startswith(magic):
                    check_body(
                        head,
                        what=f"GTDB ({client.host}) {name}",
                        content_type=headers.get("content-type", ""),
                    )
                    raise ContentError(f"GTDB {name}: not a gzip file (starts {head[:40]!r})")
                if magic:
                    _check_archive(tmp, q.suffix(), f"GTDB {name}")

            try:
                hit = cached(
                    cache,
                    client,
                    SOURCE,
                    path,
                    refresh=refresh,
                    validate=validate,
                    progress=file_progress,
                )
            except HttpStatusError as exc:
                if exc.status in (403, 404):
                    raise NotFoundError(
                        f"GTDB release {q.release}: {name} not found ({exc}); see "
                        "https://data.gtdb.ecogenomic.org/releases/ for the releases and file names "
                        "(--compression overrides the guessed suffix)"
                    ) from None
                raise
            return path, name, hit

        for domain, (path, name, hit) in zip(
            (d for d, _p in q.files()),
            download_all(
                q.files(), one, jobs=jobs, key=lambda f: f[1], progress=progress, label="GTDB files"
            ),
            strict=True,
        ):
            fetched.append(Fetched(client.full_url(path), hit))
            files.append((domain, hit.path, name))

        rows = 0
        schema = None
        rec = provenance_record(
            source=SOURCE,
            query=f"GTDB r{q.release} {q.table} ({q.domain})",
            fetched=fetched,
            output=out,
            output_format="parquet",
            extra={
                "release": q.release,
                "table": q.table,
                "domain": q.domain,
                "files": [n for _d, _p, n in files],
            },
        )
        with atomic_path(out) as tmp:
            writer = None
            try:
                for domain, body, name in files:
                    what = f"GTDB {name} (cached at {body})"
                    seen = 0
                    for batch in _batches(body, q, what):
                        if q.table == "taxonomy":
                            batch = split_taxonomy(batch, what, seen)
                        seen += batch.num_rows
                        batch = batch.append_column(
                            "domain_file", pa.array([domain] * batch.num_rows, pa.string())
                        )
                        if writer is None:
                            schema = pa.schema(
                                [
                                    pa.field(f.name, f.type, metadata=_field_meta(f.name))
                                    for f in batch.schema
                                ],
                                metadata={"astrobio.provenance": client.redact(json.dumps(rec))},
                            )
                            writer = pq.ParquetWriter(tmp, schema)
                        if batch.schema.names != schema.names:
                            raise ContentError(
                                f"{what}: its columns differ from the first file's "
                                f"({len(batch.schema.names)} vs {len(schema.names)})"
                            )
                        writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
                        rows += batch.num_rows
                if writer is None:
                    raise ContentError(f"GTDB r{q.release} {q.table}: the files hold no rows")
            finally:
                if writer is not None:
                    writer.close()
        assert schema is not None
        cols = [{"name": f.name, "type": str(f.type), **_field_meta(f.name)} for f in schema]
        rec.update(rows=rows, columns=cols)
        rec["output"]["sha256"] = sha256_file(out)
        sidecar = provenance.write_sidecar(out, rec, redact=client.redact)

    return SourceResult(
        source=SOURCE,
        rows=rows,
        columns=cols,
        outputs=[("table", out), ("provenance", sidecar)]
        + [("original", p) for _d, p, _n in files],
        **traffic(fetched),
    )


class Gtdb:
    name = SOURCE

    def query(self, **options: Any) -> GtdbQuery:
        return GtdbQuery.from_options(**options)

    def fetch(self, query: GtdbQuery, **kw: Any):
        return fetch(query, **kw)
