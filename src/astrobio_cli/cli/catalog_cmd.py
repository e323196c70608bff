"""`astrobio catalog merge`: one planet table from the NASA archive, exoplanet.eu and the
Exoplanet Orbit Database Parquet files (see :mod:`astrobio_cli.catalog`)."""

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Planet catalogues: merge the NASA archive, exoplanet.eu and exoplanets.org tables.",
        no_args_is_help=True,
    )
    group.command("merge")(catalog_merge)
    app.add_typer(group, name="catalog")


def catalog_merge(
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged Parquet file to write.")],
    nasa: Annotated[
        Path | None,
        typer.Option(help="Parquet of `astrobio fetch nasa-exoplanet` (ps or pscomppars)."),
    ] = None,
    eu: Annotated[
        Path | None, typer.Option(help="Parquet of `astrobio fetch exoplanet-eu`.")
    ] = None,
    org: Annotated[
        Path | None, typer.Option(help="Parquet of `astrobio fetch exoplanets-org`.")
    ] = None,
    nsigma: Annotated[
        float,
        typer.Option(
            help="Two values conflict when they differ by more than this many combined "
            "(quadrature) 1-sigma errors."
        ),
    ] = 1.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Merge planet catalogues into one table: matched names, one unit system, and for each
    parameter the most precise value with its catalogue and reference.

    Writes OUT (Parquet, units in the field metadata), OUT's stem + .conflicts.parquet (values
    that disagree beyond their combined error bars) and OUT.provenance.json (every input's
    sha256 and its own provenance).
    """
    from astrobio_cli.catalog import merge_catalogues

    result = merge_catalogues(nasa=nasa, eu=eu, org=org, out=out, nsigma=nsigma)
    if json_out:
        typer.echo(json.dumps(result.report, indent=2))
        return
    _render(result.report)


def _render(r: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    t = Table(title="catalog merge", title_justify="left")
    t.add_column("catalogue")
    t.add_column("rows", justify="right")
    t.add_column("planets", justify="right")
    t.add_column("not in NASA", justify="right")
    beyond = r.get("beyond_nasa") or {}
    for label, info in r["inputs"].items():
        extra = "-" if label == "nasa-exoplanet" or not beyond else str(beyond.get(label, 0))
        t.add_row(label, str(info["rows"]), str(info["planets"]), extra)
    console.print(t)
    c = r["conflicts"]
    console.print(f"planets: {r['planets']} ({r['in_every_catalogue']} in every catalogue)")
    by = ", ".join(f"{k} {v}" for k, v in c["by_parameter"].items()) or "none"
    console.print(
        f"conflicting values (> {c['nsigma']:g} sigma): {c['values']} ({c['pairs']} pairs; {by})"
    )
    for label, path in r["outputs"].items():
        console.print(f"{label}: {escape(path)}")
