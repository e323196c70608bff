"""`astrobio fetch eso`: the command's options (light: astropy/httpx load on run)."""

from pathlib import Path
from typing import Annotated

import typer


def fetch_eso(
    instrument: Annotated[
        str | None, typer.Option(help="ESO instrument, e.g. HARPS, MUSE, UVES, ESPRESSO.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Target name exactly as in the archive (target_name).")
    ] = None,
    ra: Annotated[
        float | None, typer.Option(help="Cone centre, right ascension (deg, ICRS).")
    ] = None,
    dec: Annotated[float | None, typer.Option(help="Cone centre, declination (deg, ICRS).")] = None,
    radius: Annotated[float, typer.Option(help="Cone radius in degrees.")] = 0.1,
    date: Annotated[
        str | None,
        typer.Option(help="Observation dates: 2019-01-01/2019-12-31, 2019-01-01/, /2019-12-31."),
    ] = None,
    dp_type: Annotated[
        str | None,
        typer.Option(
            "--dp-type",
            help="ObsCore dataproduct_type: image, cube, spectrum, sed, timeseries, visibility, "
            "measurements.",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows (ADQL TOP).")] = None,
    download: Annotated[
        bool,
        typer.Option("--download", help="Also download the public products (FITS) of the listing."),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Listing Parquet. Default: <data_dir>/eso/<query>-<hash>.parquet."),
    ] = None,
    files_dir: Annotated[
        Path | None,
        typer.Option("--files-dir", help="Where --download puts the files. Default: <out>_files/."),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Download again even when the cache has it.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the ADQL and the URLs; no network.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """ESO Science Archive (TAP, ivoa.ObsCore): a typed Parquet listing, optionally the FITS files.

    Products still proprietary (obs_release_date in the future) are skipped with a message; an
    ESO token in setting sources.eso.api_key (env ASTROBIO_SOURCES__ESO__API_KEY) is sent as a
    Bearer header to fetch your own, and is never printed. Example:
    astrobio fetch eso --instrument HARPS --target 'HD 40307' --limit 20 --download
    """
    from astrobio_data_sources import eso

    q = eso.EsoQuery.from_options(instrument, target, ra, dec, radius, date, dp_type, limit)
    if dry_run:
        from astrobio_data_sources._remote import echo_plan

        echo_plan(eso.plan(q, download))
        return
    result = eso.fetch(q, out=out, download=download, files_dir=files_dir, refresh=refresh)
    eso.show(result, as_json)
