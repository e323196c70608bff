"""`astrobio fetch ensembl`: the command's options (light: httpx/pyarrow load on run)."""

from pathlib import Path
from typing import Annotated

import typer


def fetch_ensembl(
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Ensembl stable id(s), comma-separated: ENSG00000139618."),
    ] = None,
    symbol: Annotated[
        list[str] | None, typer.Option(help="Gene symbol(s) in --species: BRCA2,TP53.")
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option(
            help="Genomic region(s) of --species: X:1000000..1000100:1 (strand optional)."
        ),
    ] = None,
    species: Annotated[str, typer.Option(help="Ensembl species name.")] = "homo_sapiens",
    sequence: Annotated[
        bool, typer.Option("--sequence", help="Also fetch each id's or symbol's sequence.")
    ] = False,
    seq_type: Annotated[
        str, typer.Option("--type", help="Sequence type: genomic, cds, cdna or protein.")
    ] = "genomic",
    format: Annotated[
        str, typer.Option("--format", help="Records file: json (lookups) or fasta (sequences).")
    ] = "json",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Summary Parquet; the records go beside it (.json or .fasta). "
            "Default: <data_dir>/ensembl/<what>-<hash>.parquet."
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
    """Ensembl REST lookups, sequences and regions (rest.ensembl.org), JSON or FASTA.

    Writes the records file plus a Parquet summary (id, name, biotype, location, length), each
    with provenance. Honours the X-RateLimit-* headers and Retry-After (15 requests/s).
    """
    from astrobio_data_sources import ensembl
    from astrobio_data_sources._remote import show, show_plan

    q = ensembl.EnsemblQuery.from_options(ids, symbol, region, species, sequence, seq_type, format)
    if dry_run:
        show_plan(ensembl.SOURCE, ensembl.plan(q), as_json)
        return
    show(ensembl.fetch(q, out=out, refresh=refresh), as_json)
