"""`astrobio fetch nasa-exoplanet`: the command's options (light: httpx/pyarrow load on run)."""

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

_DEFAULT_COLUMNS_HELP = (
    "pl_name, hostname, discoverymethod, disc_year, pl_orbper, pl_orbsmax, pl_rade, pl_bmasse, "
    "pl_dens, pl_orbeccen, pl_insol, pl_eqt, st_teff, st_rad, st_mass, st_met, st_lum, sy_dist, "
    "sy_snum, sy_pnum"
)


def fetch_nasa_exoplanet(
    table: Annotated[
        str, typer.Option(help="Archive table: pscomppars (one row per planet), ps, ...")
    ] = "pscomppars",
    columns: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated column names, or '*'. Default: {_DEFAULT_COLUMNS_HELP}."
        ),
    ] = None,
    where: Annotated[
        str | None, typer.Option(help='ADQL condition, e.g. "pl_rade < 2 and sy_dist < 50".')
    ] = None,
    order_by: Annotated[
        str | None, typer.Option(help="ADQL ordering, e.g. 'sy_dist asc, pl_name'.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows (ADQL TOP).")] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="parquet (units astropy's QTable.read restores), csv, or ecsv (astropy's text "
            "format, units and descriptions in its header).",
        ),
    ] = "parquet",
    out: Annotated[
        Path | None,
        typer.Option(help="Output file. Default: <data_dir>/nasa-exoplanet/<table>-<hash>.<ext>."),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Download again even when the cache has it.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the ADQL and the URL; no network.")
    ] = False,
    use_async: Annotated[
        bool,
        typer.Option(
            "--async",
            help="Run as an asynchronous TAP job (large queries): submit, poll, fetch; the "
            "job's phase and elapsed time go to stderr. Ctrl-C aborts the job on the server.",
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (paths, rows, columns).")
    ] = False,
) -> None:
    """Query the NASA Exoplanet Archive (TAP) and write a typed table with provenance.

    The answer is cached by query: asking again needs no network (--refresh to re-download).
    Output: Parquet with integer, float (NaN for blanks) and string columns, units in the field
    metadata, and a <file>.provenance.json sidecar (URL, ADQL, time, bytes, sha256, columns).
    """
    from astrobio_data_sources import nasa_exoplanet as nx

    fmt = format.lower()
    if fmt not in nx.FORMATS:
        from astrobio_cli.errors import UsageError

        raise UsageError(f"--format {format!r} is not known: use {', '.join(nx.FORMATS)}")
    query = nx.ExoplanetQuery.from_options(table, columns, where, order_by, limit)
    if dry_run:
        adql, url = nx.plan(query)
        if json_out:
            typer.echo(json.dumps({"dry_run": True, "adql": adql, "url": url, "async": use_async}))
            return
        typer.echo(f"ADQL: {adql}")
        typer.echo(f"URL:  {url}")
        if use_async:
            typer.echo("(--async: the query is submitted to the TAP/async endpoint instead)")
        return

    result = nx.fetch(query, out=out, fmt=fmt, refresh=refresh, use_async=use_async)
    if json_out:
        doc = dataclasses.asdict(result)
        typer.echo(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in doc.items()}))
    else:
        _summary(result)


def _summary(r) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from astrobio_cli.net.cache import human_age

    console = Console(soft_wrap=True)
    if r.from_cache:
        console.print(
            f"cache hit: {escape(str(r.cache_path))} (downloaded {human_age(r.age_s)} ago, no network used); "
            "--refresh downloads again",
            highlight=False,
        )
    t = Table(title="nasa-exoplanet", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("rows", str(r.rows))
    names = [c["name"] + (f" [{c['unit']}]" if c["unit"] else "") for c in r.columns]
    t.add_row("columns", escape(f"{len(names)}: " + ", ".join(names)))
    source = (
        f"cache ({human_age(r.age_s)} old)"
        if r.from_cache
        else f"downloaded {r.bytes} bytes (HTTP {r.http_status})"
    )
    t.add_row("from", source)
    console.print(t)
    # paths on lines of their own, never wrapped: they are meant to be copied
    console.print(f"written: {escape(str(r.out))} ({r.fmt})", highlight=False)
    console.print(f"provenance: {escape(str(r.sidecar))}", highlight=False)
