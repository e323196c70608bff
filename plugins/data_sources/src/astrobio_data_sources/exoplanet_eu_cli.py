"""`astrobio fetch exoplanet-eu`: the command's options (light: httpx/pyarrow load on run)."""

from pathlib import Path
from typing import Annotated

import typer


def fetch_exoplanet_eu(
    url: Annotated[
        str | None,
        typer.Option(
            help="Another place for the CSV export: an http(s) URL (a mirror) or a local file. "
            "Default: https://exoplanet.eu/catalog/csv/ (setting sources.exoplanet-eu.base_url)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Parquet output. Default: <data_dir>/exoplanet-eu/exoplanet-eu-<hash>.parquet."
        ),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Download again even when the cache has it.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the request; no network.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """The Extrasolar Planets Encyclopaedia (exoplanet.eu) catalogue as typed Parquet.

    One row per planet, ~98 columns; masses and radii in Jupiter units as the export has them,
    each column's unit in the Parquet field metadata, and a <file>.provenance.json sidecar.
    The download is cached (--refresh downloads again); a progress bar shows on a terminal.
    """
    import json

    from astrobio_data_sources import exoplanet_eu as eu
    from astrobio_data_sources._remote import echo_plan, render

    q = eu.CatalogueQuery(url=url)
    if dry_run:
        lines = eu.plan(eu.CATALOGUE, q)
        if json_out:
            typer.echo(json.dumps({"source": eu.SOURCE, "dry_run": True, "requests": lines}))
        else:
            echo_plan(lines)
        return
    result = eu.fetch(q, out=out, refresh=refresh, progress=False if json_out else None)
    if json_out:
        typer.echo(json.dumps(eu.result_json(result)))
    else:
        render(result)
