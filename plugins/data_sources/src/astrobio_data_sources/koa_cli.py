"""`astrobio fetch koa`: the command's options (light: httpx/pyarrow load on run)."""

from pathlib import Path
from typing import Annotated

import typer


def fetch_koa(
    instrument: Annotated[
        str,
        typer.Option(
            help="Keck instrument (picks the TAP table): HIRES, NIRSPEC, OSIRIS, NIRC2, MOSFIRE, "
            "LRIS, DEIMOS, ESI, KCWI, NIRES."
        ),
    ],
    target: Annotated[
        str | None, typer.Option(help="Target name exactly as in the archive (targname).")
    ] = None,
    ra: Annotated[float | None, typer.Option(help="Cone centre, right ascension (deg).")] = None,
    dec: Annotated[float | None, typer.Option(help="Cone centre, declination (deg).")] = None,
    radius: Annotated[float, typer.Option(help="Cone radius in degrees.")] = 0.1,
    date: Annotated[
        str | None,
        typer.Option(help="UT dates (date_obs): 2018-03-16/2018-03-18, 2018-03-16/, /2018-03-18."),
    ] = None,
    imtype: Annotated[
        str | None,
        typer.Option(help="KOA image type: object, flatlamp, arclamp, bias, dark, ..."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows (ADQL TOP).")] = None,
    download: Annotated[
        bool, typer.Option("--download", help="Also download the files (FITS) of the listing.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Listing Parquet. Default: <data_dir>/koa/<query>-<hash>.parquet."),
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
    """Keck Observatory Archive (public TAP metadata): a typed Parquet listing, optionally files.

    Files KOA will not give (proprietary) are skipped with its message; your KOA session cookie
    (NAME=VALUE) in setting sources.koa.api_key (env ASTROBIO_SOURCES__KOA__API_KEY) is sent as
    a Cookie header to fetch your own, and is never printed. Example:
    astrobio fetch koa --instrument HIRES --target 'HD 209458' --limit 10 --download
    """
    from astrobio_data_sources import koa

    q = koa.KoaQuery.from_options(instrument, target, ra, dec, radius, date, imtype, limit)
    if dry_run:
        from astrobio_data_sources._remote import echo_plan

        echo_plan(koa.plan(q, download))
        return
    result = koa.fetch(q, out=out, download=download, files_dir=files_dir, refresh=refresh)
    koa.show(result, as_json)
