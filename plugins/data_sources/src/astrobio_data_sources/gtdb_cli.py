"""`astrobio fetch gtdb`: the command's options (light: httpx/pyarrow load on run)."""

from pathlib import Path
from typing import Annotated

import typer


def fetch_gtdb(
    release: Annotated[str, typer.Option(help="GTDB release: 226, 220, 214.1, ...")] = "226",
    table: Annotated[
        str, typer.Option(help="taxonomy (accession + 7 ranks) or metadata (~110 columns).")
    ] = "taxonomy",
    domain: Annotated[str, typer.Option(help="both, archaea or bacteria.")] = "both",
    columns: Annotated[
        str | None,
        typer.Option(help="Metadata columns to keep, e.g. accession,gtdb_taxonomy,genome_size."),
    ] = None,
    compression: Annotated[
        str,
        typer.Option(help="File suffix: auto (by release), tsv.gz, tar.gz or tsv."),
    ] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Parquet output. Default: <data_dir>/gtdb/r<release>-<table>-<hash>.parquet."
        ),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Download again even when the cache has it.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the file URLs; no network.")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            help="Files downloaded at once (GTDB's rate limit still holds); 1: one at a time "
            "with per-file progress bars.",
        ),
    ] = 4,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object (paths, rows, files; the plan with --dry-run)."
        ),
    ] = False,
) -> None:
    """GTDB metadata or taxonomy tables of a release (archaea + bacteria) as one Parquet.

    The compressed files are kept (verified) in the cache and decompressed as a stream; the
    Parquet has a `domain_file` column saying which file each row came from.
    """
    from astrobio_cli.net.pool import check_jobs
    from astrobio_data_sources import gtdb
    from astrobio_data_sources._remote import show, show_plan

    check_jobs(jobs)
    q = gtdb.GtdbQuery.from_options(release, table, domain, columns, compression)
    if dry_run:
        show_plan(gtdb.SOURCE, gtdb.plan(q), as_json)
        return
    show(gtdb.fetch(q, out=out, refresh=refresh, jobs=jobs), as_json)
