"""`astrobio fetch ncbi`: the command's options (light: httpx/Biopython load on run)."""

from pathlib import Path
from typing import Annotated

import typer


def fetch_ncbi(
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Accession(s), comma-separated or repeated: X55053,NC_045512.2."),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(help="Entrez search instead of accessions, e.g. 'cor6 AND Brassica[orgn]'."),
    ] = None,
    db: Annotated[str, typer.Option(help="nucleotide or protein.")] = "nucleotide",
    format: Annotated[str, typer.Option("--format", help="genbank or fasta.")] = "genbank",
    max_records: Annotated[
        int | None, typer.Option("--max", help="At most this many records of a --query.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Records per efetch request (history-server paging).")
    ] = 200,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Summary Parquet; the records go beside it (.gb or .fasta). "
            "Default: <data_dir>/ncbi/<db>-<what>-<hash>.parquet."
        ),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Download again even when the cache has it.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the E-utilities requests; no network.")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            help="efetch batches downloaded at once (NCBI's 3/s or 10/s still holds; 3 suits "
            "it); 1: one at a time, in order, with per-batch progress bars.",
        ),
    ] = 1,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object (paths, rows, files; the plan with --dry-run)."
        ),
    ] = False,
) -> None:
    """NCBI nucleotide or protein records (E-utilities esearch + efetch), GenBank or FASTA.

    Writes the records file plus a Parquet summary (accession, organism, length, definition),
    each with a provenance sidecar. A --query uses the history server (WebEnv/query_key) and
    fetches --batch-size records per request. 3 requests/s, 10 with an API key
    (ASTROBIO_SOURCES__NCBI__API_KEY). As NCBI's usage policy asks, every call names the tool
    and a contact email: set yours with ASTROBIO_SOURCES__NCBI__EMAIL (and
    ASTROBIO_SOURCES__NCBI__TOOL), or [sources.ncbi] email/tool in the settings file.
    """
    from astrobio_cli.net.pool import check_jobs
    from astrobio_data_sources import ncbi
    from astrobio_data_sources._remote import show, show_plan

    check_jobs(jobs)
    q = ncbi.NcbiQuery.from_options(db, ids, query, format, max_records, batch_size)
    if dry_run:
        show_plan(ncbi.SOURCE, ncbi.plan(q), as_json)
        return
    show(ncbi.fetch(q, out=out, refresh=refresh, jobs=jobs), as_json)
