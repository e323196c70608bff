"""`astrobio fetch cds`: the command's options (light: httpx/xarray load on run)."""

from pathlib import Path
from typing import Annotated

import typer


def fetch_cds(
    dataset: Annotated[
        str,
        typer.Option(
            help="CDS dataset: pressure (reanalysis-era5-pressure-levels-monthly-means), "
            "single (reanalysis-era5-single-levels-monthly-means), cmip6 "
            "(projections-cmip6), or any CDS dataset name."
        ),
    ] = "pressure",
    variable: Annotated[
        list[str] | None,
        typer.Option(
            "--variable",
            help="Variable(s), CDS names or ERA5 short names, comma-separated or repeated: "
            "t,q or temperature. Default: temperature,specific_humidity (pressure), "
            "skin_temperature,land_sea_mask (single).",
        ),
    ] = None,
    pressure_level: Annotated[
        list[str] | None,
        typer.Option(
            "--pressure-level",
            help="Pressure levels in hPa (pressure data). Default: 1000,850,500,250.",
        ),
    ] = None,
    year: Annotated[
        list[str] | None,
        typer.Option("--year", help="Year(s): 2020, 2018-2020 or 2019,2021 (required)."),
    ] = None,
    month: Annotated[
        list[str] | None, typer.Option("--month", help="Month(s) 1-12: 1-3 or 6,7,8. Default: all.")
    ] = None,
    area: Annotated[
        str | None,
        typer.Option(help="Sub-region NORTH/WEST/SOUTH/EAST in degrees, e.g. 60/-10/35/30."),
    ] = None,
    grid: Annotated[
        str | None,
        typer.Option(help="Regrid on the CDS to this spacing in degrees: 1.0 or 1.0/1.0."),
    ] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            help="Any other request input KEY=VALUE[,VALUE], e.g. experiment=historical "
            "(CMIP6: temporal_resolution, experiment, model, level).",
        ),
    ] = None,
    model_ready: Annotated[
        bool,
        typer.Option(
            "--model-ready",
            help="Also fetch ERA5 single levels (skt, lsm, tisr) for the same months and merge "
            "them, with Earth's planet parameters: a cube the cube models read.",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Climate cube NetCDF. Default: <data_dir>/cds/<dataset>-<hash>.nc."),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Ask the CDS again even when the cache has it.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the request; no network, no key needed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """ERA5 monthly means (single or pressure levels; CMIP6) from the Copernicus Climate Data
    Store, written as a climate cube that `astrobio preprocess` and the cube models read.

    The request becomes a CDS job (queued, then run); its status and elapsed time go to stderr
    until the NetCDF is ready, then it is downloaded (retries, resume), cached (keyed on the
    request) and converted: time -> sample, t -> ta, q -> hus, skt -> ts, lsm -> land_mask,
    pressure_level (hPa) -> plev (Pa). Needs an API key: ASTROBIO_SOURCES__CDS__API_KEY.
    """
    import json

    from astrobio_data_sources import cds

    q = cds.CdsQuery.from_options(
        dataset, variable, pressure_level, year, month, area, grid, input_, model_ready
    )
    if dry_run:
        if as_json:
            parts = [{"dataset": p.dataset, "request": p.request()} for p in q.parts()]
            typer.echo(json.dumps(parts[0] if len(parts) == 1 else parts))
            return
        from astrobio_data_sources._remote import echo_plan

        echo_plan(cds.plan(q))
        return
    result = cds.fetch(q, out=out)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    else:
        cds.render(result)
