"""`astrobio fetch exoplanets-org`: the command's options (light: httpx/pyarrow load on run)."""

from pathlib import Path
from typing import Annotated

import typer


def fetch_exoplanets_org(
    url: Annotated[
        str | None,
        typer.Option(
            help="Where the CSV is: an http(s) URL (a mirror) or a local file. Default: "
            "http://exoplanets.org/csv-files/exoplanets.csv (offline for years)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Parquet output. Default: <data_dir>/exoplanets-org/exoplanets-org-<hash>.parquet."
        ),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Download again even when the cache has it.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the request (or the file read); no network.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """The Exoplanet Orbit Database (exoplanets.org, Han et al. 2014) CSV as typed Parquet.

    exoplanets.org has been offline for years: give --url a mirror or a local copy of
    exoplanets.csv. Units (MASS/MSINI in Jupiter masses, R in Jupiter radii, PER in days, ...)
    are in the Parquet field metadata; a <file>.provenance.json sidecar names the source.
    """
    import json

    from astrobio_data_sources import exoplanets_org as org
    from astrobio_data_sources._remote import echo_plan, render

    q = org.CatalogueQuery(url=url)
    if dry_run:
        lines = org.plan(org.CATALOGUE, q)
        if json_out:
            typer.echo(json.dumps({"source": org.SOURCE, "dry_run": True, "requests": lines}))
        else:
            echo_plan(lines)
        return
    result = org.fetch(q, out=out, refresh=refresh, progress=False if json_out else None)
    if json_out:
        typer.echo(json.dumps(org.result_json(result)))
    else:
        render(result)
