"""`astrobio fetch uniprot`: the command's options (light: httpx/pyarrow load on run)."""

from pathlib import Path
from typing import Annotated

import typer

_FIELDS = "accession,id,protein_name,gene_names,organism_name,organism_id,length"


def fetch_uniprot(
    query: Annotated[
        str | None,
        typer.Option(help="UniProtKB query, e.g. 'gene:cbbQ AND reviewed:true'."),
    ] = None,
    accession: Annotated[
        list[str] | None,
        typer.Option(help="Accession(s) instead of a query, comma-separated: P00750,Q51858."),
    ] = None,
    fields: Annotated[
        str | None, typer.Option(help=f"TSV fields (result-field names). Default: {_FIELDS}.")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="tsv or fasta.")] = "tsv",
    limit: Annotated[int | None, typer.Option(help="At most this many entries.")] = None,
    page_size: Annotated[int, typer.Option(help="Entries per search page (at most 500).")] = 500,
    stream: Annotated[
        bool, typer.Option("--stream", help="One request to uniprotkb/stream instead of pages.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Parquet output (FASTA goes beside it). "
            "Default: <data_dir>/uniprot/<query>-<hash>.parquet."
        ),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Download again even when the cache has it.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the REST requests; no network.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object (paths, rows, files; the plan with --dry-run)."
        ),
    ] = False,
) -> None:
    """UniProtKB entries (rest.uniprot.org): search with cursor paging (Link header) or stream.

    TSV: a Parquet of the chosen fields. FASTA: the FASTA file plus a Parquet summary
    (accession, name, organism, taxon, gene, length). Provenance sidecars beside both.
    """
    from astrobio_data_sources import uniprot
    from astrobio_data_sources._remote import show, show_plan

    q = uniprot.UniprotQuery.from_options(
        query, accession, fields, format, limit, page_size, stream
    )
    if dry_run:
        show_plan(uniprot.SOURCE, uniprot.plan(q), as_json)
        return
    show(uniprot.fetch(q, out=out, refresh=refresh), as_json)
