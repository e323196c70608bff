"""`astrobio fetch mast-lightcurve` and `mast-jwst-spectrum` (light: astropy/httpx load on run)."""

from pathlib import Path
from typing import Annotated

import typer

_Out = Annotated[
    Path | None,
    typer.Option(help="Parquet output. Default: <data_dir>/<source>/<target>-<hash>.parquet."),
]
_Refresh = Annotated[
    bool, typer.Option("--refresh", help="Download again even when the cache has it.")
]
_DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the MAST requests; no network.")]
_Jobs = Annotated[
    int,
    typer.Option(
        "--jobs",
        "-j",
        help="Product files downloaded at once (MAST's rate limit still holds); "
        "1: one at a time with per-file progress bars.",
    ),
]
_Json = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON object (paths, rows, files; the plan with --dry-run)."
    ),
]
_Quicklook = Annotated[
    bool,
    typer.Option(
        "--quicklook/--no-quicklook",
        help="Also write a quick-look PNG per product file in <out stem>.quicklook/.",
    ),
]


def fetch_mast_lightcurve(
    target: Annotated[
        str, typer.Argument(help="A name (TOI-700, Kepler-10), 'TIC 150428135' or 'KIC 11904151'.")
    ],
    mission: Annotated[
        str | None, typer.Option(help="tess or kepler (default: both, or implied by the id).")
    ] = None,
    sector: Annotated[
        list[str] | None, typer.Option(help="TESS sector(s), comma-separated: 1,2,13.")
    ] = None,
    quarter: Annotated[
        list[str] | None,
        typer.Option(help="Kepler quarter(s), comma-separated (filtered after download)."),
    ] = None,
    cadence: Annotated[
        str,
        typer.Option(
            help="any, fast (TESS 20 s), short (TESS 2 min, Kepler 1 min), long (Kepler 30 min)."
        ),
    ] = "any",
    flux: Annotated[
        str, typer.Option(help="pdcsap (detrended) or sap (simple aperture).")
    ] = "pdcsap",
    radius: Annotated[
        float, typer.Option(help="Search radius around a named target, arcsec.")
    ] = 2.0,
    out: _Out = None,
    refresh: _Refresh = False,
    dry_run: _DryRun = False,
    jobs: _Jobs = 4,
    quicklook: _Quicklook = False,
    as_json: _Json = False,
) -> None:
    """TESS and Kepler light curves from MAST: time, flux, flux_err, quality as Parquet.

    Resolves a name (Mast.Name.Lookup), finds the observations (CAOM), lists their light-curve
    products and downloads them; the original FITS files stay in the cache. Columns: time, flux,
    flux_err, quality, mission, sector, quarter, cadence (s), target, file; provenance beside it.
    """
    from astrobio_cli.net.pool import check_jobs
    from astrobio_data_sources import mast
    from astrobio_data_sources._remote import show, show_plan

    check_jobs(jobs)
    q = mast.LightCurveQuery.from_options(target, mission, sector, quarter, cadence, flux, radius)
    if dry_run:
        show_plan(mast.LC_SOURCE, mast.plan(q, mast.LC_SOURCE), as_json)
        return
    show(
        mast.fetch_lightcurves(q, out=out, refresh=refresh, jobs=jobs, quicklook=quicklook), as_json
    )


def fetch_mast_jwst_spectrum(
    target: Annotated[str | None, typer.Option(help="Target name, e.g. WASP-39.")] = None,
    proposal: Annotated[str | None, typer.Option(help="JWST program number, e.g. 1366.")] = None,
    level: Annotated[
        int | None, typer.Option(help="Calibration level: 2 (per exposure) or 3 (combined).")
    ] = None,
    radius: Annotated[float, typer.Option(help="Search radius around --target, arcsec.")] = 3.0,
    out: _Out = None,
    refresh: _Refresh = False,
    dry_run: _DryRun = False,
    jobs: _Jobs = 4,
    quicklook: _Quicklook = False,
    as_json: _Json = False,
) -> None:
    """JWST 1-D extracted spectra (x1d products) from MAST: wavelength, flux, error as Parquet.

    Units come from the FITS files (TUNITn) into the Parquet field metadata; every EXTRACT1D
    extension becomes rows with its file and extension number. Original FITS kept in the cache.
    """
    from astrobio_cli.net.pool import check_jobs
    from astrobio_data_sources import mast
    from astrobio_data_sources._remote import show, show_plan

    check_jobs(jobs)
    q = mast.SpectrumQuery.from_options(target, proposal, radius, level)
    if dry_run:
        show_plan(mast.SPEC_SOURCE, mast.plan(q, mast.SPEC_SOURCE), as_json)
        return
    show(mast.fetch_spectra(q, out=out, refresh=refresh, jobs=jobs, quicklook=quicklook), as_json)
